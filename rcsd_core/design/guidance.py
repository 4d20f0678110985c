"""Guidance maps: where, token by token, the rubric-conditioned teacher disagrees with the student.

A round trains the student on its own chain towards the teacher's next-token distribution at
every completion position. This module computes exactly that per-position divergence for one
chain and draws it over the text as a heat highlight, with the teacher's preferred tokens at
each position, so a domain expert can see where the rubric pushes the model.

    gmap = guidance_map(model, tokenizer, rubric, task, chain_text, divergence="forward_kl")
    gmap.strongest(5)            # the five positions the teacher pulls hardest on
    html = gmap.to_html()        # self-contained; the studio embeds it with st.html

Student and teacher prompts come from `modeling.contexts.prompt_ids` under a `TeacherLayout`
(a run's own layout when given), the same builders the round and the preview use. The teacher is
the model as given (no adapter switching here: pass the base model for the paper's frozen
teacher).

Layout: pure numeric helpers (tensors in, tensors/lists out) first, testable on random logits;
model I/O (`completion_logits`, `pair_logits`) next; then the map and its HTML.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rcsd_core.contracts.config import TeacherLayout
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task
from rcsd_core.modeling.contexts import prompt_ids
from rcsd_core.modeling.divergence import chain_ids, completion_logits
from rcsd_core.modeling.losses import divergence_per_token

# ---------------------------------------------------------------------------- pure helpers


def token_divergences(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                      divergence: str = "forward_kl", tokens: torch.Tensor | None = None,
                      **params) -> torch.Tensor:
    """Per-position divergence of one chain: (T, V), (T, V) [, tokens (T,)] -> (T,) float32.

    Exactly `losses.divergence_per_token` on a batch of one, every position kept: the quantity
    whose mean over completion positions a round minimises.
    """
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"expected two (T, V) logits of one shape, got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    tok = None if tokens is None else tokens.reshape(1, -1)
    return divergence_per_token(divergence, student_logits.unsqueeze(0), teacher_logits.unsqueeze(0),
                                None, tok, **params)[0]


def token_probabilities(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Probability of each actual token under the logits: (T, V), (T,) -> (T,) float32."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return log_p.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1).exp()


def top_tokens(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely next tokens per position: (T, V) -> probabilities (T, k), ids (T, k)."""
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.topk(probs, min(k, probs.shape[-1]), dim=-1)


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded chain (prefix differences, so multi-byte characters
    split over tokens are not shown as replacement characters; their text lands on the last piece)."""
    texts, previous = [], ""
    for i in range(len(ids)):
        decoded = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        if decoded.startswith(previous) and not decoded.endswith("\ufffd"):
            texts.append(decoded[len(previous):])
            previous = decoded
        elif decoded.endswith("\ufffd"):
            texts.append("")  # an incomplete character; its bytes complete on a later token
        else:  # decoders that rewrite earlier text (rare): fall back to the token alone
            piece = tokenizer.decode([ids[i]], skip_special_tokens=False)
            texts.append(piece)
            previous = decoded
    return texts


def strongest_positions(values: list[float], n: int) -> list[int]:
    """Indices of the n largest values, largest first (ties keep text order)."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return order[: max(n, 0)]


def heat_colour(value: float, vmax: float) -> str:
    """A CSS background for a divergence: transparent at 0, saturated red at vmax."""
    alpha = 0.0 if vmax <= 0 else max(0.0, min(1.0, value / vmax))
    return f"rgba(220, 38, 38, {alpha * 0.85:.3f})"


# ---------------------------------------------------------------------------- model I/O


def pair_logits(model, tokenizer, rubric: Rubric, task: Task | dict, completion_ids: list[int], *,
                layout: TeacherLayout = TeacherLayout(), teacher_model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(student (T, V), teacher (T, V)) logits over one completion, each in its own context."""
    task = _as_task(task)
    pad = tokenizer.pad_token_id or 0
    student_prompt = prompt_ids(tokenizer, task, rubric, "student")
    teacher_prompt = prompt_ids(tokenizer, task, rubric, "teacher", layout)
    student = completion_logits(model, [student_prompt], [completion_ids], pad_id=pad)[0]
    teacher = completion_logits(teacher_model or model, [teacher_prompt], [completion_ids], pad_id=pad)[0]
    return student, teacher


def _as_task(task: Task | dict) -> Task:
    return task if isinstance(task, Task) else Task.model_validate(task)


# ---------------------------------------------------------------------------- the map


@dataclass
class GuidanceMap:
    """Per completion token: its text, the divergence there, P(token) for student and teacher, and
    each side's preferred next tokens. `tokens` rows are plain dicts, ready for JSON or a table."""
    tokens: list[dict[str, Any]]
    divergence: str = "forward_kl"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        values = [t["divergence"] for t in self.tokens]
        return sum(values) / len(values) if values else None

    def strongest(self, n: int = 5) -> list[dict[str, Any]]:
        """The n tokens with the largest divergence, largest first, each with its `position`."""
        picked = strongest_positions([t["divergence"] for t in self.tokens], n)
        return [{"position": i, **self.tokens[i]} for i in picked]

    def to_records(self) -> list[dict[str, Any]]:
        return [{"position": i, **t} for i, t in enumerate(self.tokens)]

    def to_html(self, *, strongest: int = 10) -> str:
        """Self-contained HTML: one highlighted <span> per token (title lists the teacher's
        preferred tokens), then a table of the strongest positions."""
        return render_html(self.tokens, divergence=self.divergence, strongest=strongest)


def render_html(tokens: list[dict[str, Any]], *, divergence: str = "forward_kl", strongest: int = 10) -> str:
    """The guidance map as HTML; all model text is escaped."""
    values = [t["divergence"] for t in tokens]
    vmax = max(values) if values else 0.0
    spans = []
    for i, t in enumerate(tokens):
        preferred = ", ".join(f"{_show(tok)} {p:.2f}" for tok, p in t["teacher_top"])
        title = (f"#{i} {divergence} {t['divergence']:.3f} | P_student {t['student_p']:.3f} "
                 f"P_teacher {t['teacher_p']:.3f} | teacher prefers: {preferred}")
        text = html.escape(t["text"]).replace("\n", "↵<br>")
        spans.append(f'<span class="rcsd-tok" data-pos="{i}" style="background:{heat_colour(t["divergence"], vmax)}" '
                     f'title="{html.escape(title, quote=True)}">{text}</span>')
    rows = []
    for i in strongest_positions(values, strongest):
        t = tokens[i]
        teacher = ", ".join(f"<code>{html.escape(_show(tok))}</code> {p:.2f}" for tok, p in t["teacher_top"])
        student = ", ".join(f"<code>{html.escape(_show(tok))}</code> {p:.2f}" for tok, p in t.get("student_top", []))
        rows.append(f"<tr><td>{i}</td><td><code>{html.escape(_show(t['text']))}</code></td>"
                    f"<td>{t['divergence']:.3f}</td><td>{t['student_p']:.3f}</td><td>{t['teacher_p']:.3f}</td>"
                    f"<td>{teacher}</td><td>{student}</td></tr>")
    mean = sum(values) / len(values) if values else 0.0
    return (
        "<div class=\"rcsd-guidance\" style=\"font-family:ui-monospace,monospace;font-size:13px\">"
        "<style>.rcsd-tok{border-radius:2px;white-space:pre-wrap}.rcsd-guidance table{border-collapse:collapse}"
        ".rcsd-guidance td,.rcsd-guidance th{border:1px solid #ddd;padding:2px 6px;text-align:left}</style>"
        f"<p>Per-token {html.escape(divergence)} between teacher (rubric in context) and student, "
        f"on {len(tokens)} tokens: mean {mean:.3f}, max {vmax:.3f}. Darker = the teacher pulls harder; "
        "hover a token for the teacher's preferred tokens.</p>"
        f"<div class=\"rcsd-text\" style=\"line-height:1.7\">{''.join(spans)}</div>"
        "<p><b>Strongest positions</b></p><table><tr><th>#</th><th>token</th><th>divergence</th>"
        "<th>P student</th><th>P teacher</th><th>teacher prefers</th><th>student prefers</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


def _show(token_text: str) -> str:
    """Whitespace made visible for token lists."""
    return token_text.replace("\n", "↵").replace(" ", "␣") or "∅"


def build_tokens(tokenizer, completion_ids: list[int], student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 *, divergence: str = "forward_kl", top_k: int = 5, **params) -> list[dict[str, Any]]:
    """The map's rows from aligned logits (T, V) over a completion of T tokens (pure given a tokenizer)."""
    ids = torch.tensor(completion_ids, dtype=torch.long)
    values = token_divergences(student_logits, teacher_logits, divergence=divergence, tokens=ids, **params)
    p_student = token_probabilities(student_logits, ids)
    p_teacher = token_probabilities(teacher_logits, ids)
    t_probs, t_ids = top_tokens(teacher_logits, top_k)
    s_probs, s_ids = top_tokens(student_logits, top_k)
    texts = token_texts(tokenizer, completion_ids)

    def named(probs_row, ids_row):
        return [(tokenizer.decode([int(i)], skip_special_tokens=False), float(p)) for p, i in zip(probs_row, ids_row)]

    return [{"token_id": int(completion_ids[j]), "text": texts[j], "divergence": float(values[j]),
             "student_p": float(p_student[j]), "teacher_p": float(p_teacher[j]),
             "teacher_top": named(t_probs[j], t_ids[j]), "student_top": named(s_probs[j], s_ids[j])}
            for j in range(len(completion_ids))]


def guidance_map(model, tokenizer, rubric: Rubric, task: Task | dict, chain_text: str, *,
                 divergence: str = "forward_kl", top_k: int = 5, include_reference: bool = False,
                 layout: TeacherLayout | None = None, finished: bool = False, teacher_model=None,
                 **params) -> GuidanceMap:
    """The guidance map of one chain of `task`: per-token teacher-vs-student divergence and preferences.

    `layout` is the teacher's context (a run's `config.teacher_layout()`); by default a new
    round's, with the reference shown when `include_reference`. `finished` appends end-of-turn
    as a sampled chain that ended has.
    `teacher_model` (default: `model`) lets a caller pass a frozen base for the teacher. `params`
    go to the divergence (e.g. temperature, k, beta).
    """
    task = _as_task(task)
    ids = chain_ids(tokenizer, chain_text, finished=finished)
    if not ids:
        return GuidanceMap(tokens=[], divergence=divergence, meta={"task_id": task.id})
    layout = layout or TeacherLayout(include_reference=include_reference)
    student, teacher = pair_logits(model, tokenizer, rubric, task, ids, layout=layout, teacher_model=teacher_model)
    rows = build_tokens(tokenizer, ids, student, teacher, divergence=divergence, top_k=top_k, **params)
    return GuidanceMap(tokens=rows, divergence=divergence,
                       meta={"task_id": task.id, "rubric": rubric.name, "rubric_version": rubric.version,
                             "layout": asdict(layout)})
