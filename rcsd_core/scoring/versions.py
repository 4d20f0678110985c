"""Two rubric versions scored on the same chains, side by side, against the human verdicts.

Per criterion (the union of both versions' ids, the older version's order first): the pass rate
of each version's automatic score on the chains, how many chains changed verdict between the two,
and each version's agreement with the majority human verdict (Cohen's kappa and F1, ties left
out, from scoring.agreement) — so a practitioner sees whether the new version fixed what
reviewers flagged. A criterion one version lacks has None on that side.

    table = compare_versions(chains, old, new, review_rows)   # a pandas DataFrame, one row per criterion

Chains are records with `id`, `text` and optionally `prompt` / `reference` (a preview chain set);
review rows are {"chain_id", "reviewer", "criterion_scores"} (ReviewStore.review_rows). Only the
checks score here: a judged criterion (no check) is None unless a `judge` is given.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import pandas as pd

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.scoring.agreement import judge_agreement, latest_ratings
from rcsd_core.scoring.scores import score_chain

COLUMNS = ["criterion", "pass_old", "pass_new", "scored", "changed", "kappa_old", "kappa_new", "f1_old", "f1_new",
           "n_human", "note"]


def score_all(rubric: Rubric, chains: Sequence[dict], judge=None) -> dict[str, dict[str, float | None]]:
    """{chain id: {criterion: score}} of a rubric on the chains."""
    return {c["id"]: score_chain(rubric, c, judge=judge).scores for c in chains}


def compare_versions(chains: Sequence[dict], old: Rubric, new: Rubric,
                     review_rows: Iterable[Mapping] = (), judge=None) -> pd.DataFrame:
    a, b = score_all(old, chains, judge), score_all(new, chains, judge)
    ratings = latest_ratings(review_rows)
    ids = [c.id for c in old.criteria] + [c.id for c in new.criteria if c.id not in {x.id for x in old.criteria}]
    rows = []
    for cid in ids:
        col_a = {k: v.get(cid) for k, v in a.items()} if any(c.id == cid for c in old.criteria) else None
        col_b = {k: v.get(cid) for k, v in b.items()} if any(c.id == cid for c in new.criteria) else None
        both = [k for k in a if col_a is not None and col_b is not None
                and col_a[k] is not None and col_b[k] is not None]
        items = {k: v for k, v in ratings.get(cid, {}).items() if k in a}
        row = {"criterion": cid, "pass_old": _rate(col_a), "pass_new": _rate(col_b), "scored": len(both),
               "changed": sum(col_a[k] != col_b[k] for k in both), "n_human": sum(1 for v in items.values() if v)}
        notes = []
        for side, column in (("old", col_a), ("new", col_b)):
            if column is None:
                row[f"kappa_{side}"] = row[f"f1_{side}"] = None
                notes.append(f"not in the {side} version")
                continue
            if not items:
                row[f"kappa_{side}"] = row[f"f1_{side}"] = None
                continue
            got = judge_agreement(items, column)
            row[f"kappa_{side}"], row[f"f1_{side}"] = got["kappa"], got["f1"]
            if got["note"]:
                notes.append(f"{side}: {got['note']}")
        if not items:
            notes.append("no human verdicts on these chains")
        row["note"] = "; ".join(notes)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    nullable = ["pass_old", "pass_new", "kappa_old", "kappa_new", "f1_old", "f1_new"]
    return frame.astype({c: object for c in nullable}).where(frame.notna(), None)


def _rate(column: Mapping[str, float | None] | None) -> float | None:
    """Share of scored chains at pass (≥ 0.5); None when nothing is scored or the criterion is absent."""
    if column is None:
        return None
    scored = [v for v in column.values() if v is not None]
    return sum(v >= 0.5 for v in scored) / len(scored) if scored else None
