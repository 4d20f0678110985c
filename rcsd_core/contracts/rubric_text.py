"""The rubric as text: what a teacher (or a trainer's privileged context) reads.

Pure text, no tokenizer and no torch, so the teacher's contexts (`modeling.contexts`) and the
dataset exporters (`formats`, e.g. SDFT's `privileged_context` column) render one rubric the
same way.

    text = render_rubric(rubric_for_task(rubric, task), examples=1)
"""

from __future__ import annotations

from rcsd_core.contracts.rubric import Rubric


def render_rubric(rubric: Rubric, *, examples: int = 1) -> str:
    """The rubric as the teacher reads it: criteria first, then pitfalls, then worked examples."""
    lines = [f"Task type: {rubric.description.strip()}", ""] if rubric.description.strip() else []
    lines.append("A strong answer meets these criteria:")
    positive = [c for c in rubric.trained if not c.is_pitfall]  # held-out criteria are never shown
    pitfalls = [c for c in rubric.trained if c.is_pitfall]
    for i, c in enumerate(positive, start=1):
        lines.append(f"{i}. {c.label} (weight {format_weight(c.weight)}): {c.description.strip()}")
    if pitfalls:
        lines.append("It avoids these pitfalls:")
        for c in pitfalls:
            lines.append(f"- {c.label}: {c.description.strip()}")
    for example in rubric.examples[:examples]:
        lines += ["", "Worked example.", f"Question: {example.prompt.strip()}", "Strong answer:",
                  example.answer.strip()]
    return "\n".join(lines)


def format_weight(w: float) -> str:
    """A weight as people write it: 5, not 5.0; 0.5 stays 0.5."""
    return str(int(w)) if float(w).is_integer() else f"{w:g}"
