"""The teacher of a round: the same model, given the rubric (rcsd) or the reference (opsd), with
the weights of its kind (DESIGN §1):

    frozen  the adapter disabled: the initial policy (the paper's setting)
    live    the current weights as they are, without grad
    ema     an exponential moving average of the adapter, updated after every optimizer step

`Teacher` owns the EMA copy and the teacher-analysis notes (the frozen teacher's short note on
what the rubric asks of each prompt, cached per task), both saved in the round's checkpoint.

    teacher = Teacher(model, tokenizer, rubric, config)
    with teacher.weights():                     # the teacher's weights in place, under no_grad
        ht = teacher_hidden(model, [teacher.prompt(t) for t in tasks], completions, pad_id,
                            prefixes=teacher.prefixes)   # frozen: the rubric prefix's cache, kept
    optimizer.step(); teacher.update()          # ema: fold the new weights into the average
"""

from __future__ import annotations

import contextlib

import torch

from rcsd_core.contracts.config import RoundConfig
from rcsd_core.contracts.messages import encode_messages
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, rubric_for_task
from rcsd_core.modeling.contexts import analysis_messages, teacher_prompt_ids
from rcsd_core.modeling.generation import PrefixCache, sample_chains

KINDS = ("frozen", "live", "ema")
ANALYSIS_TOKENS = 96  # a teacher-analysis note: a few requirements, short enough to keep the teacher prompt small


class Teacher:
    """The teacher's weights (by kind) and its prompts, for one LoRA model (a peft model)."""

    def __init__(self, model, tokenizer, rubric: Rubric, config: RoundConfig):
        if config.teacher not in KINDS:
            raise ValueError(f"unknown teacher kind {config.teacher!r}; expected one of {KINDS}")
        self.kind = config.teacher
        self.model = model
        self.tokenizer = tokenizer
        self.rubric = rubric
        self.config = config
        # the trainable (LoRA) parameters by name: what `live` uses and `ema` averages
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.ema = {n: p.detach().clone() for n, p in self.named_params} if self.kind == "ema" else None
        self.analysis: dict[str, str] = {}  # task id -> note (teacher_analysis only)
        # frozen: the weights never change, so the rubric prefix's keys and values are kept for the round
        self.prefixes = PrefixCache(model) if self.kind == "frozen" else None

    # ------------------------------------------------------------------ weights

    @contextlib.contextmanager
    def weights(self):
        """The teacher's weights for the duration of the block (always under no_grad)."""
        with torch.no_grad():
            if self.kind == "frozen":
                with self.model.disable_adapter():
                    yield
            elif self.kind == "live":
                yield
            else:  # ema: swap the average in, and the current weights back afterwards
                current = [p.detach().clone() for _, p in self.named_params]
                for n, p in self.named_params:
                    p.copy_(self.ema[n])
                try:
                    yield
                finally:
                    for (_, p), saved in zip(self.named_params, current):
                        p.copy_(saved)

    def update(self) -> None:
        """After an optimizer step: ema ← decay·ema + (1 − decay)·weights (nothing for frozen / live)."""
        if self.ema is None:
            return
        decay = self.config.ema_decay
        with torch.no_grad():
            for n, p in self.named_params:
                self.ema[n].mul_(decay).add_(p.detach(), alpha=1 - decay)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the EMA tensors (None unless ema) and the analysis notes."""
        return {"ema": self.ema, "analysis": self.analysis}

    def load_state_dict(self, state: dict, device) -> None:
        if self.ema is not None and state.get("ema"):
            self.ema = {n: t.to(device) for n, t in state["ema"].items()}
        self.analysis = state.get("analysis") or {}

    # ------------------------------------------------------------------ prompts

    def prompt(self, task: Task) -> list[int]:
        """The teacher's prompt ids for a task: its layout from the config, the analysis note if any."""
        analysis = self.analysis.get(task.id) if self.config.teacher_analysis else None
        return teacher_prompt_ids(self.tokenizer, task, self.rubric, self.config.teacher_layout(), analysis=analysis)

    def prompts(self, tasks: list[Task]) -> dict[str, list[int]]:
        """Teacher prompt ids by task id (the analysis notes must be there first: ensure_analysis)."""
        return {t.id: self.prompt(t) for t in tasks}

    def ensure_analysis(self, tasks: list[Task]) -> None:
        """teacher_analysis: the frozen teacher's short note on what the rubric asks of each prompt (cached).

        Greedy, with the adapter disabled, so a note depends on the task alone and is written once.
        """
        if not self.config.teacher_analysis:
            return
        todo = list({t.id: t for t in tasks if t.id not in self.analysis}.values())
        if not todo:
            return
        prompts = [encode_messages(self.tokenizer, analysis_messages(t.prompt, rubric_for_task(self.rubric, t))) for t in todo]
        self.model.eval()
        with self.model.disable_adapter():
            notes, _ = sample_chains(self.model, self.tokenizer, prompts, n=1, max_new_tokens=ANALYSIS_TOKENS,
                                     temperature=0, batch_size=self.config.sampling_batch_size)
        for s in notes:
            self.analysis[todo[s.prompt_index].id] = s.text.strip()
