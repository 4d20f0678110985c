"""Contexts: every prompt the models see is built here, and only here.

- Student: the task prompt alone, as a user message.
- Teacher: the same conversation with privileged context — the rendered rubric in a system
  message, optionally the reference answer (and, for `opsd`, the reference alone), and the
  rubric's worked examples as earlier user/assistant turns (few-shot) before the task. On
  SmolLM2-135M, 16 arithmetic train tasks x 4 samples x 64 tokens
  (`bench/teacher_context_variants.py`), the teacher wrote the rubric's "Answer: <n>" last line
  in 21/64 chains with two examples as turns, 3/64 with one, and 0/64 with one or two examples
  inside the system text (the student: 0/64). On that model the signal comes from the example
  turns: the student given the same two turns without the criteria wrote it in 20/64. The
  reference answer made the signal weaker (DESIGN §4), so including it is the caller's choice.
- Analysis: the optional short note the teacher writes on what the rubric asks of a prompt.

    messages = teacher_messages(task.prompt, rubric, reference=task.reference)
    ids = teacher_prompt_ids(tokenizer, task, rubric, run_config.teacher_layout())   # a run's teacher
    ids = prompt_ids(tokenizer, task, rubric, "student")                           # or "teacher"

Token ids come only from `student_prompt_ids` / `teacher_prompt_ids` / `prompt_ids`, so a round,
its evaluation, the preview, the signal report and the guidance map show the teacher one layout
(`contracts.config.TeacherLayout`) — the run's own when they are given it.
"""

from __future__ import annotations

from typing import Literal

from rcsd_core.contracts.config import DEFAULT_EXAMPLES, TeacherLayout
from rcsd_core.contracts.messages import Messages, encode_messages
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.rubric_text import render_rubric  # noqa: F401  (moved there; imported from here too)
from rcsd_core.contracts.tasks import Task, rubric_for_task

TeacherMethod = Literal["rcsd", "opsd"]
Context = Literal["student", "teacher"]

NO_MENTION = ("Answer the user's question directly. Do not mention the rubric, the criteria or these "
              "instructions in your answer.")


def student_messages(prompt: str) -> Messages:
    return [{"role": "user", "content": prompt}]


def teacher_messages(prompt: str, rubric: Rubric | None, *, reference: str | None = None,
                     method: TeacherMethod = "rcsd", examples: int = DEFAULT_EXAMPLES, example_turns: bool = True,
                     include_reference: bool = True, analysis: str | None = None,
                     criteria: bool = True) -> Messages:
    """The teacher's conversation: privileged context as a system message, then the task prompt.

    `rcsd` puts the rubric (and the reference when given and `include_reference`); `opsd` puts
    the reference answer only, as On-Policy Self-Distillation does. The first `examples` worked
    examples of the rubric come as earlier user/assistant turns (`example_turns`, the default) or
    inside the system text after the criteria. `criteria=False` leaves the rendered rubric out and
    keeps only its example turns (the ablation report's `examples_only` teacher).
    """
    parts: list[str] = []
    shown = []
    if method == "rcsd":
        if rubric is None:
            raise ValueError("the rcsd teacher needs a rubric")
        if criteria:
            parts.append(render_rubric(rubric, examples=0 if example_turns else examples))
        shown = rubric.examples[:examples] if example_turns or not criteria else []
    if reference is not None and (include_reference or method == "opsd"):
        parts.append(f"A correct final answer to this task is: {reference.strip()}")
    if analysis:
        parts.append(f"Notes on what this task requires:\n{analysis.strip()}")
    parts.append(NO_MENTION)
    turns: Messages = []
    for example in shown:
        turns += [{"role": "user", "content": example.prompt.strip()},
                  {"role": "assistant", "content": example.answer.strip()}]
    return [{"role": "system", "content": "\n\n".join(parts)}, *turns, {"role": "user", "content": prompt}]


def student_prompt_ids(tokenizer, task: Task) -> list[int]:
    """The student's prompt: the task alone."""
    return encode_messages(tokenizer, student_messages(task.prompt))


def teacher_prompt_ids(tokenizer, task: Task, rubric: Rubric | None, layout: TeacherLayout = TeacherLayout(), *,
                       analysis: str | None = None) -> list[int]:
    """The teacher's prompt for a task under a layout (a round's `config.teacher_layout()`); a task
    with its own criteria or examples is taught with them (`contracts.tasks.rubric_for_task`)."""
    if rubric is not None:
        rubric = rubric_for_task(rubric, task)
    messages = teacher_messages(task.prompt, rubric, reference=task.reference, method=layout.method,
                                examples=layout.examples, example_turns=layout.example_turns,
                                include_reference=layout.include_reference, analysis=analysis)
    return encode_messages(tokenizer, messages)


def prompt_ids(tokenizer, task: Task, rubric: Rubric, context: Context,
               layout: TeacherLayout = TeacherLayout()) -> list[int]:
    """Prompt token ids of a task in student or teacher context."""
    if context == "student":
        return student_prompt_ids(tokenizer, task)
    return teacher_prompt_ids(tokenizer, task, rubric, layout)


def analysis_messages(prompt: str, rubric: Rubric) -> Messages:
    """Ask the teacher for a short analysis of what the rubric requires for this prompt."""
    return [{"role": "system", "content": render_rubric(rubric, examples=0)},
            {"role": "user", "content": "In at most three short sentences, say what a strong answer to the "
                                        f"following task must do to meet the criteria. Do not answer it.\n\n{prompt}"}]


def draft_messages(description: str, prompts: list[str], references: list[str | None]) -> Messages:
    """Ask a model to draft rubric criteria (the paper's stage 1) as a YAML list, from a task
    description and a few example prompts with their reference answers."""
    examples = []
    for i, (prompt, reference) in enumerate(zip(prompts, references), start=1):
        examples.append(f"Example {i}.\nQuestion: {prompt.strip()}"
                        + (f"\nReference answer: {reference.strip()}" if reference else ""))
    shown = "\n\n".join(examples) if examples else "(no examples given)"
    return [
        {"role": "system", "content": "You write grading rubrics for answers to tasks. Reply with YAML only."},
        {"role": "user", "content": (
            f"Task type: {description.strip()}\n\n{shown}\n\n"
            "Write 4 to 8 criteria that a strong answer to tasks of this type must meet, and 1 or 2 pitfalls "
            "(flaws a weak answer shows). Each criterion must be checkable on one answer and must not repeat "
            "another. Reply with a YAML list only, in this form:\n"
            "- title: Final answer line\n"
            "  description: The answer ends with a line \"Answer: <result>\".\n"
            "  weight: 3\n"
            "- title: Rambling\n"
            "  description: The answer repeats itself or adds text unrelated to the task.\n"
            "  weight: -1\n"
            "Use weights from 1 (minor) to 5 (essential); give pitfalls a negative weight.")},
    ]


def task_draft_messages(prompt: str, reference: str | None, *, description: str = "",
                        shared: Rubric | None = None) -> Messages:
    """Ask a model to draft criteria for ONE task (the paper's per-question rubrics), as a YAML list;
    the shared rubric's criteria, when given, are listed so the draft adds what they miss."""
    context = f"Task type: {description.strip()}\n\n" if description.strip() else ""
    if shared is not None and shared.criteria:
        listed = "\n".join(f"- {c.label}: {c.description.strip()}" for c in shared.criteria)
        context += f"Every answer is already graded on these general criteria:\n{listed}\n\n"
    return [
        {"role": "system", "content": "You write grading rubrics for answers to tasks. Reply with YAML only."},
        {"role": "user", "content": (
            f"{context}Question: {prompt.strip()}"
            + (f"\nReference answer: {reference.strip()}" if reference else "")
            + "\n\nWrite 2 to 6 criteria specific to this question that a strong answer must meet, and at most "
            "2 pitfalls (flaws a weak answer to it shows). Each must be checkable on one answer and must not "
            "repeat another or a general criterion. Reply with a YAML list only, in this form:\n"
            "- title: Names the dose\n"
            "  description: The answer gives the adult dose in mg.\n"
            "  weight: 5\n"
            "- title: Invents a source\n"
            "  description: The answer cites a study that does not exist.\n"
            "  weight: -2\n"
            "Use weights from 1 (minor) to 5 (essential); give pitfalls a negative weight.")},
    ]


def contrastive_messages(description: str, accepted: list[tuple[str, str]], rejected: list[tuple[str, str]],
                         existing: list[str]) -> Messages:
    """Ask a model for criteria that separate the answers reviewers accepted from those they rejected
    ((prompt, answer) pairs), other than the rubric's `existing` criterion titles; a YAML list."""
    def block(label: str, pairs: list[tuple[str, str]]) -> str:
        return "\n\n".join(f"{label} {i}.\nQuestion: {p.strip()}\nAnswer: {a.strip()}"
                            for i, (p, a) in enumerate(pairs, start=1)) or f"(no {label.lower()} answers)"
    have = "\n".join(f"- {t}" for t in existing) or "(none)"
    return [
        {"role": "system", "content": "You write grading rubrics for answers to tasks. Reply with YAML only."},
        {"role": "user", "content": (
            f"Task type: {description.strip()}\n\nReviewers accepted these answers:\n\n"
            f"{block('Accepted', accepted)}\n\nReviewers rejected these answers:\n\n{block('Rejected', rejected)}\n\n"
            f"The rubric already has these criteria:\n{have}\n\n"
            "Write 1 to 4 new criteria, each checkable on one answer, that the accepted answers meet and the "
            "rejected ones do not (or pitfalls the rejected ones show, with a negative weight). Do not repeat the "
            "existing criteria. Reply with a YAML list only, in this form:\n"
            "- title: Final answer line\n"
            "  description: The answer ends with a line \"Answer: <result>\".\n"
            "  weight: 3")},
    ]

