"""Rollouts: the student's own chains for a step or an evaluation, scored, with their teacher prompts.

    rollouts = Rollouts(model, tokenizer, rubric, config, teacher, interrupt=stop.interrupt_point)
    samples = rollouts.sample(tasks, n=4, seed=derive_seed(seed, step, rank))
    records = rollouts.score(tasks, samples, step=step, kind="train", prefix=f"{step}:")
    prompts = rollouts.teacher_prompts(tasks, samples)      # one per sample, in sample order

The student sees the task prompt alone and samples with the current adapter, in eval mode, through
the static-cache sampler or `generate` (config `sampler`; `auto` takes the sampler where the model
allows it). A stop request is answered between sampling batches (`interrupt`, see
distributed.StopRequest).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Callable

from rcsd_core.contracts.config import RoundConfig
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task
from rcsd_core.modeling.contexts import student_prompt_ids
from rcsd_core.modeling.generation import Sample, sample_chains
from rcsd_core.modeling.sampler import Sampler, static_sampling_supported
from rcsd_core.scoring.scores import score_samples

log = logging.getLogger("rcsd.train")


class Rollouts:
    """Sampling, scoring and teacher prompts of one round's chains."""

    def __init__(self, model, tokenizer, rubric: Rubric, config: RoundConfig, teacher, *,
                 interrupt: Callable[[], None] = lambda: None):
        self.model = model
        self.tokenizer = tokenizer
        self.rubric = rubric
        self.config = config
        self.teacher = teacher
        self.interrupt = interrupt
        self.sampler = self._sampler()

    def _sampler(self) -> Sampler | None:
        """None for `sample_chains` (generate), else one kept Sampler (its static cache and CUDA graphs are
        reused, its step compiled first with `sampler_compile`, written out with `sampler_step`); `auto`: the
        Sampler where the model allows it."""
        kind = self.config.sampler
        if kind == "generate" or (kind == "auto" and not static_sampling_supported(self.model)):
            return None
        fused = {"auto": None, "fused": True, "modules": False}[self.config.sampler_step]
        return Sampler(self.model, self.tokenizer, compile=self.config.sampler_compile, fused_step=fused)

    def sample(self, tasks: list[Task], *, n: int, seed: int, report: bool = False) -> list[Sample]:
        """n chains per task from the student; `report` logs each sampling batch's progress."""
        def progress(done: int, total: int) -> None:
            if report:
                log.info("sampled %d/%d chains", done, total)
            self.interrupt()

        config = self.config
        prompts = [student_prompt_ids(self.tokenizer, t) for t in tasks]
        self.model.eval()
        draw = self.sampler.sample if self.sampler is not None else partial(sample_chains, self.model, self.tokenizer)
        samples, _ = draw(prompts, n=n, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          top_p=config.top_p, seed=seed, batch_size=config.sampling_batch_size, progress=progress)
        if self.sampler is not None and config.sampler_release:
            self.sampler.release()                # the caches' memory goes to the teacher and student passes
        return samples

    def score(self, tasks: list[Task], samples: list[Sample], *, step: int, kind: str, prefix: str) -> list[dict]:
        """Chain records with scores; ids unique across the run: "<step>:" (train) or "eval<step>:"."""
        records = score_samples(self.rubric, tasks, samples, step=step, kind=kind)
        for r in records:
            r["id"] = f"{prefix}{r['id']}"
        return records

    def teacher_prompts(self, tasks: list[Task], samples: list[Sample]) -> list[list[int]]:
        """The teacher prompt ids of each sample, in sample order."""
        by_task = self.teacher.prompts(tasks)
        return [by_task[tasks[s.prompt_index].id] for s in samples]
