"""Sampler: chains decoded with a static key/value cache and the whole decode step on the device.

    sampler = Sampler(model, tokenizer)                       # keep one per model: its caches are reused
    samples, stats = sampler.sample([ids_a, ids_b], n=4, max_new_tokens=64, seed=0)
    samples[0].logprobs                                       # log pi(token) at temperature 1, per token
    samples, stats = sample_chains_on_device(model, tokenizer, prompts, n=4)   # same contract as sample_chains

Same contract as `generation.sample_chains` (which stays the reference path, `model.generate`), plus
per-token log-probs. Why a second path: `generate` is launch-bound on a GPU (~5,000 host operations per
decode step with an unmerged peft LoRA adapter, DESIGN.md §5) and pays per-token bookkeeping on a CPU.
Here one decode step is one function of preallocated tensors:

- a transformers `StaticCache` of fixed width: [shared prefix S | each row's rest, left-padded to W |
  max_new_tokens - 1 decode columns]; visible key columns kept in a (B, L) mask, positions counted
  from real tokens only (as generate() and `batching.Batch.positions` count them); each distinct
  prompt of a batch is prefilled once for its n samples and its keys and values copied into their rows;
- sampling on the device from uniforms drawn per batch with a seeded `torch.Generator` on the
  model's device (inverse CDF, top-p over the sorted distribution; the same seed, device and batch
  size give the same chains), end-of-turn and `min_new_tokens` handled with a finished mask, tokens
  and log-probs written into (B, N) tensors; the host looks at the finished mask every
  `check_every` steps only;
- attention through `attention.grouped_attention`, registered in transformers' attention interface,
  so the model's own code runs unchanged; it reads grouped-query caches as they are, never
  repeating keys/values per query head. The model's attention implementation is switched to it
  for the length of a call and back after it;
- the adapter stays unmerged, and runs lean (`adapters.DecodingAdapters`: its two products in the
  model's dtype, the sum inside the second; three operations per adapted linear instead of peft's
  seven) from snapshots refreshed in place at the start of each call, so an in-place optimizer
  update is seen by the next call. On CUDA the step is captured once as a CUDA graph per shape (and
  optionally torch.compile'd first) and replayed per token; on a CPU it runs eagerly;
- on a CPU in bfloat16, every frozen linear (the base weights, the output head) runs from a copy
  packed once for oneDNN and kept by the Sampler (`packing.PackedLinears`), and so do the lean
  adapter's products: 16 chains × 64 tokens of the embedded model, 3.15 → 2.79 s a call. A Llama
  decodes there through `llama_step.LlamaStep` instead of its modules (fused packed products, the
  adapter's sum inside the base product): 3.36 → 2.41 s a call beside the packed modules when each
  column still had the modules' bits (bench/lean_adapters.py), 2.01 → 1.86 s since the join.
  Elsewhere (a GPU) the same step runs when asked for (`fused_step=True`, config `sampler_step:
  fused`), over plain products: fewer kernels a step, not yet timed on a GPU.

Models whose cache has sliding-window or linear-attention layers are refused (NotImplementedError):
use `sample_chains` for those.

Tests: tests/test_sampler.py, and on a GPU tests/test_sampler_cuda.py (CUDA graphs). Throughput
against sample_chains: bench/sampler_throughput.py.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from rcsd_core.modeling.adapters import DecodingAdapters, base_model
from rcsd_core.modeling.attention import attention_implementation
from rcsd_core.modeling.batching import left_pad
from rcsd_core.modeling.generation import (MIN_SHARED_PREFIX, Sample, SamplingStats, cache_keyword, cut_at_eos,
                                           last_position, no_logits, shared_prefix_length)
from rcsd_core.modeling.llama_step import LlamaStep
from rcsd_core.modeling.llama_step import supported as llama_step_supported
from rcsd_core.modeling.packing import PackedLinears

Prefix = list[tuple[torch.Tensor, torch.Tensor]]   # per layer, keys and values (1, Hkv, S, D) of a shared prefix
CHECK_EVERY = 8          # decode steps between looks at "all chains finished" (one host sync each)
CUDA_WIDTH_STEP = 64     # on CUDA, prompt width rounded up so later calls reuse the captured graph
KEEP_DECODERS = 2        # decoders a Sampler keeps between calls (a round's training and evaluation shapes)
COMPILED_SHAPES = 64     # compilations of the decode step allowed (decoder shapes x sampling modes)
KEEP_ADAPTERS = 4        # adapter snapshot sets kept (the adapter on, off, reloaded), graphs captured on them


# ---------------------------------------------------------------------------- choosing tokens (pure)

def pick_tokens(scores: torch.Tensor, uniforms: torch.Tensor, temperature: torch.Tensor | None, top_p: torch.Tensor,
                *, greedy: bool, nucleus: bool) -> torch.Tensor:
    """Next tokens (B,) from scores (B, V) float32, by inverse CDF on uniforms (B,) in [0, 1).

    Greedy takes the argmax (first of ties, as generate does). Otherwise softmax(scores / temperature)
    (temperature None: 1, the division left out, which gives the same bits),
    restricted with `nucleus` to the smallest top set whose mass reaches top_p (a token is kept when
    the mass ranked above it is below top_p, so the first always is). The draw is the first token
    whose cumulative mass exceeds u * total, so a token of zero probability is never drawn. No host
    sync and no random-number generation inside: the caller draws the uniforms.
    """
    if greedy:
        return scores.argmax(-1)
    probs = torch.softmax(scores if temperature is None else scores / temperature, dim=-1)
    order = None
    if nucleus:
        probs, order = probs.sort(dim=-1, descending=True)
        above = probs.cumsum(-1) - probs
        probs = probs.masked_fill(above >= top_p, 0.0)
    cumulative = probs.cumsum(-1)                                              # (B, V)
    target = uniforms.unsqueeze(-1) * cumulative[:, -1:]                       # (B, 1)
    index = torch.searchsorted(cumulative, target, right=True).clamp(max=scores.shape[-1] - 1)
    if order is not None:
        index = order.gather(-1, index)
    return index.squeeze(-1)


# ---------------------------------------------------------------------------- the decoder
# One decoder per shape (rows B, prompt width C = S + W, new tokens N): its cache and buffers are
# allocated once and reused for every batch of that shape, so a CUDA graph captured on them stays
# valid. Column layout of the cache: [0, C) prompt, C - 1 + t the token fed at decode step t.
# Greedy or not, top-p or not, a temperature of 1 or not change the step's code: one graph each, on the
# same buffers.

@dataclass(frozen=True)
class Shape:
    rows: int
    width: int          # C: shared prefix plus the padded rest of each prompt
    new_tokens: int     # N


class Decoder:
    """Static cache, decode-state buffers and the decode step for one Shape."""

    def __init__(self, model, shape: Shape, *, eos: int, pad: int, compile: bool | str = False):
        self.model, self.shape, self.eos, self.pad = model, shape, eos, pad
        parameter = next(model.parameters())
        device, dtype = parameter.device, parameter.dtype
        B, C, N = shape.rows, shape.width, shape.new_tokens
        self.length = L = C + N - 1                                    # the last token is never fed back
        self.new_cache = partial(static_cache, model.config.get_text_config(decoder=True), length=L, dtype=dtype,
                                 device=device)                        # rows -> a cache of this decoder's length
        self.cache = self.new_cache(B)
        self.keyword = cache_keyword(model)
        on = dict(device=device)
        self.valid = torch.zeros(B, L, dtype=torch.bool, **on)          # (B, L) key columns a query may see
        self.position = torch.zeros(B, dtype=torch.long, **on)          # (B,) position of the token fed next
        self.last = torch.full((B,), pad, dtype=torch.long, **on)       # (B,) token fed next
        self.finished = torch.zeros(B, dtype=torch.bool, **on)          # (B,) produced end-of-turn
        self.step_index = torch.zeros((), dtype=torch.long, **on)       # t: next completion index
        self.column = torch.zeros((), dtype=torch.long, **on)           # cache column of the token fed next
        self.tokens = torch.full((B, N), pad, dtype=torch.long, **on)   # (B, N) chosen tokens, pad after the end
        self.logprobs = torch.zeros(B, N, dtype=torch.float32, **on)    # (B, N) their log-probs, 0 after the end
        self.uniforms = torch.zeros(N, B, dtype=torch.float32, **on)    # (N, B) one draw per token
        self.temperature = torch.ones((), **on)
        self.top_p = torch.ones((), **on)
        self.min_new_tokens = torch.zeros((), dtype=torch.long, **on)
        self.greedy, self.nucleus, self.tempered = True, False, False
        self.llama: LlamaStep | None = None     # set by the Sampler for a call: the step runs there, not the modules
        backend = "inductor" if compile is True else compile
        self.step_fn = compiled_step(self.step, backend) if backend else self.step
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.pool = None

    # ------------------------------------------------------------------ one token, on the device

    def step(self) -> None:
        """Feed the last tokens (B,) at column C - 1 + t, choose token t, record it. No host sync."""
        B, L = self.shape.rows, self.length
        self.valid.index_fill_(1, self.column.view(1), True)
        if self.llama is not None:
            logits = self.llama.logits(self.last, self.position, self.column, self.valid, self.cache)
        else:
            logits = self.model(input_ids=self.last.view(B, 1), attention_mask=self.valid.view(B, 1, 1, L),
                                position_ids=self.position.view(B, 1), use_cache=True,
                                **{self.keyword: self.cache}).logits[:, -1]
        self.position.add_(1)
        self.column.add_(1)
        self.record(logits)

    def record(self, logits: torch.Tensor) -> None:
        """Choose token t from logits (B, V); write it and its log-prob; mark rows that finish."""
        t = self.step_index.view(1)
        scores = logits.float()
        logp = torch.log_softmax(scores, dim=-1)                                    # (B, V) at temperature 1
        hold = (self.step_index < self.min_new_tokens).expand(scores.shape[0])    # end-of-turn not yet allowed
        scores[:, self.eos] = torch.where(hold, float("-inf"), scores[:, self.eos])  # after logp: it stays whole
        token = pick_tokens(scores, self.uniforms.index_select(0, t).view(-1),
                            self.temperature if self.tempered else None, self.top_p, greedy=self.greedy,
                            nucleus=self.nucleus)
        token = torch.where(self.finished, self.pad, token)
        chosen = torch.where(self.finished, 0.0, logp.gather(1, token.unsqueeze(1)).squeeze(1))
        self.tokens.index_copy_(1, t, token.unsqueeze(1))
        self.logprobs.index_copy_(1, t, chosen.unsqueeze(1))
        self.finished.logical_or_(token == self.eos)
        self.last.copy_(token)
        self.step_index.add_(1)

    # ------------------------------------------------------------------ one batch

    def prefill(self, rest: torch.Tensor, rest_mask: torch.Tensor, rows: torch.Tensor, prefix: Prefix | None,
                *, temperature: float, top_p: float, min_new_tokens: int,
                generator: torch.Generator | None) -> None:
        """Reset the state for a batch, copy the shared prefix into every row, run the rest, choose token 0.

        rest, rest_mask (U, W): the distinct prompts of the batch after the shared prefix, left-padded;
        rows (B,): which of them each row samples from. Each distinct prompt runs once (a prompt's n
        samples share it), through a cache of its own, and its keys and values are copied into its
        rows. The prefix (S = C - W columns) comes as one (1, Hkv, S, D) key and value pair per layer,
        or None when S = 0. The prompts' own cache has the decode cache's length, so their attention
        runs at the shapes the decode steps use.
        """
        C, L = self.shape.width, self.length
        U, W = rest.shape
        S = C - W
        device = rest.device
        own = self.new_cache(U)
        for i, layer in enumerate(own.layers):
            if prefix is not None:
                layer.keys[:, :, :S].copy_(prefix[i][0])      # broadcast over the rows
                layer.values[:, :, :S].copy_(prefix[i][1])
            layer.cumulative_length.fill_(S)                  # StaticCache writes the next update there
        valid = torch.zeros(U, L, dtype=torch.bool, device=device)                          # (U, L)
        valid[:, :S] = True
        valid[:, S:C] = rest_mask.bool()
        positions = (S + rest_mask.cumsum(-1) - 1).clamp(min=0)                             # (U, W) real tokens only
        columns = torch.arange(L, device=device)
        queries = torch.arange(S, C, device=device)
        see = valid[:, None, :] & (columns[None, :] <= queries[:, None])                  # (U, W, L) causal, no padding
        see |= columns[None, :] == queries[:, None]    # a padding query sees itself: no all-masked softmax row
        out = self.model(input_ids=rest, attention_mask=see.unsqueeze(1), position_ids=positions, use_cache=True,
                         logits_to_keep=last_position(W, device), **{self.keyword: own})
        for layer, computed in zip(self.cache.layers, own.layers):
            layer.keys[:, :, :C].copy_(computed.keys[:, :, :C].index_select(0, rows))
            layer.values[:, :, :C].copy_(computed.values[:, :, :C].index_select(0, rows))
            layer.cumulative_length.fill_(C)
        self.valid.copy_(valid.index_select(0, rows))
        self.greedy, self.nucleus = temperature <= 0, temperature > 0 and top_p < 1
        self.tempered = temperature > 0 and temperature != 1
        self.temperature.fill_(max(temperature, 1e-6))
        self.top_p.fill_(top_p)
        self.min_new_tokens.fill_(min_new_tokens)
        self.finished.zero_()
        self.step_index.zero_()
        self.tokens.fill_(self.pad)
        self.logprobs.zero_()
        if generator is not None:
            self.uniforms.uniform_(generator=generator)
        self.position.copy_(S + rest_mask.sum(-1).index_select(0, rows))
        self.column.fill_(C)
        self.record(out.logits[:, -1].index_select(0, rows))

    def resume(self) -> None:
        """Take the cache's C prompt columns as filled, every row seeing all of them, and feed the next
        token at column C: a batch in the middle of decoding without a prefill (tests and benchmarks
        that trace or time one step)."""
        C = self.shape.width
        self.valid[:, :C] = True
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(C)
        self.column.fill_(C)

    def decode(self, *, check_every: int = CHECK_EVERY, graph: bool = False) -> None:
        """Decode steps until N tokens are chosen or every row has finished (looked at every k steps)."""
        step = self._replay() if graph else self.step_fn
        for t in range(1, self.shape.new_tokens):
            step()
            if t % check_every == 0 and bool(self.finished.all()):
                break

    # ------------------------------------------------------------------ CUDA graph

    def _state(self) -> list[torch.Tensor]:
        """Every buffer a step changes (besides cache columns it will write again)."""
        lengths = [layer.cumulative_length for layer in self.cache.layers]
        return [self.valid, self.position, self.last, self.finished, self.step_index, self.column, self.tokens,
                self.logprobs, *lengths]

    def _replay(self) -> Callable[[], None]:
        """The step as a CUDA graph over this decoder's buffers, captured once per weights key."""
        key = (self.greedy, self.nucleus, self.tempered, weights_key(self.model))
        if key not in self.graphs:
            self.graphs[key] = self._capture()
        return self.graphs[key].replay

    def rehearse(self, runs: int) -> Callable[[], None]:
        """Run the step `runs` times, putting the state back after each; returns the putting back.

        Warm-up and capture run real steps in the middle of a batch: afterwards the batch must go on
        where it was (tests/test_sampler.py checks this on a CPU)."""
        saved = [(tensor, tensor.clone()) for tensor in self._state()]

        def restore() -> None:
            for tensor, copy in saved:
                tensor.copy_(copy)

        for _ in range(runs):
            self.step_fn()
            restore()
        return restore

    def _capture(self) -> "torch.cuda.CUDAGraph":
        # Warm-up runs (allocator, cuBLAS handles, torch.compile) on a side stream, then one captured
        # step (capture records kernels without running them; the state is put back all the same).
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            restore = self.rehearse(3)
        torch.cuda.current_stream().wait_stream(stream)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.step_fn()
        restore()
        return graph


def compiled_step(step: Callable[[], None], backend: str) -> Callable[[], None]:
    """`step` under torch.compile (one graph, static shapes), allowed COMPILED_SHAPES compilations.

    Every decoder's step is the same code, so torch.compile counts one compilation per decoder shape
    and sampling mode against one limit (8 by default); with fullgraph a ninth is an error, not a
    slower step: a round with evaluations, or a studio session previewing prompts of many widths,
    would stop there. Each shape has its own static cache and CUDA graph anyway."""
    compiled = torch.compile(step, backend=backend, fullgraph=True, dynamic=False)
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"

    def run() -> None:
        with dynamo_config.patch(**{name: COMPILED_SHAPES}):
            compiled()
    return run


def static_cache(config, rows: int, *, length: int, dtype: torch.dtype, device: torch.device):
    """A transformers StaticCache of `rows` × `length` columns, its tensors allocated now; a cache with
    sliding-window or linear-attention layers is refused (NotImplementedError)."""
    from transformers import StaticCache

    cache = StaticCache(config=config, max_cache_len=length)
    if not _plain_layers(cache):
        raise NotImplementedError("sliding-window or linear-attention layers: use generation.sample_chains")
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache.early_initialization(rows, heads, head_dim, dtype, device)
    return cache


def _plain_layers(cache) -> bool:
    """Every layer of a StaticCache is full attention (no sliding window, no linear attention)."""
    return not any(getattr(layer, "is_sliding", False) or not hasattr(layer, "cumulative_length")
                   for layer in cache.layers)


def static_sampling_supported(model) -> bool:
    """Whether the Sampler can decode this model: its forward takes a cache, all of it full attention."""
    from transformers import StaticCache

    if cache_keyword(model) is None:
        return False
    return _plain_layers(StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=2))


def weights_key(model) -> tuple:
    """What a captured step depends on besides its buffers: where each weight lives, which adapters run.

    An in-place update (an optimizer step) keeps the key; a reloaded adapter, `disable_adapter()`,
    a merge or train mode changes it, and the step is captured again for it."""
    addresses = tuple(p.data_ptr() for p in model.parameters())
    switches = tuple((bool(m.disable_adapters), tuple(m.active_adapters), bool(getattr(m, "merged", False)))
                     for m in model.modules() if hasattr(m, "base_layer") and hasattr(m, "active_adapters"))
    return addresses, switches, model.training


@contextlib.contextmanager
def no_input_grad_hook(model):
    """Without transformers' input-embedding hook (`enable_input_require_grads`, which gradient
    checkpointing on a peft model turns on) inside the block, and with it again after it.

    The hook calls `requires_grad_` on the embeddings' output on every forward: nothing to do
    without gradients, and under torch.compile(fullgraph=True) on torch 2.11 a graph break that
    stopped the compiled decode step (H100, `sampler_compile: true` with the gpu-lora preset)."""
    base = base_model(model)
    hooked = bool(getattr(base, "_require_grads_hooks", None) or getattr(base, "_require_grads_hook", None))
    if hooked:
        base.disable_input_require_grads()
    try:
        yield
    finally:
        if hooked:
            base.enable_input_require_grads()


def run_prefix(model, prefix: list[int]) -> Prefix:
    """Keys and values (1, Hkv, S, D) per layer of one run of the shared prefix (positions 0 .. S-1)."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    S = len(prefix)
    cache = DynamicCache(config=model.config)
    causal = torch.ones(S, S, dtype=torch.bool, device=device).tril()[None, None]      # (1, 1, S, S)
    model(input_ids=torch.tensor([prefix], device=device), attention_mask=causal,
          position_ids=torch.arange(S, device=device)[None], use_cache=True, logits_to_keep=no_logits(device),
          **{cache_keyword(model): cache})
    return [(layer.keys, layer.values) for layer in cache.layers]


# ---------------------------------------------------------------------------- the sampler

class Sampler:
    """Samples chains from one model; keeps Decoders (cache, buffers, CUDA graphs) between calls.

    A batch of another width replaces the kept decoder of its rows and new tokens, and at most
    KEEP_DECODERS are kept, the least recently used released first: each holds a whole static cache,
    so memory stays bounded over a round whose prompts change width from step to step. (Reusing a
    wider decoder would save a capture but make a step's chains depend on earlier steps' widths.)

    `cuda_graph` replays the step as a CUDA graph on a GPU (ignored on a CPU); `compile` wraps the
    step in torch.compile (fullgraph; True for inductor, or a backend name) first; `lean_adapters`
    runs the adapter from snapshots in the model's dtype (False: peft's own forward); `packed` runs
    the frozen linears from oneDNN-packed copies on a CPU in bf16 (not with `compile`). `fused_step`
    runs a Llama's or Qwen3's decode steps as `llama_step.LlamaStep` (fused products) instead of
    through its modules: None where products are packed (bf16 on a CPU, measured on a Llama), True
    wherever the step takes the model (on a GPU over the frozen weights re-laid in place, see
    `llama_step.fused_weight`; not with `compile`), False never. `release()` frees the caches and the
    packed copies."""

    def __init__(self, model, tokenizer, *, check_every: int = CHECK_EVERY, cuda_graph: bool = True,
                 compile: bool | str = False, lean_adapters: bool = True, packed: bool = True,
                 fused_step: bool | None = None):
        if cache_keyword(model) is None:
            raise NotImplementedError("this model's forward takes no cache: use generation.sample_chains")
        self.model, self.tokenizer = model, tokenizer
        self.check_every, self.cuda_graph, self.compile = check_every, cuda_graph, compile
        self.lean_adapters = lean_adapters
        self.packed = packed and not compile
        self.fused_step = False if compile else fused_step
        self.decoders: OrderedDict[Shape, Decoder] = OrderedDict()    # least recently used first
        self._adapters: OrderedDict[tuple, DecodingAdapters] = OrderedDict()   # by weights_key, oldest first
        self._packed: tuple[tuple, PackedLinears | LlamaStep] | None = None   # (weight addresses, copies)

    def release(self) -> None:
        self.decoders.clear()
        self._adapters.clear()
        self._packed = None

    def packed_weights(self, key: tuple) -> PackedLinears | LlamaStep | None:
        """The packed or fused copies of the frozen weights for this call (made again only when a weight
        has moved; `key`: the model's weights_key now): a LlamaStep where `fused_step` asks for one and
        `llama_step.supported` takes the model, else PackedLinears, or None where nothing is packed.

        Not while an adapter is merged: a merge adds into the base weights in place, where the packed
        copies would not see it (rcsd never merges a live model; an unmerge leaves the weights a
        rounding away from the copies, so `release()` after one)."""
        addresses, switches, _ = key
        if any(merged for _, _, merged in switches):
            return None
        if self._packed is None or self._packed[0] != addresses:
            self._packed = None                                        # the old copies go before the new come
            copies = self._copies()
            if copies is None:
                return None
            self._packed = (weights_key(self.model)[0], copies)       # the addresses after any re-laying
        return self._packed[1]

    def _copies(self) -> PackedLinears | LlamaStep | None:
        """What `packed_weights` keeps: the packed step, the plain fused step, the packed linears, or nothing."""
        if self.packed and self.fused_step is not False and llama_step_supported(self.model):
            return LlamaStep(self.model)
        if self.fused_step and llama_step_supported(self.model, packed=False):
            return LlamaStep(self.model, packed=False)       # re-lays the frozen weights once (fused_weight)
        return PackedLinears(self.model) if self.packed else None

    def adapters(self, key: tuple, *, packed: bool) -> DecodingAdapters | None:
        """The lean adapters for this call, refreshed: one set of snapshots per weights key (the
        adapter on, off, reloaded; `key` is the model's now), at most KEEP_ADAPTERS, with the graphs
        captured on a released set; None without lean adapters. `packed`: their products run from
        packed copies, for decoding through the modules; a packed LlamaStep packs the adapter into
        its own products, and the prefill's few calls run the plain snapshots (the same bits), so
        the copies would be made at every call for nothing (~35 ms of a `cpu-demo` call)."""
        if not self.lean_adapters:
            return None
        lean = self._adapters.pop(key, None)
        if lean is None:
            lean = DecodingAdapters(self.model, packed=packed)
        else:
            lean.refresh()
        self._adapters[key] = lean
        while len(self._adapters) > KEEP_ADAPTERS:
            released, _ = self._adapters.popitem(last=False)
            for decoder in self.decoders.values():
                for graph in [g for g in decoder.graphs if g[-1] == released]:
                    del decoder.graphs[graph]
        return lean

    def decoder(self, shape: Shape) -> Decoder:
        """The kept decoder of `shape`, else a new one in place of the kept one of its rows and new tokens."""
        if shape not in self.decoders:
            for other in [s for s in self.decoders if (s.rows, s.new_tokens) == (shape.rows, shape.new_tokens)]:
                del self.decoders[other]                 # another width: its cache goes before the new one comes
            eos = self.tokenizer.eos_token_id
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
            self.decoders[shape] = Decoder(self.model, shape, eos=eos, pad=pad, compile=self.compile)
        self.decoders.move_to_end(shape)
        while len(self.decoders) > KEEP_DECODERS:
            self.decoders.popitem(last=False)
        return self.decoders[shape]

    def sample(self, prompts: list[list[int]], *, n: int = 1, max_new_tokens: int = 128, temperature: float = 1.0,
               top_p: float = 1.0, seed: int = 0, batch_size: int = 8, min_new_tokens: int = 0,
               share_prefix: bool = True,
               progress: Callable[[int, int], None] | None = None) -> tuple[list[Sample], SamplingStats]:
        """n completions of each prompt (token ids), as `generation.sample_chains`, with per-token log-probs."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        start = time.perf_counter()
        jobs = [(p, s) for p in range(len(prompts)) for s in range(n)]
        if not jobs:
            return [], SamplingStats(tokens=0, seconds=time.perf_counter() - start)
        device = next(self.model.parameters()).device
        graphs = self.cuda_graph and device.type == "cuda"
        shared = shared_prefix_length(prompts) if share_prefix else 0
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
        rests = [p[shared:] for p in prompts]
        step = CUDA_WIDTH_STEP if graphs else 1
        width = -(-(shared + max(len(r) for r in rests)) // step) * step          # C, the same for every batch
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(seed)
        samples: list[Sample] = []
        key = weights_key(self.model)
        packed = self.packed_weights(key)
        if self._packed is not None and self._packed[0] != key[0]:
            key = weights_key(self.model)                  # the fused step has just re-laid the frozen weights
        lean = self.adapters(key, packed=self.packed and not isinstance(packed, LlamaStep))
        fused = packed if isinstance(packed, LlamaStep) and packed.bind(lean) else None    # else: the modules
        linears = packed.active() if isinstance(packed, PackedLinears) else contextlib.nullcontext()
        with torch.no_grad(), attention_implementation(self.model), linears, \
                lean.active() if lean is not None else contextlib.nullcontext(), no_input_grad_hook(self.model):
            prefix = run_prefix(self.model, prompts[0][:shared]) if shared else None
            for b in range(0, len(jobs), batch_size):
                batch = jobs[b:b + batch_size]
                decoder = self.decoder(Shape(batch_size if graphs else len(batch), width, max_new_tokens))
                decoder.llama = fused
                order = [p for p, _ in batch]
                order += [order[-1]] * (decoder.shape.rows - len(order))   # CUDA: a full batch keeps one graph
                distinct = {p: i for i, p in enumerate(dict.fromkeys(order))}  # each prompt's rest runs once
                rest, rest_mask = left_pad([rests[p] for p in distinct], decoder.pad, device, width=width - shared)
                rows = torch.tensor([distinct[p] for p in order], device=device)
                decoder.prefill(rest, rest_mask, rows, prefix, temperature=temperature, top_p=top_p,
                                min_new_tokens=min_new_tokens, generator=generator)
                decoder.decode(check_every=self.check_every, graph=graphs)
                samples += self._collect(batch, prompts, decoder)
                if progress:
                    progress(min(b + batch_size, len(jobs)), len(jobs))
        tokens = sum(s.n_tokens for s in samples)
        return samples, SamplingStats(tokens=tokens, seconds=time.perf_counter() - start)

    def _collect(self, batch: list[tuple[int, int]], prompts: list[list[int]], decoder: Decoder) -> list[Sample]:
        rows = len(batch)
        tokens, logprobs = decoder.tokens[:rows].tolist(), decoder.logprobs[:rows].tolist()   # the one sync
        out = []
        for (p, s), ids, lps in zip(batch, tokens, logprobs):
            completion, finished = cut_at_eos(ids, decoder.eos)
            text = self.tokenizer.decode(completion, skip_special_tokens=True)
            out.append(Sample(p, s, prompts[p], completion, text, finished, logprobs=lps[:len(completion)]))
        return out


def sample_chains_on_device(model, tokenizer, prompts: list[list[int]], *, n: int = 1, max_new_tokens: int = 128,
                            temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                            min_new_tokens: int = 0, share_prefix: bool = True,
                            progress: Callable[[int, int], None] | None = None) -> tuple[list[Sample], SamplingStats]:
    """`generation.sample_chains`' contract on a one-call Sampler (keep a Sampler to reuse its caches)."""
    return Sampler(model, tokenizer).sample(prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                                            top_p=top_p, seed=seed, batch_size=batch_size,
                                            min_new_tokens=min_new_tokens, share_prefix=share_prefix,
                                            progress=progress)
