"""What the studio's pages ask of a model, and of the design and scoring layers, one function each.

    set_id, stats = sample_preview(root, rubric_name="grade-school-math", version=None, task_set="arithmetic",
                                   limit=4, model_name="tiny-random", samples=2, max_new_tokens=48,
                                   context="both", seed=0)
    html = guidance_html(root, set_id, chain)          # where the rubric pushes one previewed chain
    report = measure_chain_set_signal(root, set_id)     # student vs teacher pass rates per criterion
    table = lint_table(rubric, chains)                  # rubric lint, as rows
    result, saved = draft_new_rubric(root, name=..., description=..., task_set=..., examples=3,
                                     model_name="smollm2-135m-instruct")
    name, outcomes = draft_task_set_criteria(root, task_set=..., rubric_name=..., model_name=..., new_name=...)
    messages = teacher_view(rubric, prompt, reference, include_reference=False)
    table = calibration_table(store, rubric="grade-school-math")

Pages call these and render what comes back; they never touch a model or a tensor. Models come
from the one cache (`state.cached_model`). The modules that load torch (design.preview,
design.guidance, design.signals, modeling.models) are imported inside the functions, so that
importing this module — what a page does on every rerun — stays light.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.names import check_name
from rcsd_core.contracts.tasks import Task, check_task_rubrics
from rcsd_core.design.drafting import EMBEDDED_WARNING, DraftResult
from rcsd_core.design.lint import findings_table, lint_rubric
from rcsd_core.errors import InputError
from rcsd_core.modeling.contexts import teacher_messages
from rcsd_core.scoring.calibration import calibrate
from rcsd_core.studio import judging
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.judging import JudgeChoice
from rcsd_core.studio.state import cached_model
from rcsd_core.studio.store import ReviewStore

__all__ = ["EMBEDDED_WARNING", "sample_preview", "chain_set", "chain_set_tasks", "guidance_html",
           "measure_chain_set_signal", "signal_rows", "lint_table", "draft_new_rubric", "draft_task_set_criteria",
           "teacher_view", "review_marks", "search_chains", "calibration_table", "readiness_verdict",
           "measure_chain_set_ablation", "ablation_rows", "design_reports", "run_design_reports"]

Progress = Callable[[int, int], None]
MIN_SIGNAL_TASKS = 4   # fewer tasks than this say little about a criterion's gap


# ---------------------------------------------------------------------------- preview


def sample_preview(root: str | Path, *, rubric_name: str, version: str | None, task_set: str, limit: int,
                   model_name: str, samples: int, max_new_tokens: int, context: str, seed: int,
                   judge: JudgeChoice | None = None, progress: Progress | None = None) -> tuple[str, Any]:
    """Sample and score chains on the first `limit` train tasks, save them as a chain set: (set id, stats).

    `judge` scores the criteria without a check (none: they stay unscored); the chain set records which.
    """
    from rcsd_core.design.preview import preview_chains

    model_name = model_name.strip()
    if not model_name:
        raise InputError("give a model path or hub id", field="model")
    rubric = ws.load_rubric_version(root, rubric_name, version)
    tasks = ws.load_task_set(root, task_set, split="train")[: int(limit)]
    check_task_rubrics(rubric, tasks, source=f"task set {task_set}")  # before the model loads
    model, tokenizer = cached_model(model_name)
    choice = (judge or JudgeChoice()).checked()
    scorer = judging.build_judge(choice, preview_model=model_name)
    records, stats = preview_chains(rubric, tasks, model=model, tokenizer=tokenizer, model_name=model_name,
                                    samples=int(samples), max_new_tokens=int(max_new_tokens), context=context,
                                    seed=int(seed), judge=scorer, progress=progress)
    set_id = ws.save_chain_set(root, records, {
        "rubric": rubric_name, "rubric_version": rubric.version, "tasks": task_set, "model": model_name,
        "judge": choice.label,
        "context": context, "samples": int(samples), "max_new_tokens": int(max_new_tokens), "seed": int(seed),
        "tokens_per_s": round(stats.tokens_per_s, 1)})
    return set_id, stats


def chain_set(root: str | Path, set_id: str) -> tuple[dict, list[dict], Rubric]:
    """A saved chain set: (its meta, its chains, the rubric version they were scored with)."""
    meta = ws.chain_set_meta(root, set_id)
    records = ws.load_chain_set(root, set_id)
    return meta, records, ws.load_rubric_version(root, meta["rubric"], meta["rubric_version"])


def chain_set_tasks(root: str | Path, set_id: str) -> list[Task]:
    """The tasks of a chain set's chains, from its task set (their own criteria group its views);
    empty when the task set is gone."""
    meta = ws.chain_set_meta(root, set_id)
    try:
        tasks = ws.load_task_set(root, meta["tasks"])
    except InputError:
        return []
    wanted = {r.get("task_id") for r in ws.load_chain_set(root, set_id)}
    return [t for t in tasks if t.id in wanted]


def _task_of(root: str | Path, meta: dict, task_id: str) -> Task:
    task = next((t for t in ws.load_task_set(root, meta["tasks"]) if t.id == task_id), None)
    if task is None:
        raise InputError(f"task {task_id!r} is no longer in task set {meta['tasks']!r}")
    return task


def guidance_html(root: str | Path, set_id: str, chain: dict) -> str:
    """The guidance map of one chain of a chain set as self-contained HTML (tokens escaped)."""
    from rcsd_core.design.guidance import guidance_map

    meta, _, rubric = chain_set(root, set_id)
    task = _task_of(root, meta, chain["task_id"])
    model, tokenizer = cached_model(meta["model"])
    gmap = guidance_map(model, tokenizer, rubric, task, chain["text"], finished=bool(chain.get("finished")))
    return gmap.to_html()


# ---------------------------------------------------------------------------- signal and lint


def measure_chain_set_signal(root: str | Path, set_id: str, progress: Progress | None = None) -> dict:
    """Measure the signal with a chain set's rubric, model and settings on its train tasks; saved and returned.

    The chain set's own chains are reused when they fit — sampled in both contexts on at least
    MIN_SIGNAL_TASKS tasks, with the judge now remembered for the rubric — so only the divergence
    is computed; otherwise fresh chains are sampled in both contexts on at least MIN_SIGNAL_TASKS
    tasks (more when the chain set covered more). The judge (judging.load_choice) scores criteria
    without a check.
    """
    from rcsd_core.design.signals import measure_signal

    meta, records, rubric = chain_set(root, set_id)
    choice = judging.load_choice(root, meta["rubric"])
    covered = list(dict.fromkeys(r["task_id"] for r in records))
    reuse = (meta.get("context") == "both" and len(covered) >= MIN_SIGNAL_TASKS
             and meta.get("judge", JudgeChoice().label) == choice.label)
    count = max(MIN_SIGNAL_TASKS, len(covered))
    tasks = ws.load_task_set(root, meta["tasks"], split="train")[:count]
    if reuse and [t.id for t in tasks] != covered:
        reuse = False      # the task set no longer starts with the chain set's tasks
    model, tokenizer = cached_model(meta["model"])
    judge = None if reuse else judging.build_judge(choice, preview_model=meta["model"])
    report = measure_signal(rubric, tasks, model=model, tokenizer=tokenizer, model_name=meta["model"],
                            samples=int(meta.get("samples", 2)), max_new_tokens=int(meta.get("max_new_tokens", 48)),
                            seed=int(meta.get("seed", 0)), judge=judge, progress=progress,
                            records=records if reuse else None)
    report = {**report, "chain_set": set_id if reuse else None, "judge_choice": choice.label}
    ws.save_signal_report(root, report)
    return report


def measure_chain_set_ablation(root: str | Path, set_id: str, progress: Progress | None = None) -> dict:
    """The ablation report ("does the rubric matter?") with a chain set's rubric, model and settings on its
    train tasks; the shuffled teacher reads another workspace rubric's criteria. Saved and returned."""
    from rcsd_core.design.ablation import ModelBackend, run_ablation

    meta, records, rubric = chain_set(root, set_id)
    count = max(4, len({r["task_id"] for r in records}))
    tasks = ws.load_task_set(root, meta["tasks"], split="train")[:count]
    other = next((n for n in ws.list_rubrics(root) if n != meta["rubric"]), None)
    shuffled = None
    if other is not None:
        other_rubric = ws.load_rubric_version(root, other)
        if other_rubric.name != rubric.name:
            shuffled = (other_rubric, f"workspace rubric {other!r}")
    model, tokenizer = cached_model(meta["model"])
    report = run_ablation(rubric, tasks, ModelBackend(model, tokenizer), samples=int(meta.get("samples", 2)),
                          max_new_tokens=int(meta.get("max_new_tokens", 48)), seed=int(meta.get("seed", 0)),
                          shuffled=shuffled, progress=progress, model_name=meta["model"])
    ws.save_ablation_report(root, report)
    return report


def ablation_rows(report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An ablation report as tables: per variant and criterion, and the per-criterion attribution."""
    from rcsd_core.design.ablation import ablation_table, attribution_table

    return ablation_table(report), attribution_table(report)


def design_reports(root: str | Path, rubric: Rubric, *, tasks: list[Task] | None = None,
                   chains: list[dict] | None = None) -> dict:
    """What the HTML export shows about a rubric before and during a round: the newest signal and
    ablation reports of this rubric version and the lint findings (polarity on `tasks`, leak and
    saturation on `chains`) as records."""
    findings = lint_rubric(rubric, chains=chains, tasks=tasks)
    named = {i for f in findings for i in f.chains}
    return {"signal": ws.latest_signal_report(root, rubric.name, rubric.version),
            "ablation": ws.latest_ablation_report(root, rubric.name, rubric.version),
            "lint": [f.to_record() for f in findings],
            "lint_chains": {str(c.get("id")): c.get("text", "") for c in chains or [] if str(c.get("id")) in named}}


def run_design_reports(root: str | Path, run_dir: str | Path) -> dict:
    """design_reports for a run: its frozen rubric and tasks, and the chains of its latest evaluation."""
    from rcsd_core.contracts import runs
    from rcsd_core.contracts.rubric import load_rubric, rubric_from_data
    from rcsd_core.contracts.tasks import load_tasks

    config = runs.load_run_config(run_dir)
    rubric = rubric_from_data(config.rubric) if isinstance(config.rubric, dict) else load_rubric(config.rubric)
    try:
        tasks = load_tasks(Path(run_dir) / runs.TASKS_FILE)
    except InputError:
        tasks = None
    evals = [r for r in runs.read_samples(run_dir) if r.get("kind") == "eval"]
    last = max((r.get("step", 0) for r in evals), default=None)
    chains = [r for r in evals if r.get("step", 0) == last] or None
    return design_reports(root, rubric, tasks=tasks, chains=chains)


def signal_rows(report: dict) -> pd.DataFrame:
    """A signal report as a table: per criterion, student and teacher pass rates and the gap with its CI."""
    from rcsd_core.design.signals import signal_table

    return signal_table(report)


def readiness_verdict(root: str | Path, rubric_name: str | None) -> dict | None:
    """The readiness verdict (go / weak / too_weak, with next steps) of the newest signal report of the
    rubric's current version, with the report's file time; None when it has none yet."""
    from rcsd_core.design.readiness import readiness

    if not rubric_name:
        return None
    try:
        version = ws.current_version(root, rubric_name)
    except InputError:
        return None
    report = ws.latest_signal_report(root, rubric_name, version)
    return None if report is None else {**readiness(report), "rubric_version": version}


def lint_table(rubric: Rubric, chains: Iterable[dict] | None = None, tasks: Iterable[Task] | None = None, *,
               judge_configured: bool = False) -> pd.DataFrame:
    """Rubric lint findings as rows (weights, duplicates; with chains, discrimination, correlation and
    leaks; with tasks, their own criteria, each judged over the chains it applies to, and the polarity of
    their ideal answers); `judge_configured`: a judge is chosen for the rubric, so judged criteria are not
    reported as unscored."""
    return findings_table(lint_rubric(rubric, chains=list(chains) if chains is not None else None,
                                      tasks=list(tasks or []), judge_configured=judge_configured))


# ---------------------------------------------------------------------------- drafting and the teacher's view


def draft_new_rubric(root: str | Path, *, name: str, description: str, task_set: str | None, examples: int,
                     model_name: str) -> tuple[DraftResult, str | None]:
    """Draft a rubric with a model from a description and example tasks; saved when usable and new.

    Returns (the draft, the saved rubric's name or None when nothing usable came out).
    """
    from rcsd_core.design.drafting import draft_rubric

    model_name = model_name.strip()
    if not model_name:
        raise InputError("give a model to draft with", field="model")
    tasks = ws.load_task_set(root, task_set)[: int(examples)] if task_set else []
    model, tokenizer = cached_model(model_name)
    result = draft_rubric(model, tokenizer, description=description, name=name.strip(),
                          prompts=[t.prompt for t in tasks], references=[t.reference for t in tasks])
    if result.rubric is None:
        return result, None
    if result.rubric.name in ws.list_rubrics(root):
        raise InputError(f"a rubric named {result.rubric.name!r} already exists; choose another name", field="name")
    ws.save_rubric_version(root, result.rubric, note=f"drafted by {model_name}")
    return result, result.rubric.name


def draft_task_set_criteria(root: str | Path, *, task_set: str, rubric_name: str, model_name: str,
                            new_name: str, description: str = "", limit: int | None = None,
                            progress: Progress | None = None) -> tuple[str, list]:
    """Draft each task's own criteria with a model (`design.task_drafting`) and save the result as a
    new task set; (its name, the per-task outcomes). The cache under tasks/.drafts/ keeps the raw
    replies and lets a second try skip the tasks already drafted."""
    from rcsd_core.design.task_drafting import LocalDrafter, draft_task_set
    from rcsd_core.studio.task_criteria import save_new_task_set

    model_name = model_name.strip()
    if not model_name:
        raise InputError("give a model to draft with", field="model")
    check_name(new_name.strip(), "task set")
    if new_name.strip() in ws.list_task_sets(root):
        raise InputError(f"a task set named {new_name.strip()!r} already exists; choose a new name", field="name")
    shared = ws.load_rubric_version(root, rubric_name)
    tasks = ws.load_task_set(root, task_set)
    tasks = tasks[: int(limit)] if limit else tasks
    check_task_rubrics(shared, tasks, source=f"task set {task_set}")
    model, tokenizer = cached_model(model_name)
    cache = Path(root) / "tasks" / ".drafts" / f"{task_set}.{rubric_name}.{_file_part(model_name)}.jsonl"
    drafted, outcomes = draft_task_set(tasks, LocalDrafter(model, tokenizer, name=model_name), cache=cache,
                                       shared=shared, description=description, progress=progress)
    return save_new_task_set(root, drafted, new_name=new_name), outcomes


def _file_part(text: str) -> str:
    """A model name or path as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "model"


def teacher_view(rubric: Rubric, prompt: str, reference: str | None = None, *,
                 include_reference: bool = False) -> list[dict]:
    """The messages the teacher reads for `prompt`: the rubric, its worked examples as turns, the prompt."""
    return teacher_messages(prompt, rubric, reference=reference, include_reference=include_reference)


# ---------------------------------------------------------------------------- chains on the Preview page


def review_marks(store: ReviewStore) -> dict[str, str]:
    """{chain id: the status of its newest flag}: open, accept, reject or rubric-needs-work."""
    queue = store.queue()                     # newest first: iterate oldest first so the newest wins
    return dict(zip(queue["chain_id"][::-1], queue["status"][::-1]))


def search_chains(records: list[dict], query: str) -> list[dict]:
    """The chains whose text, prompt or task id contains every word of `query` (any case); all when empty."""
    words = query.lower().split()
    return [r for r in records
            if all(w in f"{r.get('text', '')}\n{r.get('prompt', '')}\n{r.get('task_id', '')}".lower() for w in words)]


# ---------------------------------------------------------------------------- calibration


def calibration_table(store: ReviewStore, rubric: str | None = None) -> pd.DataFrame | None:
    """Agreement of automatic verdicts with reviewers' per criterion (accuracy, Cohen's kappa, 2×2 counts).

    None until reviewers have given verdicts on automatically scored criteria.
    """
    pairs = store.verdict_pairs(rubric)[["criterion", "auto", "human"]]
    if pairs.dropna(subset=["auto"]).empty:
        return None
    return calibrate(pairs.itertuples(index=False, name=None))   # a missing score (NaN here) counts as skipped
