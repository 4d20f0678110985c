"""Calibration: how far to trust the automatic verdicts, criterion by criterion.

Agreement between automatic scores (checks or a judge) and human review decisions on the same
chains: raw accuracy and Cohen's kappa (agreement beyond what the two raters' pass rates give
by chance), with the 2×2 counts so a reader can see *how* they disagree.

    table = calibrate([("final-answer-line", 1.0, 1.0), ("final-answer-line", 0.0, 1.0), ...])

Scores are binarised at 0.5 (pass = 1.0). Pairs where either side is None (or NaN) are counted as
`skipped`, not as disagreement. Kappa is undefined when both raters put every chain in the same
class (chance agreement is 1): it is None then, with a note, never a made-up 0 or 1.

CLI: `rcsd calibrate --scores S.jsonl --reviews R.jsonl` where scores are the `rcsd score` /
preview records ({"id", "scores": {...}}) and reviews are JSONL rows
{"chain_id", "criterion_scores": {<id>: 1.0 | 0.0 | null}, ...} (the studio's review store
exports this shape). Reviews are appended, never overwritten, so the last row for a chain wins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from rcsd_core.errors import InputError
from rcsd_core.files import iter_jsonl

COLUMNS = ["criterion", "n", "agree", "accuracy", "kappa", "note", "auto_pass", "human_pass",
           "both_pass", "auto_only", "human_only", "both_fail", "skipped"]


# ---------------------------------------------------------------------------- pure


def cohen_kappa(both_pass: int, auto_only: int, human_only: int, both_fail: int) -> tuple[float | None, str]:
    """Cohen's kappa from a 2×2 table, and a note; None when undefined (no pairs, or chance = 1)."""
    n = both_pass + auto_only + human_only + both_fail
    if n == 0:
        return None, "no pairs"
    observed = (both_pass + both_fail) / n
    auto_p = (both_pass + auto_only) / n
    human_p = (both_pass + human_only) / n
    chance = auto_p * human_p + (1 - auto_p) * (1 - human_p)
    if chance >= 1.0 - 1e-12:
        return None, "kappa undefined: both raters put every chain in one class"
    kappa = (observed - chance) / (1 - chance)
    if auto_p in (0.0, 1.0):
        return kappa, "automatic verdicts are all " + ("pass" if auto_p == 1.0 else "fail")
    if human_p in (0.0, 1.0):
        return kappa, "human decisions are all " + ("pass" if human_p == 1.0 else "fail")
    return kappa, ""


def calibrate(pairs: Iterable[Any]) -> pd.DataFrame:
    """Per criterion: n, agree, accuracy, kappa (+ note), pass counts and the 2×2 table.

    `pairs` rows are (criterion_id, auto_score, human_score) tuples or dicts with those keys.
    Criteria appear in first-seen order.
    """
    cells: dict[str, dict[str, int]] = {}
    for row in pairs:
        if isinstance(row, dict):
            cid, auto, human = row["criterion_id"], row["auto_score"], row["human_score"]
        else:
            cid, auto, human = row
        c = cells.setdefault(cid, {"both_pass": 0, "auto_only": 0, "human_only": 0, "both_fail": 0, "skipped": 0})
        if _missing(auto) or _missing(human):
            c["skipped"] += 1
            continue
        a, h = float(auto) >= 0.5, float(human) >= 0.5
        key = "both_pass" if a and h else "auto_only" if a else "human_only" if h else "both_fail"
        c[key] += 1
    rows = []
    for cid, c in cells.items():
        n = c["both_pass"] + c["auto_only"] + c["human_only"] + c["both_fail"]
        agree = c["both_pass"] + c["both_fail"]
        kappa, note = cohen_kappa(c["both_pass"], c["auto_only"], c["human_only"], c["both_fail"])
        rows.append({"criterion": cid, "n": n, "agree": agree, "accuracy": agree / n if n else None,
                     "kappa": kappa, "note": note, "auto_pass": c["both_pass"] + c["auto_only"],
                     "human_pass": c["both_pass"] + c["human_only"], **c})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    # keep None (not NaN) for undefined values, so JSON and the page show "undefined", not nan
    return frame.astype({"accuracy": object, "kappa": object}).where(frame.notna(), None)


def _missing(value: Any) -> bool:
    """An unscored verdict: None, or the NaN pandas puts in its place in a table of scores."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def review_pairs(scores: dict[str, dict[str, float | None]],
                 reviews: dict[str, dict[str, float | None]]) -> tuple[list[tuple], int]:
    """(criterion, auto, human) rows for every reviewed criterion of every scored chain, and the
    number of reviewed chains without scores. Criteria the reviewer left out are not pairs."""
    pairs, unmatched = [], 0
    for chain_id, human in reviews.items():
        auto = scores.get(chain_id)
        if auto is None:
            unmatched += 1
            continue
        for cid, h in human.items():
            if cid in auto:
                pairs.append((cid, auto[cid], h))
    return pairs, unmatched


# ---------------------------------------------------------------------------- files


def pairs_from_files(scores_path: str | Path, reviews_path: str | Path) -> tuple[list[tuple], int]:
    """Read scores and reviews JSONL and pair them (see review_pairs); bad lines raise InputError."""
    scores: dict[str, dict] = {}
    for line, row in iter_jsonl(scores_path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("scores"), dict):
            raise InputError("each line needs a string 'id' and a 'scores' object", source=scores_path, line=line,
                             field="scores" if isinstance(row.get("id"), str) else "id")
        scores[row["id"]] = _checked_scores(row["scores"], scores_path, line, "scores")
    reviews: dict[str, dict] = {}
    for line, row in iter_jsonl(reviews_path):
        if not isinstance(row.get("chain_id"), str) or not isinstance(row.get("criterion_scores"), dict):
            raise InputError("each line needs a string 'chain_id' and a 'criterion_scores' object",
                             source=reviews_path, line=line,
                             field="criterion_scores" if isinstance(row.get("chain_id"), str) else "chain_id")
        reviews[row["chain_id"]] = _checked_scores(row["criterion_scores"], reviews_path, line, "criterion_scores")
    return review_pairs(scores, reviews)


def _checked_scores(values: dict, source, line: int, field: str) -> dict[str, float | None]:
    for cid, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InputError(f"score of {cid!r} must be a number or null, got {v!r}", source=source, line=line,
                             field=f"{field}.{cid}")
    return {cid: None if v is None else float(v) for cid, v in values.items()}
