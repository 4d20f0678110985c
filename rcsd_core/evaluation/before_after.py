"""Evaluation: does the round's adapter make the student better on held-out prompts?

    result = evaluate_run("runs/<id>")          # writes runs/<id>/eval.json
    rcsd eval --run-dir runs/<id>               # the same from the command line

The student is sampled on the eval split of the run's tasks in *student* context (the task
prompt alone), with a fixed seed, twice: without the adapter (the base model, "before") and with
it ("after"). The same seed draws the same random numbers for both, so the comparison is paired
per prompt: each prompt's mean score after minus before, with a paired bootstrap 95% interval
(rcsd_core.scoring.stats), per criterion and for the total. It also reports the held-out divergence from
the rubric-conditioned teacher (frozen base model, the run's teacher context) on each side's
own chains — the quantity the round minimises — and every prompt's texts before and after.

Each prompt is scored on its own rubric (`contracts.tasks.rubric_for_task`); the tasks' own
criteria are compared by group (weight class, tag) rather than one row per criterion.

The round's periodic evaluation uses the same lower-layer pieces (modeling, scoring).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, task_criteria
from rcsd_core.scoring.groups import group_means, group_values
from rcsd_core.modeling.contexts import student_prompt_ids, teacher_prompt_ids
from rcsd_core.modeling.divergence import chain_divergence
from rcsd_core.modeling.generation import Sample, sample_chains
from rcsd_core.scoring.scores import score_samples
from rcsd_core.scoring.stats import bootstrap_diff_ci, bootstrap_mean_ci, excludes_zero, mean_or_none

# ---------------------------------------------------------------------------- sampling


def sample_student(model, tokenizer, rubric: Rubric, tasks: Sequence[Task], *, samples: int, max_new_tokens: int,
                   seed: int, temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 16,
                   progress: Callable[[int, int], None] | None = None) -> tuple[list[Sample], list[dict]]:
    """Sample `samples` chains per task in student context and score them: (samples, records)."""
    prompts = [student_prompt_ids(tokenizer, t) for t in tasks]
    drawn, _ = sample_chains(model, tokenizer, prompts, n=samples, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                             progress=progress)
    return drawn, score_samples(rubric, tasks, drawn)


# ---------------------------------------------------------------------------- comparing


def _per_prompt(records: Sequence[dict], key) -> dict[str, float | None]:
    """Mean of key(record) over each task's chains (None values dropped)."""
    groups: dict[str, list[float]] = {}
    order: list[str] = []
    for r in records:
        if r["task_id"] not in groups:
            groups[r["task_id"]] = []
            order.append(r["task_id"])
        value = key(r)
        if value is not None:
            groups[r["task_id"]].append(value)
    return {t: (float(np.mean(groups[t])) if groups[t] else None) for t in order}


def compare_eval(before_records: Sequence[dict], after_records: Sequence[dict], rubric: Rubric, *,
                 seed: int = 0, tasks: Sequence[Task] | None = None) -> pd.DataFrame:
    """Per criterion (and `total`): mean before, after, the paired difference and its bootstrap 95% CI.

    Records are scored chains ({"task_id", "scores", "total"}); they are paired by task_id after
    averaging each task's chains. A pitfall's before/after is the rate at which the flaw shows.
    With `tasks`, their own criteria come as one row per group (weight class, tag; `scoring.groups`,
    weight empty): a chain's value for a group is the mean of its scored criteria in that group.
    """
    rows = []
    keys = [(c.id, c.weight, (lambda r, cid=c.id: r["scores"].get(cid))) for c in rubric.criteria]
    own = task_criteria(rubric, list(tasks or []))
    names = group_values([*before_records, *after_records], lambda r: own.get(r["task_id"], []))

    def group_key(r, group):
        means = group_means(group_values([r], lambda r: own.get(r["task_id"], [])))
        return means.get(group)

    keys += [(g, None, (lambda r, g=g: group_key(r, g))) for g in names]
    keys.append(("total", None, lambda r: r["total"]))
    for name, weight, key in keys:
        before = _per_prompt(before_records, key)
        after = _per_prompt(after_records, key)
        # prompts scored on both sides (a criterion a prompt's rubric lacks, or unscored, pairs nothing)
        common = [t for t in before if after.get(t) is not None and before[t] is not None]
        a = [after[t] for t in common]
        b = [before[t] for t in common]
        mean_b, _ = bootstrap_mean_ci(list(before.values()))
        mean_a, _ = bootstrap_mean_ci(list(after.values()))
        diff, (low, high) = bootstrap_diff_ci(a, b, paired=True, seed=seed)
        rows.append({"criterion": name, "weight": weight, "before": mean_b, "after": mean_a, "diff": diff,
                     "ci_low": low, "ci_high": high,
                     "significant": excludes_zero((low, high)),
                     "prompts": len(common)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- a run, before and after


def evaluate_run(run_dir: str | Path, *, tasks: int | Sequence[Task] | None = None, samples: int | None = None,
                 seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict:
    """Score the student without and with the run's adapter on the eval split; writes eval.json.

    tasks: how many eval prompts (the first N of the eval split), or the tasks themselves;
    default the run's eval_tasks. samples: chains per prompt (default the run's eval_samples).
    progress(done, total) counts the chains sampled without and then with the adapter.
    The evaluation owns the run while it reads the adapter (its lock: no round resumes under it,
    and a running round's run is refused with who holds it), from `rcsd eval` and the studio's job alike.
    """
    from rcsd_core.contracts.runs import RunLock

    with RunLock(run_dir, purpose="evaluation"):
        return _evaluate(Path(run_dir), tasks=tasks, samples=samples, seed=seed, progress=progress)


def _evaluate(run_dir: Path, *, tasks: int | Sequence[Task] | None, samples: int | None, seed: int,
              progress: Callable[[int, int], None] | None = None) -> dict:
    from rcsd_core.contracts.rubric import rubric_from_data
    from rcsd_core.contracts.runs import ADAPTER_DIR, EVAL_FILE, load_run_config
    from rcsd_core.errors import InputError
    from rcsd_core.files import atomic_write_text, strict_json
    from rcsd_core.modeling.allocator import keep_freed_memory
    from rcsd_core.modeling.models import load_adapter, load_model, resolve_device

    config = load_run_config(run_dir)
    adapter_dir = run_dir / ADAPTER_DIR
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputError("the run has no adapter yet (no checkpoint saved)", source=adapter_dir)
    rubric = rubric_from_data(config.rubric)
    eval_tasks = _eval_tasks(config, tasks)
    samples = samples or config.eval_samples
    if config.threads:
        torch.set_num_threads(config.threads)
    if resolve_device(config.device).type == "cpu":
        keep_freed_memory()

    started = time.perf_counter()
    model, tokenizer = load_model(config.model, device=config.device, dtype=config.dtype, seed=config.seed)
    model = load_adapter(model, adapter_dir)
    model.eval()
    common = dict(samples=samples, max_new_tokens=config.max_new_tokens, seed=seed, temperature=config.temperature,
                  top_p=config.top_p, batch_size=config.sampling_batch_size)
    chains = len(eval_tasks) * samples
    with model.disable_adapter():
        before_samples, before = sample_student(
            model, tokenizer, rubric, eval_tasks, **common,
            progress=progress and (lambda done, _total: progress(done, 2 * chains)))
    after_samples, after = sample_student(
        model, tokenizer, rubric, eval_tasks, **common,
        progress=progress and (lambda done, _total: progress(chains + done, 2 * chains)))
    divergence = held_out_divergence(model, tokenizer, config, rubric, eval_tasks, before_samples, after_samples)

    rows = compare_eval(before, after, rubric, seed=seed, tasks=eval_tasks).to_dict(orient="records")
    checkpoint = json.loads((adapter_dir / "checkpoint.json").read_text()) \
        if (adapter_dir / "checkpoint.json").is_file() else {}
    result = strict_json({  # pandas' NaN as null, numpy scalars as Python ones: callers and eval.json alike
        "run_id": run_dir.name, "model": config.model, "method": config.method,
        "adapter_step": checkpoint.get("step"), "eval_prompts": len(eval_tasks), "samples": samples, "seed": seed,
        "max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
        "criteria": [r for r in rows if r["criterion"] != "total"],
        "total": next(r for r in rows if r["criterion"] == "total"),
        "divergence": divergence,
        "mean_tokens": {"before": mean_or_none([r["n_tokens"] for r in before]),
                        "after": mean_or_none([r["n_tokens"] for r in after])},
        "seconds": round(time.perf_counter() - started, 1),
        "prompts": prompt_pairs(eval_tasks, before, after),
    })
    atomic_write_text(run_dir / EVAL_FILE, json.dumps(result, indent=1, allow_nan=False) + "\n")
    return result


def _eval_tasks(config, tasks: int | Sequence[Task] | None) -> list[Task]:
    """The tasks given, or the first N (default the run's eval_tasks) of the run's eval split."""
    from rcsd_core.contracts.tasks import load_tasks
    from rcsd_core.errors import InputError

    if tasks is not None and not isinstance(tasks, int):
        return list(tasks)
    eval_tasks = load_tasks(config.tasks, split="eval")
    if not eval_tasks:
        raise InputError("no eval tasks (split 'eval') to evaluate on", source=config.tasks)
    limit = tasks if isinstance(tasks, int) else config.eval_tasks
    return eval_tasks[:limit] if limit else eval_tasks


def held_out_divergence(model, tokenizer, config, rubric: Rubric, tasks: Sequence[Task],
                        before: Sequence[Sample], after: Sequence[Sample]) -> dict:
    """Divergence to the frozen rubric-conditioned teacher (the run's layout) on each side's own chains."""
    layout = config.teacher_layout()
    prompts = {t.id: teacher_prompt_ids(tokenizer, t, rubric, layout) for t in tasks}
    name = config.divergence if config.divergence != "sampled_token" else "reverse_kl"
    common = dict(name=name, params=config.divergence_params() if name == config.divergence else {},
                  micro_batch_size=config.micro_batch_size, chunk_size=config.chunk_size)
    with model.disable_adapter():  # before: base student, base teacher
        total, count = chain_divergence(model, tokenizer, before, [prompts[tasks[s.prompt_index].id] for s in before],
                                        **common)
    result = {"name": name, "teacher": "frozen", "before": total / count if count else None}
    # after: adapted student, frozen (base) teacher
    total, count = chain_divergence(model, tokenizer, after, [prompts[tasks[s.prompt_index].id] for s in after],
                                    teacher_context=model.disable_adapter, **common)
    result["after"] = total / count if count else None
    return result


def prompt_pairs(tasks: Sequence[Task], before: Sequence[dict], after: Sequence[dict]) -> list[dict]:
    """Each prompt with its chains, scores and mean total before and after."""
    by_task: dict[str, dict[str, list[dict]]] = {t.id: {"before": [], "after": []} for t in tasks}
    for side, records in (("before", before), ("after", after)):
        for r in records:
            by_task.setdefault(r["task_id"], {"before": [], "after": []})[side].append(r)
    out = []
    for t in tasks:
        b, a = by_task[t.id]["before"], by_task[t.id]["after"]
        out.append({"task_id": t.id, "prompt": t.prompt, "reference": t.reference,
                    "before": [r["text"] for r in b], "after": [r["text"] for r in a],
                    "before_scores": [r["scores"] for r in b], "after_scores": [r["scores"] for r in a],
                    "before_total": mean_or_none([r["total"] for r in b]),
                    "after_total": mean_or_none([r["total"] for r in a])})
    return out
