"""Llama step: one decode step of a Llama or Qwen3 model written out over fused products, for the sampler.

    if supported(model):                        # packed products: a CPU in bf16 (the sampler's default there)
        step = LlamaStep(model)                 # packed copies of the frozen weights, q/k/v and gate/up fused
    elif supported(model, packed=False):        # anywhere else, when asked for (Sampler(fused_step=True))
        step = LlamaStep(model, packed=False)   # the frozen weights re-laid in place, fused without a copy
    if step.bind(lean):                         # lean: the sampler's adapters.DecodingAdapters, refreshed
        logits = step.logits(tokens, positions, column, valid, cache)   # (B,) tokens in -> (B, V) logits

Why: a decode step through transformers' modules on this 2-core CPU took ~40 ms for the embedded
SmolLM2 with 16 chains (torch.profiler in a round), of which the weights' products were ~17 ms; the
rest was ~2,000 small operations and the Python around them (peft's wrappers, the cache's
bookkeeping, keyword handling in every module), a fixed cost per token whatever the model's width.
On a GPU, replayed as a CUDA graph, a step costs about its number of kernels (`operations.py`).
Here a step is the same arithmetic in fewer operations:

- the query, key and value projections run as one product, and so do the gate and up
  projections; the adapter's products of a fused group run as one too (its A's stacked, its scaled
  B's on the diagonal of one matrix, zeros elsewhere), so an adapted layer runs 12 products instead
  of 21 (packed, 8: below);
- a Llama's rotary embedding turns the queries and keys of a row together (a Qwen3 first normalises
  each head of its queries and keys with its own norms, then turns them apart);
- the norms, the rotary table, the activation and the attention (`attention.grouped_attention`, as
  the module path picks it for a decode step) are the model's own modules and functions, called
  directly.

Packed (a CPU in bf16): the products run from oneDNN-packed copies (`packing`), and an adapted
group's scaled B's lie after its weight's columns in one packed matrix, made again at each `bind`:
[x | x·Aᵀ]·[W | s·B]ᵀ is the base product and the adapter's sum in one product, rounded once, where
the modules round x·Wᵀ and then the sum. An adapted layer runs 8 products. At 16 rows a B's own
product cost ~30 µs, mostly oneDNN's call, against ~2 µs more for the wider one; re-packing the
embedded model's groups takes ~30 ms a call. A 16 × 64 `cpu-demo` sampling call: 2.01 → 1.86 s,
median of eight calls in turn (scratch timing). The logits are no longer the module path's to the
bit, so tests/test_llama_step.py holds both to the float32 logits of the same values: the step's
error is within 1.5× the modules' (0.5–1.34× on the tiny Llama and Qwen3, four seeds each). The
other operations are the ones transformers runs, in its order. Before the join, with each column's
bits the modules' (`2326d72`): the embedded model with its LoRA adapter, 16 chains × 64 tokens,
1,451 operations a decode step instead of 1,961, and 2.41 s a sampling call against 3.36 s through
the packed modules (`python bench/lean_adapters.py embedded --chains 16 --new-tokens 64
--repeats 3`, its "llama" side; `bench/results/lean_adapters.jsonl`).

Not packed (a GPU, or float32): plain products. A fused product needs the projections' weights side
by side in one tensor; rather than keep a second copy of the frozen weights (3 GB on a Qwen3-1.7B
shape), `fused_weight` moves them into one tensor once and leaves each module's weight a view of its
rows, so the model's own forward (the teacher, the student, evaluation) runs on the same values at
the same memory. Products of other widths may round differently there (cuBLAS picks its kernels by
shape): the logits agree with the module path's within rounding, not to the bit. Four more
differences cut a GPU step's kernels, each changing what it computes by rounding at most:

- the rows of the adapter's stacked A lie right after the group's weight rows in that tensor (they
  are the adapter's one row per rank, filled in place at each `bind`, so a CUDA graph captured on
  them sees the next call's adapter): one product gives x·Wᵀ and x·Aᵀ side by side;
- the adapter's sum is added in place into the base product's columns (`addmm_`); CUDA's out-of-place
  `addmm` copies its input into a new output first, one more kernel. A group runs two operations
  where it ran three (four kernels on CUDA);
- every RMSNorm is one `F.rms_norm` (`rms_norm` below) where the module runs eight operations in bf16
  (two casts, power, mean, the epsilon, rsqrt, two products). torch 2.11 (the GPU machine's; its
  wheel registers a CUDA kernel for `_fused_rms_norm`) runs it as one kernel; on a CPU it runs the
  same eight operations, so only a GPU gains. A Llama has two norms a layer, a Qwen3 four (its
  per-head query and key norms). It applies the weight before rounding back to bf16 where the
  module applies it after: on the embedded model a quarter of the values differ in the last bit
  (this CPU); in float32 the two are the same;
- the rotary embedding is three operations a call where it was five (`rotation`).

Counted on this CPU in bf16 (`operations.OperationCount`, 4 chains, LoRA r16 on every linear), a
plain step of SmolLM2's shape runs 1,246 operations where it ran 1,424 before these, 488 of them its
61 norms: 819 once each norm is one. Qwen3-0.6B's: 1,698 where 1,920, 904 of them its 113 norms: 907.
(The GPU's own count and time: `bench/lean_adapters.py`'s "fused" side, not yet run.)

`supported(model, packed=...)`: a Llama (`model_type` "llama") or Qwen3 whose projections are plain
frozen `nn.Linear`s without biases, and for `packed` in bf16 on a CPU where `packing.supported`;
`bind(lean)` then says whether this call can run here: every adapted projection must run lean
(adapters on and lean, or off). Anything else decodes through the modules. The cache is the
decoder's transformers StaticCache: keys and values are written at `column` (where StaticCache
would write them); its `cumulative_length` is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from rcsd_core.modeling import packing
from rcsd_core.modeling.adapters import DecodingAdapters, base_model
from rcsd_core.modeling.attention import additive_mask, grouped_attention

MODEL_TYPES = ("llama", "qwen3")


def _plain(module: nn.Module) -> nn.Linear:
    """The nn.Linear a projection runs: itself, or the base layer under peft's wrapper."""
    return getattr(module, "base_layer", module)


def supported(model: nn.Module, *, packed: bool = True) -> bool:
    """Whether LlamaStep can decode this model: a Llama or Qwen3 with plain frozen projections and no
    biases; `packed`: also in bf16 on a CPU with packed products (packed=False: any device and dtype, and
    norms that `rms_norm` runs: Llama's and Qwen3's RMSNorm)."""
    base = base_model(model)
    config = base.config
    if getattr(config, "model_type", None) not in MODEL_TYPES or getattr(config, "pretraining_tp", 1) not in (None, 1):
        return False
    head = base.get_output_embeddings()
    if head is None or head.bias is not None or (packed and not packing.supported(head.weight)):
        return False
    if not packed and not _plain_rms_norm(base.model.norm):
        return False
    for layer in base.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if config.model_type == "qwen3" and not (hasattr(attn, "q_norm") and hasattr(attn, "k_norm")):
            return False
        norms = [layer.input_layernorm, layer.post_attention_layernorm] + \
            ([attn.q_norm, attn.k_norm] if config.model_type == "qwen3" else [])
        if not packed and not all(_plain_rms_norm(norm) for norm in norms):
            return False
        for module in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj,
                       mlp.down_proj):
            linear = _plain(module)
            if type(linear) is not nn.Linear or linear.bias is not None or linear.weight.requires_grad or \
                    linear.weight.dtype != head.weight.dtype or (packed and not packing.supported(linear.weight)):
                return False
    return True


def _plain_rms_norm(norm: nn.Module) -> bool:
    """A norm `rms_norm` can run: Llama's or Qwen3's RMSNorm (weight · x / rms(x), no offset on the weight)."""
    return type(norm).__name__ in ("LlamaRMSNorm", "Qwen3RMSNorm") and hasattr(norm, "variance_epsilon")


def _runs_base_only(module: nn.Module) -> bool:
    """A projection whose forward is its base product: no peft wrapper, or no adapter of it active."""
    if not hasattr(module, "lora_A"):
        return True
    return bool(module.disable_adapters) or not any(name in module.lora_A for name in module.active_adapters)


# ---------------------------------------------------------------------------- fused products

def fused_weight(linears: list[nn.Linear], extra_rows: int = 0) -> torch.Tensor:
    """One (sum of outs + extra_rows, in) tensor whose first row blocks are the linears' weights, in order,
    without a second copy of them; the `extra_rows` after them are the caller's (an adapter's A: `Group`).
    Weights that already lie so in one storage (with extra rows: laid there by this function) are read
    where they are; otherwise they are moved into a new tensor once and each linear's weight becomes a
    view of its rows (same values, same memory)."""
    weights = [linear.weight for linear in linears]
    rows, width = sum(w.shape[0] for w in weights), weights[0].shape[1]
    first = weights[0]
    if _laid_out(linears, extra_rows):
        return first.detach().new_empty(0).set_(first.untyped_storage(), first.storage_offset(),
                                                (rows + extra_rows, width))
    fused = first.new_zeros(rows + extra_rows, width)
    row = 0
    with torch.no_grad():
        for linear in linears:
            n = linear.weight.shape[0]
            fused[row:row + n] = linear.weight
            linear.weight.data = fused[row:row + n]
            row += n
    if extra_rows:
        linears[-1].rcsd_rows_after = (extra_rows, fused.data_ptr())    # the rows after its weight are ours
    return fused


def _laid_out(linears: list[nn.Linear], extra_rows: int) -> bool:
    """Whether the linears' weights lie one after another in one storage, followed by `extra_rows` rows
    that `fused_weight` laid there (any other storage's next rows may be another tensor's)."""
    weights = [linear.weight for linear in linears]
    first = weights[0]
    offsets = [first.storage_offset() + sum(w.numel() for w in weights[:i]) for i in range(len(weights))]
    if not all(w.is_contiguous() and w.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
               and w.storage_offset() == offset for w, offset in zip(weights, offsets)):
        return False
    return not extra_rows or getattr(linears[-1], "rcsd_rows_after", None) == (extra_rows, first.data_ptr())


def _adapter_rank(module: nn.Module) -> int:
    """The rank of a projection's one active LoRA adapter (on or off), 0 without one."""
    active = [name for name in getattr(module, "active_adapters", ()) if name in getattr(module, "lora_A", {})]
    return module.lora_A[active[0]].weight.shape[0] if len(active) == 1 else 0


def _stacked_weights(modules: list[nn.Module], columns_after: int = 0) -> torch.Tensor:
    """The projections' frozen weights one under the other, in a new (sum of outs, in + columns_after)
    tensor whose last columns are the caller's to fill."""
    weights = [_plain(m).weight for m in modules]
    out = weights[0].new_empty(sum(w.shape[0] for w in weights), weights[0].shape[1] + columns_after)
    row = 0
    for w in weights:
        out[row:row + w.shape[0], :w.shape[1]] = w
        row += w.shape[0]
    return out


@dataclass
class Group:
    """Projections that read the same input, run as one product (their outputs side by side).

    Packed, an adapted group's scaled B's lie after the weight's columns in one packed matrix,
    `joined` = [W | s·B], made at each `bind`: [x | x·Aᵀ]·[W | s·B]ᵀ is one product, the adapter's sum
    inside it. Two products a group where three were (x·Wᵀ, x·Aᵀ, and (x·Aᵀ)·(s·B)ᵀ added into the
    first); the packed weight without the B's is made again only for a call with the adapters off.

    Not packed, the rows of the adapters' A (their ranks when the step is made) lie right after the
    weight's in one tensor, `stacked`, so x·Wᵀ and x·Aᵀ come from one product and the adapter's sum
    is added into the first columns in place: two operations a group where three were (an adapter
    of other ranks at `bind` runs its A as a product of its own)."""
    modules: list[nn.Module]
    weight: torch.Tensor | None            # (sum of outs, in): packed (None while `joined` stands for it),
                                           # or the fused weight itself
    packed: bool = True
    a: torch.Tensor | None = None          # (sum of ranks, in): each adapter's A, stacked
    b: torch.Tensor | None = None          # not packed: (sum of outs, sum of ranks), each s·B on the diagonal
    joined: torch.Tensor | None = None     # packed: [W | b], (sum of outs, in + sum of ranks)
    kept: dict = field(default_factory=dict)   # not packed: (ranks) -> the (a, b) buffers bind fills in place
    stacked: torch.Tensor | None = None    # not packed: (sum of outs + sum of `ranks`, in), `weight` its first rows
    ranks: tuple[int, ...] = ()            # the adapter ranks `stacked` has rows for
    folded: bool = False                   # `a` is stacked's rows after the weight's

    @classmethod
    @torch.no_grad()
    def of(cls, modules: list[nn.Module], *, packed: bool = True) -> "Group":
        if packed:
            return cls(modules, packing.pack(_stacked_weights(modules)))
        ranks = tuple(_adapter_rank(m) for m in modules)
        stacked = fused_weight([_plain(m) for m in modules], extra_rows=sum(ranks))
        outs = sum(_plain(m).weight.shape[0] for m in modules)
        return cls(modules, stacked[:outs], packed=False, stacked=stacked if sum(ranks) else None, ranks=ranks)

    @torch.no_grad()
    def bind(self, snapshots: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """Take the adapters' current A and s·B (by module id); False where a projection's adapter is on
        but has no lean snapshot (peft's own forward would run it)."""
        parts = []
        for module in self.modules:
            if id(module) in snapshots:
                parts.append(snapshots[id(module)])
            elif _runs_base_only(module):
                parts.append(None)
            else:
                return False
        self.folded = False
        if all(p is None for p in parts):
            self.a = self.b = self.joined = None
            if self.weight is None:
                self.weight = packing.pack(_stacked_weights(self.modules))
            return True
        outs = [_plain(m).weight.shape[0] for m in self.modules]
        ranks = [0 if p is None else p[0].shape[0] for p in parts]
        some = next(p for p in parts if p is not None)[0]
        if self.packed:                                                  # b: the last columns of [W | b]
            self.weight = None                                           # the old copies go before the new come
            joined = _stacked_weights(self.modules, columns_after=sum(ranks))
            a, b = some.new_empty(sum(ranks), some.shape[1]), joined[:, -sum(ranks):].zero_()
        elif tuple(ranks) not in self.kept:
            a, b = some.new_empty(sum(ranks), some.shape[1]), some.new_zeros(sum(outs), sum(ranks))
            if self.stacked is not None and tuple(ranks) == self.ranks:
                a = self.stacked[sum(outs):]
        else:
            a, b = self.kept[tuple(ranks)]      # the tensors a captured graph reads: filled, never replaced
        row = column = 0
        for part, out, rank in zip(parts, outs, ranks):
            if part is not None:
                a[column:column + rank] = part[0]
                b[row:row + out, column:column + rank] = part[1]
            row, column = row + out, column + rank
        if self.packed:
            self.a, self.joined = packing.pack(a), packing.pack(joined)
        else:
            self.a, self.b = self.kept.setdefault(tuple(ranks), (a, b))
            self.folded = self.stacked is not None and self.a.data_ptr() == self.stacked[sum(outs):].data_ptr()
        return True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in) -> (B, sum of outs): x·Wᵀ + (x·Aᵀ)·(s·B)ᵀ, the sum inside the last product."""
        if not self.packed:
            if self.a is None:
                return F.linear(x, self.weight)
            if self.folded:                                  # [x·Wᵀ | x·Aᵀ] from one product
                both, n = F.linear(x, self.stacked), self.weight.shape[0]
                return both[:, :n].addmm_(both[:, n:], self.b.t())
            return F.linear(x, self.weight).addmm_(F.linear(x, self.a), self.b.t())
        if self.a is None:
            return packing.linear(x, self.weight)
        return packing.linear(torch.cat([x, packing.linear(x, self.a)], dim=1), self.joined)


@dataclass
class Layer:
    block: nn.Module          # the decoder layer: its norms, its attention's scaling, its MLP's activation
    qkv: Group
    o: Group
    gate_up: Group
    down: Group

    def groups(self) -> tuple[Group, ...]:
        return self.qkv, self.o, self.gate_up, self.down


# ---------------------------------------------------------------------------- the step

class LlamaStep:
    """Fused copies (packed) or views (not packed) of a Llama's or Qwen3's frozen weights, and the decode
    step over them."""

    @torch.no_grad()
    def __init__(self, model: nn.Module, *, packed: bool = True):
        base = base_model(model)
        self.body = base.model
        config = base.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.qk_norms = config.model_type == "qwen3"
        self.packed = packed
        self.layers = []
        for block in self.body.layers:
            attn, mlp = block.self_attn, block.mlp
            self.layers.append(Layer(block, *(Group.of(modules, packed=packed) for modules in (
                [attn.q_proj, attn.k_proj, attn.v_proj], [attn.o_proj], [mlp.gate_proj, mlp.up_proj], [mlp.down_proj]))))
        head = base.get_output_embeddings().weight
        self.head = packing.pack(head) if packed else head
        self.norm = _module_norm if packed else rms_norm    # packed: the norm modules themselves, their bits

    def bind(self, lean: DecodingAdapters | None) -> bool:
        """Run the adapters' current snapshots (None: no lean adapters); False where this call must
        decode through the modules instead."""
        snapshots = {id(s.module): (s.a, s.b) for s in lean.snapshots} if lean is not None else {}
        return all(group.bind(snapshots) for layer in self.layers for group in layer.groups())

    def logits(self, tokens: torch.Tensor, positions: torch.Tensor, column: torch.Tensor, valid: torch.Tensor,
               cache) -> torch.Tensor:
        """Feed tokens (B,) at positions (B,), their keys and values written at cache column `column`
        (a 0-d tensor); valid (B, L): the columns each row may see, this one included -> logits (B, V)."""
        B = tokens.shape[0]
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        x = self.body.embed_tokens(tokens)                                        # (B, hidden)
        cos, sin = self.body.rotary_emb(x.unsqueeze(1), positions.unsqueeze(1))   # (B, 1, D) each
        turn = partial(rotate, cos=cos, sin=sin) if self.packed else rotation(cos, sin)
        mask = additive_mask(valid.view(B, 1, 1, -1), x.dtype)                   # once, not per layer
        at = column.view(1)
        for layer, kv in zip(self.layers, cache.layers):
            attn = layer.block.self_attn
            qkv = layer.qkv(self.norm(layer.block.input_layernorm, x))           # (B, (H + 2 Hkv) D)
            if self.qk_norms:
                q = turn(self.norm(attn.q_norm, qkv[:, :H * D].view(B, H, D)))
                k = turn(self.norm(attn.k_norm, qkv[:, H * D:(H + Hkv) * D].view(B, Hkv, D)))
            else:
                qk = turn(qkv[:, :(H + Hkv) * D].view(B, H + Hkv, D))
                q, k = qk[:, :H], qk[:, H:]
            kv.keys.index_copy_(2, at, k.unsqueeze(2))                            # (B, Hkv, 1, D) at the column
            kv.values.index_copy_(2, at, qkv[:, (H + Hkv) * D:].view(B, Hkv, 1, D))
            out, _ = grouped_attention(attn, q.unsqueeze(2), kv.keys, kv.values, mask, scaling=attn.scaling)
            x = x + layer.o(out.reshape(B, H * D))                                # (B, 1, H, D) -> (B, H D)
            gate, up = layer.gate_up(self.norm(layer.block.post_attention_layernorm, x)).chunk(2, dim=-1)
            x = x + layer.down(layer.block.mlp.act_fn(gate) * up)
        hidden = self.norm(self.body.norm, x)
        return packing.linear(hidden, self.head) if self.packed else F.linear(hidden, self.head)


def rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A Llama or Qwen3 RMSNorm module's output as one `F.rms_norm` (one kernel on CUDA; see the module's doc)."""
    return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)


def _module_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return norm(x)


def rotation(cos: torch.Tensor, sin: torch.Tensor):
    """`rotate` by cos, sin (B, 1, D) in three operations a call where it takes five: rotate_half(x)·sin is
    x rolled by half a head times sin with its first half negated (made once here), and the sum is one
    `addcmul`, which rounds once where `rotate` rounds the product and then the sum."""
    half = cos.shape[-1] // 2
    signed = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)

    def turn(x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x * cos, x.roll(half, dims=-1), signed)
    return turn


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, heads, D) by cos, sin (B, 1, D): x·cos + rotate_half(x)·sin, as Llama does it."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
