"""Criterion groups: per-criterion views that stay readable when every task brings its own criteria.

A task set with per-task rubrics (HealthBench, RaR) has thousands of criterion ids, each scored
on a handful of chains; one column per id says nothing. Criteria are grouped instead:

- by **weight class** (`weight:<class>`), from the weight alone, on RaR's scale:
  `pitfall` w < 0 · `optional` 0 < w < 3 · `important` 3 ≤ w < 5 · `essential` w ≥ 5
  (RaR writes Essential 5, Important 3–4, Optional 1–2, Pitfall −1/−2; HealthBench points
  −10…10 fall in the same bands);
- by **tag** (`tag:<tag>`, e.g. `tag:axis:accuracy` from HealthBench's `axis:accuracy`).

A group's values are the scores of every (chain, criterion) pair in it where the criterion applies
to the chain (it is in the chain's scores) and was scored (not null): a group's mean is its pass
rate for check-scored (0/1) criteria. For a pitfall group 1.0 means the flaw is present.

    values = group_values(records, lambda r: own[r["task_id"]])   # {"weight:essential": [1.0, 0.0, ...], ...}
    group_table(values)                                              # pandas: group, pass_rate, n

Pure functions, no model; the round's metrics (`group/<name>`), `rcsd signal` and the Results
page use them.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

from rcsd_core.contracts.rubric import Criterion

WEIGHT_CLASSES = ("essential", "important", "optional", "pitfall")


def weight_class(weight: float) -> str:
    """essential (w ≥ 5), important (3 ≤ w < 5), optional (0 < w < 3) or pitfall (w < 0)."""
    if weight < 0:
        return "pitfall"
    if weight >= 5:
        return "essential"
    if weight >= 3:
        return "important"
    return "optional"


def criterion_groups(criterion: Criterion) -> list[str]:
    """The groups a criterion belongs to: its weight class, then one per tag."""
    return [f"weight:{weight_class(criterion.weight)}", *(f"tag:{t}" for t in criterion.tags)]


def group_order(name: str) -> tuple:
    """Weight classes first in WEIGHT_CLASSES order, then tags alphabetically."""
    if name.startswith("weight:") and name[7:] in WEIGHT_CLASSES:
        return (0, WEIGHT_CLASSES.index(name[7:]), "")
    return (1, 0, name)


def group_values(records: Iterable[Mapping], criteria_of: Callable[[Mapping], Sequence[Criterion]]
                 ) -> dict[str, list[float]]:
    """Scores per group over chain records ({"scores": {...}, ...}); `criteria_of(record)` gives the
    criteria to group for that record (e.g. its task's own). Groups come in `group_order`."""
    out: dict[str, list[float]] = {}
    for record in records:
        scores = record.get("scores") or {}
        for criterion in criteria_of(record):
            value = scores.get(criterion.id)
            if value is None:
                continue
            for group in criterion_groups(criterion):
                out.setdefault(group, []).append(float(value))
    return {g: out[g] for g in sorted(out, key=group_order)}


def group_means(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Mean score per group (its pass rate for 0/1 scores)."""
    return {g: sum(v) / len(v) for g, v in values.items() if v}


def group_table(values: Mapping[str, Sequence[float]]):
    """A pandas table: one row per group, with its pass rate (share of pairs at ≥ 0.5) and pairs n."""
    import pandas as pd

    rows = [{"group": g, "pass_rate": sum(x >= 0.5 for x in v) / len(v) if v else None, "n": len(v)}
            for g, v in values.items()]
    return pd.DataFrame(rows, columns=["group", "pass_rate", "n"])
