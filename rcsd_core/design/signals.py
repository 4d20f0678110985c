"""Signal: will this rubric teach this model anything, and through which criteria?

Before a round spends GPU time, sample N chains per task in student context (the task alone)
and in teacher context (rubric as a system message, worked examples as earlier turns), score
both, and compare
per criterion. A criterion whose teacher − student gap has a 95% bootstrap interval that
includes zero gives this model *no signal*: the teacher does not behave differently on it, so
distilling from the teacher cannot transfer it. The report also gives the mean per-token
teacher-vs-student divergence on the student's own chains — the quantity a round minimises —
overall, per chain, and per criterion split by whether the chain passed.

    report = measure_signal(rubric, tasks, model_name="tiny-random", samples=4, max_new_tokens=64)
    report["criteria"]["final-answer-line"]   # {"student": 0.0, "teacher": 0.12, "gap": 0.12, "ci": [...], ...}

CLI: `rcsd signal --rubric R --tasks T [--model M] [--samples N] [--max-new-tokens K] --out S.json`.

With per-task criteria (`contracts.tasks.rubric_for_task`) every criterion's rates are over the
chains whose task has it (`n_student` / `n_teacher` say how many), and `report["groups"]` compares
the tasks' own criteria by weight class and tag (`scoring.groups`); the table shows the shared
criteria, then those groups, then the total.

Pass rates are the share of *scored* chains at 1.0 (nulls left out, counted in n_*). For a
pitfall (negative weight) 1.0 means the flaw is present, so a negative gap is the good direction;
`helps` says whether the gap points the way the weight rewards. Intervals resample chains
within each context (unpaired); chains of one task are correlated, so with few tasks the
interval is optimistic — use more tasks rather than more samples per task to tighten it.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Callable

import torch

from rcsd_core.contracts.config import TeacherLayout
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, all_criteria, task_criteria
from rcsd_core.design.preview import preview_chains
from rcsd_core.modeling.contexts import prompt_ids
from rcsd_core.modeling.divergence import chain_ids, completion_logits
from rcsd_core.modeling.losses import divergence_per_token
from rcsd_core.scoring.groups import group_values
from rcsd_core.scoring.judges import Judge
from rcsd_core.files import strict_json
from rcsd_core.scoring.stats import bootstrap_diff_ci, excludes_zero, mean_or_none

# ---------------------------------------------------------------------------- pure statistics


def pass_values(records: list[dict], criterion_id: str) -> list[float]:
    """Scored values (1.0 / 0.0) of one criterion over chain records, nulls dropped."""
    return [float(r["scores"][criterion_id] >= 0.5) for r in records
            if r["scores"].get(criterion_id) is not None]


def compare(student: list[float], teacher: list[float], *, seed: int = 0, weight: float = 1.0) -> dict:
    """Teacher vs student on one criterion (or the total): rates, gap = teacher − student, 95% CI, signal."""
    s_mean = mean_or_none(student)
    t_mean = mean_or_none(teacher)
    gap, (low, high) = bootstrap_diff_ci(teacher, student, seed=seed)
    signal = excludes_zero((low, high))
    helps = None if not signal else (gap > 0) == (weight > 0)
    return {"student": s_mean, "teacher": t_mean, "gap": gap, "ci": [low, high], "signal": signal,
            "helps": helps, "n_student": len(student), "n_teacher": len(teacher)}


def group_pass_values(records: list[dict], own: dict[str, list]) -> dict[str, list[float]]:
    """Pass values (1.0 / 0.0) per criterion group of the tasks' own criteria over chain records."""
    return {g: [float(v >= 0.5) for v in values]
            for g, values in group_values(records, lambda r: own.get(r.get("task_id"), [])).items()}


def divergence_by_criterion(rubric: Rubric | list, records: list[dict], per_chain: dict[str, float]) -> dict:
    """Mean chain divergence per criterion over chains that passed vs failed it."""
    out = {}
    for c in (rubric.criteria if isinstance(rubric, Rubric) else rubric):
        passed = [per_chain[r["id"]] for r in records if r["id"] in per_chain and r["scores"].get(c.id) is not None
                  and r["scores"][c.id] >= 0.5]
        failed = [per_chain[r["id"]] for r in records if r["id"] in per_chain and r["scores"].get(c.id) is not None
                  and r["scores"][c.id] < 0.5]
        out[c.id] = {"pass": mean_or_none(passed), "fail": mean_or_none(failed), "n_pass": len(passed), "n_fail": len(failed)}
    return out


# ---------------------------------------------------------------------------- divergence on student chains


def student_chain_divergences(model, tokenizer, rubric: Rubric, tasks: list[Task], records: list[dict], *,
                              divergence: str = "forward_kl", layout: TeacherLayout = TeacherLayout(),
                              batch_size: int = 4, progress: Callable[[int], None] | None = None,
                              **params) -> list[dict]:
    """Mean per-token divergence of each student chain: student logits on [student prompt + chain]
    vs teacher logits on [teacher prompt + the same chain], completion positions only."""
    by_id = {t.id: t for t in tasks}
    student_prompts = [prompt_ids(tokenizer, by_id[r["task_id"]], rubric, "student") for r in records]
    teacher_prompts = [prompt_ids(tokenizer, by_id[r["task_id"]], rubric, "teacher", layout) for r in records]
    return prompt_pair_divergences(model, tokenizer, student_prompts, teacher_prompts, records,
                                   divergence=divergence, batch_size=batch_size, progress=progress, **params)


def prompt_pair_divergences(model, tokenizer, student_prompts: list[list[int]], teacher_prompts: list[list[int]],
                            records: list[dict], *, divergence: str = "forward_kl", batch_size: int = 4,
                            progress: Callable[[int], None] | None = None, **params) -> list[dict]:
    """Mean per-token divergence of each chain under given prompt ids (one student and one teacher
    prompt per record): the ablation report's variants show the teacher other contexts."""
    out = []
    for b in range(0, len(records), batch_size):
        batch = records[b:b + batch_size]
        completions = [chain_ids(tokenizer, r["text"], finished=bool(r.get("finished"))) for r in batch]
        keep = [i for i, c in enumerate(completions) if c]
        if keep:
            pad = tokenizer.pad_token_id or 0
            s_logits = completion_logits(model, [student_prompts[b + i] for i in keep],
                                         [completions[i] for i in keep], batch_size=batch_size, pad_id=pad)
            t_logits = completion_logits(model, [teacher_prompts[b + i] for i in keep],
                                         [completions[i] for i in keep], batch_size=batch_size, pad_id=pad)
        values: dict[int, torch.Tensor] = {}
        for j, i in enumerate(keep):
            tokens = torch.tensor(completions[i]).unsqueeze(0)
            values[i] = divergence_per_token(divergence, s_logits[j].unsqueeze(0), t_logits[j].unsqueeze(0),
                                             None, tokens, **params)[0]
        for i, r in enumerate(batch):
            v = values.get(i)
            out.append({"id": r["id"], "task_id": r["task_id"], "text": r["text"], "finished": bool(r.get("finished")),
                        "n_tokens": len(completions[i]),
                        "mean": float(v.mean()) if v is not None else None,
                        "max": float(v.max()) if v is not None else None})
        if progress:
            progress(len(batch))
    return out


# ---------------------------------------------------------------------------- the report


def measure_signal(rubric: Rubric, tasks: list[Task], *, model=None, tokenizer=None, model_name: str = "tiny-random",
                   samples: int = 4, max_new_tokens: int = 64, seed: int = 0, divergence: str = "forward_kl",
                   judge: Judge | None = None, progress: Callable[[int, int], None] | None = None,
                   include_reference: bool = False, temperature: float = 1.0,
                   layout: TeacherLayout | None = None, records: list[dict] | None = None) -> dict:
    """Sample, score and compare student vs teacher chains; the JSON-ready signal report.

    progress(done, total) counts sampled chains (2 · samples · tasks) then student chains whose
    divergence is measured (samples · tasks). `layout` is the teacher's context (a run's
    `config.teacher_layout()`); by default a new round's, with the reference when `include_reference`.
    `records`: chains already sampled and scored in both contexts on `tasks` with this rubric and
    layout (a preview's, `design.preview.preview_chains`); then only the divergence is measured.
    """
    if not tasks:
        raise ValueError("measure_signal needs at least one task")
    if model is None or tokenizer is None:
        from rcsd_core.modeling.models import load_model
        model, tokenizer = load_model(model_name)
    layout = layout or TeacherLayout(include_reference=include_reference)
    reused = records is not None
    n_sampled = 0 if reused else 2 * samples * len(tasks)
    total_steps = n_sampled + samples * len(tasks)

    def sampling_progress(done: int, _count: int) -> None:
        if progress:
            progress(done, total_steps)

    tokens_per_s = None
    if not reused:
        records, stats = preview_chains(rubric, tasks, model=model, tokenizer=tokenizer, model_name=model_name,
                                        samples=samples, max_new_tokens=max_new_tokens, context="both", seed=seed,
                                        temperature=temperature, layout=layout, judge=judge,
                                        progress=sampling_progress)
        tokens_per_s = round(stats.tokens_per_s, 2)
    student = [r for r in records if r["context"] == "student"]
    teacher = [r for r in records if r["context"] == "teacher"]

    every = all_criteria(rubric, tasks)
    shared = {c.id for c in rubric.criteria}
    criteria = {}
    for c in every:
        criteria[c.id] = {"title": c.label, "weight": c.weight, "pitfall": c.is_pitfall, "shared": c.id in shared,
                          **compare(pass_values(student, c.id), pass_values(teacher, c.id), seed=seed,
                                    weight=c.weight)}
    own = task_criteria(rubric, tasks)
    s_groups, t_groups = group_pass_values(student, own), group_pass_values(teacher, own)
    groups = {}
    for g in dict.fromkeys([*s_groups, *t_groups]):
        weight = -1.0 if g == "weight:pitfall" else 1.0  # a tag group mixes signs: read its gap as is
        groups[g] = compare(s_groups.get(g, []), t_groups.get(g, []), seed=seed, weight=weight)
    totals = compare([r["total"] for r in student if r["total"] is not None],
                     [r["total"] for r in teacher if r["total"] is not None], seed=seed)

    done = [n_sampled]

    def divergence_progress(count: int) -> None:
        done[0] += count
        if progress:
            progress(done[0], total_steps)

    per_chain = student_chain_divergences(model, tokenizer, rubric, tasks, student, divergence=divergence,
                                          layout=layout, progress=divergence_progress)
    chain_means = {d["id"]: d["mean"] for d in per_chain if d["mean"] is not None}
    overall = mean_or_none(list(chain_means.values()))
    return strict_json({
        "criteria": criteria,
        "groups": groups,
        "total": totals,
        "divergence": {"name": divergence, "mean": overall, "per_chain": per_chain,
                       "by_criterion": divergence_by_criterion(every, student, chain_means)},
        "model": model_name,
        "rubric": rubric.name,
        "rubric_version": rubric.version,
        "tasks": len(tasks),
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "temperature": temperature,
        "include_reference": layout.include_reference,
        "layout": asdict(layout),
        "judge": getattr(judge, "name", None),
        "tokens_per_s": tokens_per_s,
        "reused_chains": reused,
    })


def signal_table(report: dict):
    """The report as a pandas table: one row per shared criterion, one per group of the tasks' own
    criteria (`weight:essential`, `tag:…`; weight empty), then `total`."""
    import pandas as pd

    rows = []
    shared = [(cid, c) for cid, c in report["criteria"].items() if c.get("shared", True)]
    for cid, c in shared + list(report.get("groups", {}).items()) + [("total", report["total"])]:
        low, high = c["ci"]
        by = report["divergence"]["by_criterion"].get(cid, {})
        rows.append({"criterion": cid, "weight": c.get("weight"), "student": c["student"], "teacher": c["teacher"],
                     "gap": c["gap"], "ci_low": low, "ci_high": high,
                     "signal": "yes" if c["signal"] else "no signal",
                     "n": f"{c['n_student']}/{c['n_teacher']}",
                     "div_pass": by.get("pass"), "div_fail": by.get("fail")})
    return pd.DataFrame(rows)
