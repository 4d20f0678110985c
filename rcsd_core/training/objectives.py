"""The two objectives of a round's step, over micro-batches of chains: distillation (rcsd, opsd)
and rejection-SFT. Pure of file I/O: models, chains and the config in, gradients accumulated on
the LoRA parameters and a stats dict out. The caller zeroes gradients before and steps after.

    models = StepModels.of(model, train_model, pad_id, device, sync)
    stats = distill_step(models, teacher, teacher_prompts, samples, config)
    stats = rejection_sft_step(models, samples, records, config)
    # stats: loss_sum, div_sum (sums over completion tokens), tokens, teacher_s, student_s

Each micro-batch's loss is a per-token mean scaled by its share of the rank's tokens, so the
accumulated gradient is that of the per-token mean over all the rank's chains; DDP then averages
the ranks' gradients on the last micro-batch's backward (`sync`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Container, ContextManager, Sequence

import torch
import torch.nn.functional as F

from rcsd_core.contracts.config import RoundConfig
from rcsd_core.modeling.batching import pack_chains
from rcsd_core.modeling.compiled import CompiledLayers
from rcsd_core.modeling.divergence import completion_hidden, teacher_hidden
from rcsd_core.modeling.generation import Sample
from rcsd_core.modeling.losses import lm_head_chunked_divergence
from rcsd_core.modeling.models import compute_precision, lean_training


@dataclass
class StepModels:
    """The model a step trains, as the objectives see it.

    `model` is the peft model (teacher forwards, train/eval mode, the lm_head weight); `train_model`
    is what the student's forward and backward go through (DDP-wrapped across ranks, else `model`);
    `sync(last)` is the context of a micro-batch's backward (all-reduce only when `last`);
    `precision()` the context of every forward (the backward runs outside it);
    `student()` the context of the student's forward and backward: the lean LoRA forward
    (`models.lean_training`) and, asked for, the compiled decoder layers (`modeling.compiled`).
    """

    model: torch.nn.Module
    train_model: torch.nn.Module
    pad_id: int
    device: torch.device
    sync: Callable[[bool], ContextManager]
    precision: Callable[[], ContextManager] = contextlib.nullcontext
    student: Callable[[], ContextManager] = contextlib.nullcontext

    @classmethod
    def of(cls, model, train_model, pad_id: int, device, sync, *, compile_layers: bool = False) -> "StepModels":
        """The step's models with forwards in `models.compute_precision` (bf16 adapter products on a bf16 model),
        the student's passes in `models.lean_training` and, with `compile_layers`, through
        `compiled.CompiledLayers`."""
        compiled = CompiledLayers(model).active if compile_layers else contextlib.nullcontext

        @contextlib.contextmanager
        def student():
            with lean_training(model), compiled():
                yield
        return cls(model, train_model, pad_id, device, sync, precision=partial(compute_precision, model),
                   student=student)

    @property
    def lm_head(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight  # (V, H)


def settled(device: torch.device) -> float:
    """time.perf_counter() once the device has run what was queued: CUDA runs kernels after the call
    that launched them returns, so without the wait one phase's GPU time would be counted in the next."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def micro_batches(n: int, size: int) -> list[tuple[slice, bool]]:
    """(slice, is_last) for consecutive parts of at most `size` of n items."""
    return [(slice(start, start + size), start + size >= n) for start in range(0, n, size)]


# ---------------------------------------------------------------------------- distillation


def distill_step(models: StepModels, teacher, teacher_prompts: Sequence[list[int]], samples: Sequence[Sample],
                 config: RoundConfig, *, between: Callable[[], None] | None = None,
                 phase: Callable[[str], ContextManager] = lambda name: contextlib.nullcontext()) -> dict:
    """Teacher and student forwards on the chains, divergence backward; returns this rank's stats.

    `teacher` has `weights()` (a context manager: the teacher's weights under no_grad) and
    `prefixes` (its kept prefix caches, or None);
    `teacher_prompts[i]` is the teacher prompt ids of samples[i]. `between()` runs before each
    micro-batch (a stop request may end the step there, before any weight has changed).
    `phase(name)` is entered around each micro-batch's "teacher" and "student" part (the round's
    `metrics.PhasePeaks` measures their memory there).
    """
    n_tokens = sum(s.n_tokens for s in samples)
    params = config.divergence_params()
    loss_sum = div_sum = t_teacher = t_student = 0.0
    models.model.train()
    for piece, last in micro_batches(len(samples), config.micro_batch_size):
        if between:
            between()
        part = samples[piece]
        completions = [s.completion_ids for s in part]
        t0 = time.perf_counter()
        with phase("teacher"), teacher.weights(), models.precision():  # (B, C, H); the rubric prefix runs once
            ht = teacher_hidden(models.model, list(teacher_prompts[piece]), completions, models.pad_id,
                                prefixes=teacher.prefixes)
        t1 = settled(models.device)
        with phase("student"):
            batch = pack_chains([s.prompt_ids for s in part], completions, models.pad_id).to(models.device)
            part_tokens = sum(len(c) for c in completions)       # batch.mask.sum(), counted without a device sync
            with models.student(), models.sync(last):
                with models.precision():
                    hs = completion_hidden(models.train_model, batch)  # (B, C, H), grad to the LoRA weights
                    loss = lm_head_chunked_divergence(config.divergence, hs, ht, models.lm_head, batch.mask,
                                                      config.chunk_size, tokens=batch.tokens, **params)
                (loss * (part_tokens / n_tokens)).backward()
            loss_sum += float(loss.detach()) * part_tokens
            div_sum += _logged_divergence(loss, hs, ht, batch, models, config) * part_tokens
        t_teacher += t1 - t0
        t_student += time.perf_counter() - t1
    return {"loss_sum": loss_sum, "div_sum": div_sum, "tokens": n_tokens,
            "teacher_s": t_teacher, "student_s": t_student}


def _logged_divergence(loss: torch.Tensor, hs: torch.Tensor, ht: torch.Tensor, batch, models: StepModels,
                       config: RoundConfig) -> float:
    """The per-token divergence logged as train/divergence: the loss itself, except for sampled_token,
    whose loss is a policy-gradient surrogate: there the reverse KL of the same positions."""
    if config.divergence != "sampled_token":
        return float(loss.detach())
    with torch.no_grad():
        return float(lm_head_chunked_divergence("reverse_kl", hs.detach(), ht, models.lm_head, batch.mask,
                                                config.chunk_size))


# ---------------------------------------------------------------------------- rejection-SFT


def best_chains(samples: Sequence[Sample], records: Sequence[dict],
                rejected: Container[tuple[str, str]] = ()) -> list[int]:
    """Indices of the best-scoring chain of each prompt, in sample order (ties: the first sampled;
    an unscored total counts as −inf). A chain a human rejected — (task id, stripped text) in
    `rejected` — is never chosen; a prompt whose chains were all rejected has none."""
    def total(i: int) -> float:
        return records[i]["total"] if records[i]["total"] is not None else -math.inf

    best: dict[int, int] = {}
    for i, s in enumerate(samples):
        if rejected and (records[i].get("task_id"), s.text.strip()) in rejected:
            records[i]["human_rejected"] = True
            continue
        j = best.get(s.prompt_index)
        if j is None or total(i) > total(j):
            best[s.prompt_index] = i
    return sorted(best.values())


def rejection_sft_step(models: StepModels, samples: Sequence[Sample], records: list[dict],
                       config: RoundConfig, *, between: Callable[[], None] | None = None,
                       rejected: Container[tuple[str, str]] = (), extra: Sequence[Sample] = ()) -> dict:
    """Cross-entropy on the best-scoring chain of each prompt; marks those records `chosen`.

    Chains humans rejected (`rejected`, see best_chains) are never targets; `extra` (accepted
    reviewed chains, training.reviewed) are further targets. `targets` in the stats: the
    (prompt_index, text) of every chain trained on.
    """
    picked = best_chains(samples, records, rejected)
    for i in picked:
        records[i]["chosen"] = True
    chosen = [samples[i] for i in picked] + list(extra)
    n_tokens = sum(s.n_tokens for s in chosen)
    loss_sum = 0.0
    t0 = time.perf_counter()
    models.model.train()
    for piece, last in micro_batches(len(chosen), config.micro_batch_size):
        if between:
            between()
        part = chosen[piece]
        batch = pack_chains([s.prompt_ids for s in part], [s.completion_ids for s in part],
                            models.pad_id).to(models.device)
        with models.student(), models.sync(last):
            with models.precision():
                hidden = completion_hidden(models.train_model, batch)  # (B, C, H)
                part_sum = _chunked_cross_entropy(hidden, batch, models.lm_head, config.chunk_size)
            (part_sum / n_tokens).backward()
        loss_sum += float(part_sum.detach())
    return {"loss_sum": loss_sum, "div_sum": None, "tokens": n_tokens, "teacher_s": 0.0,
            "student_s": time.perf_counter() - t0, "targets": [(s.prompt_index, s.text) for s in chosen]}


def _chunked_cross_entropy(hidden: torch.Tensor, batch, lm_head: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Summed cross-entropy of the completion tokens, from (B, C, H) hidden states, (chunk, V) logits at a time."""
    rows = batch.mask.reshape(-1).nonzero().squeeze(-1)
    h = hidden.reshape(-1, hidden.shape[-1])[rows]  # (N, H): completion positions only
    targets = batch.tokens.reshape(-1)[rows]  # (N,)
    total = h.new_zeros((), dtype=torch.float32)
    for c in range(0, h.shape[0], chunk_size):
        logits = F.linear(h[c:c + chunk_size], lm_head).float()  # (chunk, V)
        total = total + F.cross_entropy(logits, targets[c:c + chunk_size], reduction="sum")
    return total
