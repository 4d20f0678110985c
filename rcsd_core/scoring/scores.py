"""Scoring chains against a rubric: per-criterion scores and the weighted total.

    total = Σ_{scored j} w_j·s_j / Σ_{scored j, w_j > 0} w_j

1.0 is perfect; pitfalls (w < 0) score 1.0 when the flaw is present and can push the total below
zero; the total is None when no positive-weight criterion is scored. Criteria without a
programmatic check stay None unless a judge is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import pandas as pd

from rcsd_core.scoring.checks import run_check
from rcsd_core.scoring.judges import Judge, Verdict
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, rubric_for_task, task_criteria
from rcsd_core.scoring.groups import group_order, group_values


@dataclass
class ChainScore:
    """The scores of one chain: a value per criterion id, the total, and judge verdicts kept raw."""
    chain_id: str
    scores: dict[str, float | None]
    total: float | None
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    def to_record(self) -> dict:
        record = {"id": self.chain_id, "scores": self.scores, "total": self.total}
        if self.verdicts:
            record["judge"] = {cid: v.to_record() for cid, v in self.verdicts.items()}
        return record


def total_score(rubric: Rubric, scores: dict[str, float | None]) -> float | None:
    """Weighted total over scored criteria, normalised by the scored positive weights; held-out
    criteria are left out (they are watched, never trained on)."""
    numerator = 0.0
    denominator = 0.0
    for criterion in rubric.criteria:
        if criterion.held_out:
            continue
        s = scores.get(criterion.id)
        if s is None:
            continue
        numerator += criterion.weight * s
        if criterion.weight > 0:
            denominator += criterion.weight
    return numerator / denominator if denominator > 0 else None


def score_text(rubric: Rubric, text: str, *, reference: str | None = None, prompt: str = "",
               judge: Judge | None = None) -> tuple[dict[str, float | None], dict[str, Verdict]]:
    """Per-criterion scores of one text, plus the judge's verdicts where a judge was asked."""
    scores: dict[str, float | None] = {}
    verdicts: dict[str, Verdict] = {}
    for criterion in rubric.criteria:
        if not criterion.is_judged:
            scores[criterion.id] = run_check(criterion.check, text, reference)
        elif judge is not None:
            verdict = judge.judge(criterion, prompt=prompt, text=text, reference=reference)
            verdicts[criterion.id] = verdict
            scores[criterion.id] = verdict.score
        else:
            scores[criterion.id] = None
    return scores, verdicts


def score_chain(rubric: Rubric, chain: dict, *, task_references: dict[str, str | None] | None = None,
                task_prompts: dict[str, str] | None = None, judge: Judge | None = None,
                tasks: Mapping[str, Task] | None = None) -> ChainScore:
    """Score a chain record (DESIGN's chains JSONL); its own `reference` wins over the task's.

    With `tasks` (by id), a chain whose task is known is scored on that task's rubric
    (`rubric_for_task`: its own criteria extend or replace the shared ones); any other chain on
    the shared rubric.
    """
    task = (tasks or {}).get(chain.get("task_id"))
    if task is not None:
        rubric = rubric_for_task(rubric, task)
        task_references = {**(task_references or {}), task.id: task.reference}
        task_prompts = {**(task_prompts or {}), task.id: task.prompt}
    reference = chain.get("reference")
    if reference is None and task_references:
        reference = task_references.get(chain.get("task_id"))
    if reference is not None and not isinstance(reference, str):
        reference = str(reference)  # a bare JSON number, e.g. "reference": 42
    prompt = chain.get("prompt") or (task_prompts or {}).get(chain.get("task_id"), "")
    scores, verdicts = score_text(rubric, chain["text"], reference=reference, prompt=prompt, judge=judge)
    return ChainScore(chain_id=chain["id"], scores=scores, total=total_score(rubric, scores), verdicts=verdicts)


def score_samples(rubric: Rubric, tasks: Sequence[Task], samples: Sequence, **extra) -> list[dict]:
    """Chain records (DESIGN §2) with scores, for sampled chains whose `prompt_index` indexes `tasks`.

    A sample is anything with prompt_index, sample_index, text, n_tokens and finished
    (`modeling.generation.Sample`); `extra` fields are added to every record.
    """
    records = []
    for s in samples:
        task = tasks[s.prompt_index]
        task_rubric = rubric_for_task(rubric, task)
        scores, _ = score_text(task_rubric, s.text, reference=task.reference, prompt=task.prompt)
        records.append({"id": f"{task.id}:{s.sample_index}", "task_id": task.id, "sample": s.sample_index,
                        "text": s.text, "n_tokens": s.n_tokens, "finished": s.finished, **extra,
                        "scores": scores, "total": total_score(task_rubric, scores)})
    return records


def summarize_scores(rubric: Rubric, results: Iterable[ChainScore | dict],
                     tasks: Sequence[Task] | None = None) -> pd.DataFrame:
    """Per shared criterion: weight, pass rate (share of scored chains at 1.0), mean, scored and null
    counts, over the chains it applies to (its id is in their scores).

    With `tasks`, the tasks' own criteria follow as one row per group (`scoring.groups`: weight
    class, tag; `weight` empty, counts over (chain, criterion) pairs) rather than one per id, for
    chains carrying a `task_id`. A last row, `total`, gives the mean total over chains that have one.
    """
    records = [r.to_record() if isinstance(r, ChainScore) else r for r in results]
    rows = []
    for c in rubric.criteria:
        values = pd.Series([r["scores"][c.id] for r in records if c.id in r["scores"]], dtype="float64")
        scored = values.dropna()
        rows.append({"criterion": c.id, "weight": c.weight,
                     "pass_rate": (scored >= 0.5).mean() if len(scored) else None,
                     "mean": scored.mean() if len(scored) else None,
                     "scored": int(len(scored)), "null": int(values.isna().sum())})
    if tasks:
        own = task_criteria(rubric, list(tasks))
        applied = group_values(records, lambda r: own.get(r.get("task_id"), []))
        # the unscored pairs of each group: the same grouping over the records' null scores
        nulls = group_values([{**r, "scores": {k: 1.0 for k, v in r["scores"].items() if v is None}}
                              for r in records], lambda r: own.get(r.get("task_id"), []))
        for group in sorted({*applied, *nulls}, key=group_order):
            series = pd.Series(applied.get(group, []), dtype="float64")
            rows.append({"criterion": group, "weight": None,
                         "pass_rate": (series >= 0.5).mean() if len(series) else None,
                         "mean": series.mean() if len(series) else None,
                         "scored": len(series), "null": len(nulls.get(group, []))})
    totals = pd.Series([r.get("total") for r in records], dtype="float64").dropna()
    rows.append({"criterion": "total", "weight": None, "pass_rate": None,
                 "mean": totals.mean() if len(totals) else None,
                 "scored": int(len(totals)), "null": len(records) - int(len(totals))})
    return pd.DataFrame(rows)
