"""The held-out watch: is the round satisfying the rubric in a way it did not intend?

A criterion marked `held_out: true` is never shown to the teacher nor counted in the total, but
every in-round evaluation scores it. `held_out_metrics` turns one evaluation's scored chains into
its metrics (`eval/held_out/<id>` with a 95% bootstrap interval `/low`, `/high` and the count
`/n`); `watch_alert` reads the evaluations of a run so far and raises an alert when the trained
measure rose (the eval total, which leaves held-out criteria out) while a held-out measure fell
beyond its interval: the latest evaluation's interval lies wholly below the first evaluation's
mean. Pure functions over metric lines, so a scripted history tests them and the Train page can
re-read any run's metrics.jsonl.

    metrics.update(held_out_metrics(rubric, eval_records))
    alert = watch_alert(history_of_metric_lines, ["equations-true"])   # str or None
"""

from __future__ import annotations

from typing import Sequence

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.scoring.stats import bootstrap_mean_ci

PREFIX = "eval/held_out/"


def held_out_metrics(rubric: Rubric, records: Sequence[dict], *, seed: int = 0) -> dict:
    """`eval/held_out/<id>` (mean of scored chains), `/low`, `/high` (95% bootstrap), `/n` per held-out criterion."""
    out: dict = {}
    for c in rubric.held_out_criteria:
        values = [r["scores"].get(c.id) for r in records if r.get("scores", {}).get(c.id) is not None]
        mean, (low, high) = bootstrap_mean_ci(values, seed=seed)
        out.update({f"{PREFIX}{c.id}": mean, f"{PREFIX}{c.id}/low": low, f"{PREFIX}{c.id}/high": high,
                    f"{PREFIX}{c.id}/n": len(values)})
    return out


def held_out_ids(metrics: Sequence[dict]) -> list[str]:
    """The held-out criteria a run's metric lines carry."""
    ids: list[str] = []
    for m in metrics:
        for key in m:
            if key.startswith(PREFIX) and "/" not in key[len(PREFIX):] and key[len(PREFIX):] not in ids:
                ids.append(key[len(PREFIX):])
    return ids


def watch_alert(history: Sequence[dict], held_out: Sequence[str] | None = None) -> str | None:
    """An alert when the trained total rose from the first evaluation to the latest while a held-out
    measure fell beyond its interval; None otherwise (or with fewer than two evaluations)."""
    evals = [m for m in history if m.get("eval/total") is not None]
    if len(evals) < 2:
        return None
    first, last = evals[0], evals[-1]
    if not last["eval/total"] > first["eval/total"]:
        return None
    held = list(held_out) if held_out is not None else held_out_ids(evals)
    fell = []
    for cid in held:
        start, now, low, high = (first.get(f"{PREFIX}{cid}"), last.get(f"{PREFIX}{cid}"),
                                 last.get(f"{PREFIX}{cid}/low"), last.get(f"{PREFIX}{cid}/high"))
        if start is not None and high is not None and high < start:
            fell.append(f"held-out {cid} fell {start:.3f} → {now:.3f} (95% interval [{low:.3f}, {high:.3f}])")
    if not fell:
        return None
    rose = []
    for key, value in last.items():
        cid = key[len("eval/criterion/"):] if key.startswith("eval/criterion/") else None
        if cid is None or cid in held or value is None or first.get(key) is None:
            continue
        if value > first[key]:
            rose.append(f"{cid} {first[key]:.3f} → {value:.3f}")
    trained = f"trained criteria rose (eval total {first['eval/total']:.3f} → {last['eval/total']:.3f}" + (
        f"; {', '.join(rose)})" if rose else ")")
    return (f"step {last.get('step')}: {trained} while {'; '.join(fell)}: the rubric is being satisfied in a way "
            "it does not intend")
