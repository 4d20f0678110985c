"""Agreement: how far several human reviewers agree with each other, and a judge with them.

Per criterion, over the chains the reviewers rated (pass 1.0 / fail 0.0; null = not judged):
- reviewer–reviewer: Cohen's kappa for each pair of reviewers (chains both rated), Fleiss' kappa
  over the chains with the same number of ratings (the most common count ≥ 2; the others are
  left out and counted in the note), and nominal Krippendorff's alpha over every chain, missing
  ratings allowed (a chain rated once has no pair and adds nothing);
- judge–human: Cohen's kappa, precision, recall and F1 of the judge's verdict (automatic score,
  pass at ≥ 0.5) against the majority human verdict; chains where the reviewers tie are left out.

A figure that is undefined — fewer than MIN_ITEMS chains, every rating in one class (chance
agreement 1), no pass anywhere for precision/recall — is None with a note saying why, never a
made-up 0 or 1. Reviews are appended, so the last row of a reviewer for a chain wins (the whole
row: a criterion it leaves out or nulls is not rated by that reviewer any more).

    ratings = latest_ratings(rows)                    # {criterion: {chain: {reviewer: value}}}
    report = agreement_report(rows, judge_scores)     # per criterion: the figures, pairs, disagreements
    to_json(report)                                   # {"criteria": {id: {n_items, fleiss_kappa, ...}}}

CLI: `rcsd agreement --reviews R.jsonl [--scores S.jsonl] --out A.json`; review rows are the
store's export ({"chain_id", "reviewer", "criterion_scores": {id: 1.0|0.0|null}}), scores the
`rcsd score` / preview records ({"id", "scores": {...}}).

The statistics are written out here over numpy: none of statsmodels, scikit-learn or the
`krippendorff` package is in the environment, and each formula is a few lines.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

from rcsd_core.errors import InputError
from rcsd_core.files import iter_jsonl

MIN_ITEMS = 2
JSON_KEYS = ("n_items", "fleiss_kappa", "krippendorff_alpha", "judge_kappa", "precision", "recall", "f1", "note")

Ratings = Mapping[str, Mapping[str, Hashable]]  # {chain_id: {reviewer: value}} for one criterion


# ---------------------------------------------------------------------------- pure


def latest_ratings(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{criterion: {chain_id: {reviewer: verdict}}} from review rows, the last row of a reviewer
    for a chain winning whole; null verdicts are not ratings. Criteria in first-seen order."""
    last: dict[tuple[str, str], Mapping[str, Any]] = {}
    order: list[str] = []
    for row in rows:
        last[(row["chain_id"], row["reviewer"])] = row["criterion_scores"]
        order += [c for c in row["criterion_scores"] if c not in order]
    out: dict[str, dict[str, dict[str, float]]] = {c: {} for c in order}
    for (chain_id, reviewer), scores in last.items():
        for cid, value in scores.items():
            if value is not None:
                out[cid].setdefault(chain_id, {})[reviewer] = value
    return out


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> tuple[float | None, str]:
    """Nominal Cohen's kappa of two raters over the same items, and a note (None when undefined)."""
    n = len(a)
    if n < MIN_ITEMS:
        return None, f"too few items ({n} < {MIN_ITEMS})"
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    chance = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if chance >= 1.0 - 1e-12:
        return None, "undefined: every rating is in one class"
    return (observed - chance) / (1.0 - chance), ""


def pairwise_cohen(items: Ratings) -> list[dict]:
    """Cohen's kappa of every pair of reviewers over the items both rated, pairs in name order."""
    reviewers = sorted({r for ratings in items.values() for r in ratings})
    out = []
    for ra, rb in combinations(reviewers, 2):
        both = [(v[ra], v[rb]) for v in items.values() if ra in v and rb in v]
        kappa, note = cohen_kappa([x for x, _ in both], [y for _, y in both])
        out.append({"reviewer_a": ra, "reviewer_b": rb, "n": len(both), "kappa": kappa, "note": note})
    return out


def fleiss_kappa(items: Ratings) -> dict:
    """Fleiss' kappa over the items with the most common rating count m ≥ 2 (ties: the larger m).

    Returns {"kappa", "n", "m", "left_out", "note"}: n items used, left_out the items rated at least
    once that have another count.
    """
    counts = Counter(len(v) for v in items.values() if len(v) >= 2)
    rated = sum(1 for v in items.values() if v)
    if not counts:
        return {"kappa": None, "n": 0, "m": None, "left_out": rated,
                "note": "Fleiss' kappa undefined: no chain has two ratings"}
    m = max(counts, key=lambda k: (counts[k], k))
    used = [list(v.values()) for v in items.values() if len(v) == m]
    result = {"kappa": None, "n": len(used), "m": m, "left_out": rated - len(used), "note": ""}
    if len(used) < MIN_ITEMS:
        result["note"] = f"Fleiss' kappa undefined: too few items with {m} ratings ({len(used)} < {MIN_ITEMS})"
        return result
    categories = sorted({x for values in used for x in values}, key=repr)
    table = np.array([[values.count(c) for c in categories] for values in used], dtype=float)  # (N, K)
    p_item = ((table ** 2).sum(axis=1) - m) / (m * (m - 1))  # agreement within each item
    p_cat = table.sum(axis=0) / (len(used) * m)  # share of each category
    chance = float((p_cat ** 2).sum())
    if chance >= 1.0 - 1e-12:
        result["note"] = "Fleiss' kappa undefined: every rating is in one class"
        return result
    result["kappa"] = (float(p_item.mean()) - chance) / (1.0 - chance)
    if result["left_out"]:
        result["note"] = f"Fleiss' kappa over {len(used)} chains with {m} ratings; {result['left_out']} left out"
    return result


def krippendorff_alpha(items: Ratings) -> dict:
    """Nominal Krippendorff's alpha, missing ratings allowed: 1 − D_o / D_e from the coincidence matrix.

    Each item u with m_u ≥ 2 ratings adds (number of ordered c–k pairs in u) / (m_u − 1) to o[c, k];
    n_c = Σ_k o[c, k], n = Σ n_c (the pairable values); alpha = 1 − (n − 1) Σ_{c≠k} o[c, k] /
    Σ_{c≠k} n_c n_k. Returns {"alpha", "n_items" (pairable items), "n_values", "note"}.
    """
    pairable = [list(v.values()) for v in items.values() if len(v) >= 2]
    result = {"alpha": None, "n_items": len(pairable), "n_values": sum(len(v) for v in pairable), "note": ""}
    if len(pairable) < MIN_ITEMS:
        result["note"] = (f"Krippendorff's alpha undefined: too few chains with two ratings "
                          f"({len(pairable)} < {MIN_ITEMS})")
        return result
    categories = sorted({x for values in pairable for x in values}, key=repr)
    index = {c: i for i, c in enumerate(categories)}
    o = np.zeros((len(categories), len(categories)))
    for values in pairable:
        counts = np.bincount([index[x] for x in values], minlength=len(categories)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(values) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    off = ~np.eye(len(categories), dtype=bool)
    expected = float((np.outer(n_c, n_c)[off]).sum())
    if expected == 0.0:
        result["note"] = "Krippendorff's alpha undefined: every rating is in one class"
        return result
    result["alpha"] = 1.0 - float(n - 1) * float(o[off].sum()) / expected
    return result


def majority(values: Iterable[Hashable]) -> Hashable | None:
    """The most common value, None on a tie (or no values)."""
    top = Counter(values).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def judge_agreement(items: Ratings, judge: Mapping[str, float | None]) -> dict:
    """The judge's verdicts (pass at ≥ 0.5) against the majority human verdict, pass the positive class.

    Returns {"kappa", "precision", "recall", "f1", "n", "ties", "unscored", "tp", "fp", "fn", "tn", "note"}.
    """
    pairs, ties, unscored = [], 0, 0
    for chain_id, ratings in items.items():
        if not ratings:
            continue
        human = majority(ratings.values())
        if human is None:
            ties += 1
            continue
        auto = judge.get(chain_id)
        if auto is None:
            unscored += 1
            continue
        pairs.append((1.0 if float(auto) >= 0.5 else 0.0, 1.0 if float(human) >= 0.5 else 0.0))
    tp = sum(a == 1.0 and h == 1.0 for a, h in pairs)
    fp = sum(a == 1.0 and h == 0.0 for a, h in pairs)
    fn = sum(a == 0.0 and h == 1.0 for a, h in pairs)
    tn = len(pairs) - tp - fp - fn
    notes = []
    kappa, kappa_note = cohen_kappa([a for a, _ in pairs], [h for _, h in pairs])
    if kappa is None:
        notes.append(f"judge kappa {kappa_note}")
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None
    if pairs and precision is None:
        notes.append("precision undefined: the judge passes no chain")
    if pairs and recall is None:
        notes.append("recall undefined: the reviewers pass no chain")
    if ties:
        notes.append(f"{ties} tied chain{'s' if ties != 1 else ''} left out")
    if unscored:
        notes.append(f"{unscored} chain{'s' if unscored != 1 else ''} without a judge score left out")
    return {"kappa": kappa, "precision": precision, "recall": recall, "f1": f1, "n": len(pairs), "ties": ties,
            "unscored": unscored, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "note": "; ".join(notes)}


def disagreeing_chains(items: Ratings, judge: Mapping[str, float | None] | None = None) -> list[dict]:
    """Chains where reviewers differ, or the judge differs from the majority: {chain_id, ratings, majority, judge}."""
    out = []
    for chain_id, ratings in items.items():
        human = majority(ratings.values())
        auto = None if judge is None else judge.get(chain_id)
        auto_pass = None if auto is None else (1.0 if float(auto) >= 0.5 else 0.0)
        split = len(set(ratings.values())) > 1
        judge_differs = auto_pass is not None and human is not None and auto_pass != float(human)
        if split or judge_differs:
            out.append({"chain_id": chain_id, "ratings": dict(ratings), "majority": human, "judge": auto,
                        "reviewers_split": split, "judge_differs": judge_differs})
    return out


def agreement_report(rows: Iterable[Mapping[str, Any]],
                     judge_scores: Mapping[str, Mapping[str, float | None]] | None = None) -> dict:
    """Per criterion: n_items, the figures, a note, pairwise Cohen and the disagreeing chains.

    `judge_scores` is {chain_id: {criterion: score}}; without it the judge figures are None
    with a note. The JSON of `rcsd agreement` is `to_json` of this.
    """
    criteria = {}
    for cid, items in latest_ratings(rows).items():
        fleiss = fleiss_kappa(items)
        alpha = krippendorff_alpha(items)
        notes = [fleiss["note"], alpha["note"]]
        if judge_scores is None:
            judge = {k: None for k in ("kappa", "precision", "recall", "f1")} | {"n": 0, "note": ""}
            notes.append("no judge scores given")
            per_chain = None
        else:
            per_chain = {chain_id: scores.get(cid) for chain_id, scores in judge_scores.items() if cid in scores}
            if per_chain:
                judge = judge_agreement(items, per_chain)
                notes.append(judge["note"])
            else:
                judge = {k: None for k in ("kappa", "precision", "recall", "f1")} | {"n": 0, "note": ""}
                notes.append("the scores have no such criterion")
        criteria[cid] = {
            "n_items": sum(1 for v in items.values() if v),
            "fleiss_kappa": fleiss["kappa"], "krippendorff_alpha": alpha["alpha"],
            "judge_kappa": judge["kappa"], "precision": judge["precision"], "recall": judge["recall"],
            "f1": judge["f1"], "note": "; ".join(n for n in notes if n),
            "fleiss": fleiss, "alpha": alpha, "judge": judge, "pairs": pairwise_cohen(items),
            "disagreements": disagreeing_chains(items, per_chain),
        }
    return {"criteria": criteria}


def to_json(report: Mapping[str, Any]) -> dict:
    """The `rcsd agreement` shape: {"criteria": {id: {n_items, fleiss_kappa, krippendorff_alpha,
    judge_kappa, precision, recall, f1, note}}}."""
    return {"criteria": {cid: {k: row[k] for k in JSON_KEYS} for cid, row in report["criteria"].items()}}


# ---------------------------------------------------------------------------- files


def review_rows_from_file(path: str | Path) -> list[dict]:
    """Review rows {chain_id, reviewer, criterion_scores} in file order; a bad line raises InputError."""
    rows = []
    for line, row in iter_jsonl(path):
        for field in ("chain_id", "reviewer"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise InputError(f"each line needs a non-empty string {field!r}", source=path, line=line, field=field)
        scores = row.get("criterion_scores")
        if not isinstance(scores, dict):
            raise InputError("each line needs a 'criterion_scores' object", source=path, line=line,
                             field="criterion_scores")
        for cid, v in scores.items():
            if v is not None and (isinstance(v, bool) or v not in (0, 1)):
                raise InputError(f"verdict of {cid!r} must be 1.0, 0.0 or null, got {v!r}", source=path, line=line,
                                 field=f"criterion_scores.{cid}")
        rows.append({"chain_id": row["chain_id"], "reviewer": row["reviewer"].strip(),
                     "criterion_scores": {c: None if v is None else float(v) for c, v in scores.items()}})
    return rows


def judge_scores_from_file(path: str | Path) -> dict[str, dict[str, float | None]]:
    """{chain id: {criterion: score}} from `rcsd score` / preview records; the last line of an id wins."""
    out: dict[str, dict[str, float | None]] = {}
    for line, row in iter_jsonl(path):
        if not isinstance(row.get("id"), str):
            raise InputError("each line needs a string 'id'", source=path, line=line, field="id")
        if not isinstance(row.get("scores"), dict):
            raise InputError("each line needs a 'scores' object", source=path, line=line, field="scores")
        for cid, v in row["scores"].items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise InputError(f"score of {cid!r} must be a number or null, got {v!r}", source=path, line=line,
                                 field=f"scores.{cid}")
        out[row["id"]] = {c: None if v is None else float(v) for c, v in row["scores"].items()}
    return out
