"""Preview: sample a model's own chains on a task set, in student and/or teacher context, scored.

    chains = preview_chains(rubric, tasks, model_name="smollm2-135m-instruct", samples=2, max_new_tokens=64,
                            context="both", seed=0)

Each chain is a record of the chains contract (DESIGN §2) with its scores attached:
`id`, `task_id`, `context`, `sample`, `text`, `reference`, `n_tokens`, `finished`, `model`,
`rubric`, `rubric_version`, `scores`, `total` (and `judge` verdicts when a judge was used).
A task with its own criteria is taught and scored with them (`contracts.tasks.rubric_for_task`);
`rubric_version` stays the shared rubric's.
The CLI (`rcsd preview`) and the studio's Preview page both call this.
"""

from __future__ import annotations

from typing import Callable, Literal

from rcsd_core.contracts.config import TeacherLayout
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task
from rcsd_core.modeling.contexts import prompt_ids
from rcsd_core.modeling.generation import SamplingStats, sample_chains
from rcsd_core.scoring.judges import Judge
from rcsd_core.scoring.scores import score_chain

Context = Literal["student", "teacher", "both"]


PROGRESS_EVERY = 8   # decode steps between progress reports inside a batch: how soon a cancel is seen


def contexts_for(context: Context) -> list[str]:
    if context not in ("student", "teacher", "both"):
        raise ValueError(f"context must be student, teacher or both, not {context!r}")
    return ["student", "teacher"] if context == "both" else [context]


def preview_chains(rubric: Rubric, tasks: list[Task], *, model=None, tokenizer=None,
                   model_name: str = "smollm2-135m-instruct",
                   samples: int = 2, max_new_tokens: int = 64, context: Context = "both", seed: int = 0,
                   temperature: float = 1.0, batch_size: int = 8, include_reference: bool = False,
                   layout: TeacherLayout | None = None, judge: Judge | None = None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], SamplingStats]:
    """Sample `samples` chains per task in each context and score them; returns (records, stats).

    Pass a loaded (model, tokenizer) to reuse one (`model_name` then only labels the records);
    otherwise `model_name` is loaded (default: the embedded SmolLM2-135M-Instruct). `layout` is
    the teacher's (a run's `config.teacher_layout()`); by default a new round's, with the
    reference shown when `include_reference`.
    """
    if model is None or tokenizer is None:
        from rcsd_core.modeling.models import load_model
        model, tokenizer = load_model(model_name)
    version = rubric.version
    records: list[dict] = []
    total = SamplingStats(tokens=0, seconds=0.0)
    kinds = contexts_for(context)
    prompts = [(kind, task) for kind in kinds for task in tasks]
    layout = layout or TeacherLayout(include_reference=include_reference)
    ids = [prompt_ids(tokenizer, task, rubric, kind, layout) for kind, task in prompts]

    def report(done: int, count: int) -> None:
        if progress:
            progress(done, count)

    drawn, total = sample_chains(model, tokenizer, ids, n=samples, max_new_tokens=max_new_tokens,
                                 temperature=temperature, seed=seed, batch_size=batch_size, progress=report,
                                 progress_every=PROGRESS_EVERY if progress else 0)
    by_id = {t.id: t for t in tasks}
    for s in drawn:
        kind, task = prompts[s.prompt_index]
        record = {"id": f"{task.id}:{kind}:{s.sample_index}", "task_id": task.id, "context": kind,
                  "sample": s.sample_index, "prompt": task.prompt, "text": s.text, "reference": task.reference,
                  "n_tokens": s.n_tokens, "finished": s.finished, "model": model_name,
                  "rubric": rubric.name, "rubric_version": version}
        scored = score_chain(rubric, record, tasks=by_id, judge=judge)  # on the task's own rubric
        record.update({k: v for k, v in scored.to_record().items() if k != "id"})
        records.append(record)
    return records, total
