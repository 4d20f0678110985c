"""Forwards over [prompt + completion], and the student → teacher divergence on given chains.

A round, its evaluations, the signal report and the guidance map all ask one question of a
chain: how far is the student's next-token distribution from the teacher's at each completion
position? They share the forwards here, over the completion layout of `batching.pack_batch`
(or `pack_chains`, which runs a prompt several chains share once):

    hs = completion_hidden(model, pack_chains(student_prompts, completions, pad))  # (B, C, H)
    ht = teacher_hidden(model, teacher_prompts, completions, pad)                  # (B, C, H)
    total, tokens = chain_divergence(model, tokenizer, samples, teacher_prompts)
    logits = completion_logits(model, prompts, completions)                        # [(n_i, V)]

The teacher's prompts repeat the rubric and its worked examples, so `teacher_hidden` runs the
prefix a micro-batch shares once and every row reads its key/value cache.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

from rcsd_core.modeling.batching import Batch, SharedBatch, pack_batch, pack_chains
from rcsd_core.modeling.generation import (MIN_SHARED_PREFIX, PrefixCache, Sample, cache_keyword, final_hidden,
                                           kept_prefix_only, prefix_cache, shared_prefix_length)
from rcsd_core.modeling.losses import lm_head_chunked_divergence


def completion_hidden(model, batch: Batch | SharedBatch) -> torch.Tensor:
    """Final (post-norm) hidden states at the positions that predict the completion; (B, C, H)."""
    device = next(model.parameters()).device
    batch = batch.to(device)
    hidden = final_hidden(model, input_ids=batch.ids, attention_mask=batch.attention, position_ids=batch.positions,
                          use_cache=False)
    return at_completions(hidden, batch)


def at_completions(hidden: torch.Tensor, batch: Batch | SharedBatch) -> torch.Tensor:
    """The hidden states (B, C, H) at the positions that predict each chain's completion tokens,
    from a forward's (rows, T, H) over `batch`'s layout."""
    if isinstance(batch, SharedBatch):
        return hidden.reshape(-1, hidden.shape[-1])[batch.index]
    C = batch.tokens.shape[1]
    return hidden[:, batch.start:batch.start + C]


def teacher_hidden(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, *,
                   prefixes: PrefixCache | None = None) -> torch.Tensor:
    """completion_hidden of the teacher, with the prefix all prompts share run once; (B, C, H).

    The shared prefix goes through the model once and every row reads its key/value cache (one row,
    `generation.kept_prefix_only`); the rest of each prompt and the completion follow, positioned as
    if the prefix were in the row (the same layout sampling uses). Where chains share their whole prompt (a round's
    samples of one task), the rest of that prompt runs once for them: one row per prompt with its
    chains after it (`pack_chains`' shared layout; a `cpu-demo` step: 1,116 positions instead of 1,616).
    `prefixes` keeps the prefix's cache between calls (only for weights that do not change: a
    frozen teacher). Without a prefix worth sharing, or for a model whose forward takes no cache,
    this is completion_hidden.
    """
    keyword = cache_keyword(model)
    shared = shared_prefix_length(prompts) if len(prompts) > 1 else 0
    if keyword is None or shared < MIN_SHARED_PREFIX:
        return completion_hidden(model, pack_batch(prompts, completions, pad_id))
    device = next(model.parameters()).device
    batch = pack_chains([p[shared:] for p in prompts], completions, pad_id).to(device)
    rows = batch.ids.shape[0]
    if isinstance(batch, SharedBatch):            # (R, 1, T, T) block mask: every query also sees the prefix
        attention = torch.cat([batch.attention.new_ones((rows, 1, batch.ids.shape[1], shared)), batch.attention],
                              dim=-1)
        positions = batch.positions + shared
    else:
        attention = torch.cat([batch.attention.new_ones((rows, shared)), batch.attention], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    training = model.training
    model.eval()  # some transformers versions drop a cache in checkpointed layers in training mode
    try:
        prefix = prompts[0][:shared]
        cache = prefixes.cache_for(prefix, 1)[keyword] if prefixes else prefix_cache(model, prefix)
        cache = kept_prefix_only(cache, rows)                   # its one row read by every row, not repeated
        hidden = final_hidden(model, input_ids=batch.ids, attention_mask=attention, position_ids=positions,
                              use_cache=True, **{keyword: cache})
        del cache  # the prefix's keys and values: gone before the student's forward
    finally:
        model.train(training)
    return at_completions(hidden, batch)


@torch.no_grad()
def chain_divergence(model, tokenizer, samples: Sequence[Sample], teacher_prompts: Sequence[list[int]], *,
                     name: str = "forward_kl", params: dict | None = None, micro_batch_size: int = 8,
                     chunk_size: int = 512, teacher_context=None,
                     prefixes: PrefixCache | None = None) -> tuple[float, int]:
    """(sum over completion tokens, token count) of the divergence student → teacher on given chains.

    `teacher_prompts[i]` is the teacher prompt of samples[i]; `teacher_context` is a context
    manager factory that sets the teacher's weights (e.g. model.disable_adapter for frozen);
    `prefixes` the teacher's kept prefix caches (see teacher_hidden).
    """
    weight = model.get_output_embeddings().weight
    total, count = 0.0, 0
    for start in range(0, len(samples), micro_batch_size):
        part = samples[start:start + micro_batch_size]
        completions = [s.completion_ids for s in part]
        with (teacher_context() if teacher_context else nullcontext()):
            ht = teacher_hidden(model, list(teacher_prompts[start:start + len(part)]), completions,
                                tokenizer.pad_token_id, prefixes=prefixes)
        s_batch = pack_chains([s.prompt_ids for s in part], completions, tokenizer.pad_token_id)
        hs = completion_hidden(model, s_batch)
        n = int(s_batch.mask.sum())
        value = lm_head_chunked_divergence(name, hs, ht, weight, s_batch.mask, chunk_size, tokens=s_batch.tokens,
                                           **(params or {}))
        total += float(value) * n
        count += n
    return total, count


@torch.no_grad()
def completion_logits(model, prompts: list[list[int]], completions: list[list[int]], *,
                      batch_size: int = 4, pad_id: int = 0) -> list[torch.Tensor]:
    """Logits that predict each completion token given [prompt + completion], one (n_i, V) per chain.

    Row j of a result predicts completions[i][j], so student and teacher results line up although
    their prompts differ. Only the C positions that predict completion tokens get logits, so
    memory grows with the completion, not the (long, rubric-bearing) prompt.
    """
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    for b in range(0, len(prompts), batch_size):
        batch = pack_batch(prompts[b:b + batch_size], completions[b:b + batch_size], pad_id).to(device)
        C = batch.tokens.shape[1]
        # the input's last C columns are P-1 .. P+C-2: exactly the positions that predict tokens 0..C-1
        # (as an index tensor: see generation.last_position)
        columns = torch.arange(batch.start, batch.start + C, device=device)
        logits = model(input_ids=batch.ids, attention_mask=batch.attention, position_ids=batch.positions,
                       logits_to_keep=columns).logits  # (B, C, V)
        for i, n in enumerate(int(k) for k in batch.mask.sum(-1)):
            out.append(logits[i, :n].float().cpu())
    return out


def chain_ids(tokenizer, chain_text: str, *, finished: bool = False) -> list[int]:
    """Token ids of a chain's text as the model would have produced it (end-of-turn when finished)."""
    ids = tokenizer.encode(chain_text, add_special_tokens=False)
    if finished and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids
