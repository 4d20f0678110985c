"""Readiness: is this rubric worth a round on this model? A verdict from a signal report.

    verdict = readiness(signal_report)   # {"level": "go"|"weak"|"too_weak", "headline", "detail", "next": [...]}

- `go`: at least one criterion's teacher − student gap has a 95% interval that excludes zero in
  the direction its weight rewards: the teacher knows something the student does not, there.
- `too_weak`: the base model passes almost nothing (mean student pass rate over the positive
  criteria at most `FLOOR`) and the teacher is no better on any criterion. Self-distillation then
  has nothing right to copy and reinforces the model's own errors.
- `weak`: no criterion with signal, though the base passes some criteria.

Pure: it reads the report's numbers only (`design/signals.py` writes them; the Train page reads
the newest saved report of the chosen rubric version).
"""

from __future__ import annotations

FLOOR = 0.1  # mean student pass rate over positive criteria at or below which "the base passes almost nothing"


def _fmt_ci(row: dict) -> str:
    low, high = row.get("ci") or (None, None)
    return f"{row['gap']:+.2f} [{low:+.2f}, {high:+.2f}]" if low is not None else f"{row['gap']:+.2f}"


def readiness(report: dict, *, floor: float = FLOOR) -> dict:
    """The readiness verdict of a signal report: level, a headline, the evidence and what to try next."""
    criteria = report.get("criteria") or {}
    helping = {cid: c for cid, c in criteria.items() if c.get("signal") and c.get("helps") is True}
    wrong = [cid for cid, c in criteria.items() if c.get("signal") and c.get("helps") is False]
    positive = [c for c in criteria.values() if (c.get("weight") or 0) > 0 and c.get("student") is not None]
    base = sum(c["student"] for c in positive) / len(positive) if positive else None
    tail = f" It moves {', '.join(wrong)} the wrong way." if wrong else ""
    size = f"{report.get('tasks', '?')} tasks × {report.get('samples', '?')} samples, {report.get('model', '?')}"
    if helping:
        listed = "; ".join(f"{cid} {_fmt_ci(c)}" for cid, c in helping.items())
        return {"level": "go", "headline": f"Go: the teacher pulls {len(helping)} criterion(s) beyond the interval",
                "detail": f"Gap teacher − student (95% interval): {listed}.{tail} ({size})",
                "next": ["Launch a round; watch the eval total and any held-out criterion on this page.",
                         "Criteria without signal will not move through the teacher: check them with `rcsd ablate` "
                         "(where the pull comes from) before relying on them."]}
    if base is not None and base <= floor:
        return {"level": "too_weak",
                "headline": "Too weak: the base model passes almost nothing and the teacher is no better",
                "detail": (f"Mean student pass rate over the positive criteria {base:.2f}; no criterion's gap "
                           f"excludes zero.{tail} Self-distillation would reinforce the model's own errors. ({size})"),
                "next": ["Use a stronger model, or easier tasks the base can sometimes solve.",
                         "Show the teacher worked examples as turns (on the embedded model the pull came from "
                         "them, not from the criteria text).",
                         "Fine-tune on reference answers first (SFT), then distil with the rubric."]}
    return {"level": "weak", "headline": "Weak: no criterion with signal",
            "detail": (f"No criterion's teacher − student gap excludes zero"
                       + (f" (mean student pass rate {base:.2f})" if base is not None else "") + f".{tail} ({size})"),
            "next": ["Make the criteria concrete and checkable, and add worked examples shown as turns.",
                     "Run `rcsd ablate` to see whether the criteria text or the examples carry any pull.",
                     "Measure again with more tasks (intervals tighten with tasks, not samples per task)."]}
