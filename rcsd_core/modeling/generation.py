"""Sampling chains: N samples per prompt, batched, seeded, with token counts and timing.

    samples, stats = sample_chains(model, tokenizer, [ids_a, ids_b], n=4, max_new_tokens=64, seed=0)

Prompts are left-padded into batches of `batch_size` sequences so one forward serves many
chains: decoding a small model on a CPU is bound by reading the weights, which a batch reads once
for all its rows (`bench/sampling_throughput.py` measures batched against one chain at a time).
The prefix the prompts of a batch share is run once (see "shared prefixes" below). A chain ends
at the tokenizer's end-of-turn token.
"""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from rcsd_core.modeling.adapters import base_model
from rcsd_core.modeling.batching import left_pad


@dataclass
class Sample:
    """One sampled chain: which prompt and sample it is, its completion tokens and text."""
    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    completion_ids: list[int]   # up to and including the end-of-turn token when it was produced
    text: str
    finished: bool              # produced end-of-turn before max_new_tokens
    logprobs: list[float] | None = None   # log pi(token) at temperature 1, one per completion token (sampler.py)

    @property
    def n_tokens(self) -> int:
        return len(self.completion_ids)


@dataclass
class SamplingStats:
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def sample_chains(model, tokenizer, prompts: list[list[int]], *, n: int = 1, max_new_tokens: int = 128,
                  temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                  min_new_tokens: int = 0, share_prefix: bool = True,
                  progress: Callable[[int, int], None] | None = None,
                  progress_every: int = 0) -> tuple[list[Sample], SamplingStats]:
    """Sample n completions for each prompt (token ids), in batches of `batch_size` sequences.

    temperature 0 decodes greedily. `min_new_tokens` holds back end-of-turn that long (the
    benchmark uses it so every chain has the same length). With `share_prefix`, the tokens every
    prompt of a batch starts with (the chat template's system turn; in teacher context the whole
    rubric) are run through the model once and their cache is shared by the batch.
    `progress(done, total)` is called after each batch, and with `progress_every` > 0 also every that
    many decode steps inside a batch (with the chains done so far): a progress callback that raises
    (a studio job being cancelled) then stops sampling within a few tokens instead of a whole batch.
    """
    jobs = [(p, s) for p in range(len(prompts)) for s in range(n)]
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    prefixes = PrefixCache(model) if share_prefix else None
    samples: list[Sample] = []
    tokens = 0
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            for b in range(0, len(jobs), batch_size):
                batch = jobs[b:b + batch_size]
                rows = [prompts[p] for p, _ in batch]
                shared = shared_prefix_length(rows) if prefixes and prefixes.usable else 0
                extra = {}
                if shared >= MIN_SHARED_PREFIX:
                    # (B, P + T') = the shared prefix, then each row's rest padded on the left
                    rest, rest_mask = left_pad([r[shared:] for r in rows], pad, device)
                    head = torch.tensor([rows[0][:shared]], dtype=torch.long, device=device).expand(len(rows), -1)
                    input_ids = torch.cat([head, rest], dim=1)
                    attention_mask = torch.cat([torch.ones_like(head), rest_mask], dim=1)
                    extra = prefixes.cache_for(rows[0][:shared], len(rows))
                else:
                    input_ids, attention_mask = left_pad(rows, pad, device)
                if progress and progress_every > 0:
                    extra["stopping_criteria"] = StoppingCriteriaList(
                        [_EveryNSteps(progress_every, lambda: progress(b, len(jobs)))])
                out = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                     max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None,
                                     eos_token_id=eos, pad_token_id=pad, top_k=None, **sampling, **extra)
                new = out[:, input_ids.shape[1]:].tolist()
                for (p, s), ids in zip(batch, new):
                    completion, finished = cut_at_eos(ids, eos)
                    tokens += len(completion)
                    samples.append(Sample(p, s, prompts[p], completion,
                                          tokenizer.decode(completion, skip_special_tokens=True), finished))
                if progress:
                    progress(min(b + batch_size, len(jobs)), len(jobs))
    finally:
        if device.type == "cpu":
            torch.random.set_rng_state(generator_state)
    return samples, SamplingStats(tokens=tokens, seconds=time.perf_counter() - start)


class _EveryNSteps(StoppingCriteria):
    """A generate() stopping criterion that never stops: it calls `beat` every `every` decode steps
    (an exception raised there leaves generate, which is how a cancelled studio job stops)."""

    def __init__(self, every: int, beat: Callable[[], None]):
        self.every, self.beat, self.steps = every, beat, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        self.steps += 1
        if self.steps % self.every == 0:
            self.beat()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


# ---------------------------------------------------------------------------- shared prefixes
# Teacher prompts repeat the whole rendered rubric (~300 tokens for the arithmetic sample) before a
# ~50-token task, and every chat prompt starts with the template's system turn. Running that prefix
# once instead of once per row cut the prefill of a teacher batch of 8 about 4x. Positions come from
# the attention mask, so the padding between prefix and rest does not shift them: the prefix cache
# is the same for every row.

MIN_SHARED_PREFIX = 16  # below this, the extra forward costs more than it saves


def shared_prefix_length(sequences: list[list[int]]) -> int:
    """Length of the common prefix, leaving every sequence at least one token of its own."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    length = 0
    while length < limit and all(s[length] == first[length] for s in sequences):
        length += 1
    return length


class PrefixCache:
    """Key/value caches of the last few shared prefixes, copied and repeated for each batch that uses one.

    Within one `sample_chains` call the prefix is the same for every batch. A frozen teacher keeps
    one for a whole round (training.teacher): its weights never change, so the rubric prefix of its
    prompts is run once per round, not once per micro-batch."""

    def __init__(self, model, *, keep: int = 4):
        self.model = model
        self.usable = cache_keyword(model) is not None
        self.keep = keep
        self.caches: dict[tuple[int, ...], object] = {}

    def cache_for(self, prefix: list[int], rows: int) -> dict:
        key = tuple(prefix)
        if key not in self.caches:
            if len(self.caches) >= self.keep:
                self.caches.pop(next(iter(self.caches)))                     # the oldest goes
            self.caches[key] = prefix_cache(self.model, prefix)
        cache = copy.deepcopy(self.caches[key])
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return {cache_keyword(self.model): cache}


def prefix_cache(model, prefix: list[int], rows: int = 1):
    """The key/value cache (a DynamicCache) of one run of `prefix`, repeated for `rows` batch rows.

    Pass it to the model as `{cache_keyword(model): cache}`; the rows that follow must position
    their tokens after the prefix (positions from an attention mask that covers it)."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([prefix], device=device), use_cache=True, logits_to_keep=no_logits(device),
          **{cache_keyword(model): cache})
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    return cache


def kept_prefix_only(cache, rows: int):
    """`cache` (a DynamicCache holding a prefix for one row, or for `rows`) made to give each layer [its
    prefix ; the keys and values of the forward that runs now] without keeping the latter; returns it.
    A one-row prefix is read by all `rows` rows as a view (`expand`), not repeated per row.

    For a forward whose cache nobody reads afterwards (the teacher's, `divergence.teacher_hidden`): a
    DynamicCache appends every layer's keys and values and holds them all until the forward ends, so
    that forward peaks with all of them; here each layer's exist while its attention runs. A teacher
    micro-batch of the GPU preset on the Qwen3-0.6B benchmark shape (8 rows × ~2,080 positions after
    a 401-token rubric prefix) created 2,668 MiB while it ran, 855 with the layers' keys and values
    not kept and 548 with the prefix read as one row (`bench/teacher_memory.py`, this CPU). A cache with
    layers of another kind (sliding windows) is repeated per row instead and grows as usual."""
    layers = list(getattr(cache, "layers", ()))
    if not layers or not all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "is_initialized", False)
                             for layer in layers):
        keys = getattr(layers[0], "keys", None) if layers else None
        if rows > 1 and (keys is None or keys.shape[0] == 1):
            cache.batch_repeat_interleave(rows)
        return cache
    for layer in layers:
        layer.update = partial(_joined, layer)
    return cache


def _joined(layer, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
    rows = key_states.shape[0]
    keys, values = (layer.keys, layer.values) if layer.keys.shape[0] == rows else \
        (layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1))
    return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


def no_logits(device) -> torch.Tensor:
    """A `logits_to_keep` that keeps no position: a forward run for its cache skips the lm_head."""
    return torch.empty(0, dtype=torch.long, device=device)


def last_position(width: int, device) -> torch.Tensor:
    """A `logits_to_keep` for the last column only. An index tensor, not the int 1: the lm_head then
    gets a contiguous (B, 1, H) input; with `hidden[:, -1:]`, a strided view, torch's bf16 CPU
    matmul copies the (V, H) weight once per row (286 ms against 2 ms for 8 rows of SmolLM2)."""
    return torch.tensor([width - 1], device=device)


def final_hidden(model, **inputs) -> torch.Tensor:
    """The final (post-norm) hidden states (B, T, H) of a forward over `inputs`, without the lm_head.

    The decoder stack runs alone, so only its last layer's states are kept (no per-layer tuple, no
    logits). A DistributedDataParallel wrapper is called itself (its forward arms the gradient
    all-reduce), and so is a model transformers finds no decoder stack in: with no logits kept and
    the per-layer states, whose last is the same tensor.
    """
    base = base_model(model)
    decoder = None
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        try:
            decoder = base.get_decoder()
        except (AttributeError, ValueError, NotImplementedError):  # a model transformers finds no decoder in
            decoder = None
    if decoder is None or decoder is base:
        device = inputs["input_ids"].device
        return model(**inputs, output_hidden_states=True, logits_to_keep=no_logits(device)).hidden_states[-1]
    return decoder(**inputs).last_hidden_state


def cache_keyword(model) -> str | None:
    """`cache` (transformers >= 5.2x) or `past_key_values`; None for models whose forward takes neither."""
    base = base_model(model)
    if getattr(base.config, "is_encoder_decoder", False):
        return None
    parameters = inspect.signature(type(base).forward).parameters
    for keyword in ("cache", "past_key_values"):
        if keyword in parameters:
            return keyword
    return None


def cut_at_eos(ids: list[int], eos: int) -> tuple[list[int], bool]:
    """Completion tokens up to and including the first end-of-turn token."""
    if eos in ids:
        return ids[:ids.index(eos) + 1], True
    return ids, False
