"""Llama step: one decode step of a Llama-family model written out, for the sampler on a CPU in bf16.

    if supported(model):
        step = LlamaStep(model)                 # packed copies of the frozen weights, q/k/v and gate/up fused
        if step.bind(lean):                     # lean: the sampler's adapters.DecodingAdapters, refreshed
            logits = step.logits(tokens, positions, column, valid, cache)   # (B,) tokens in -> (B, V) logits

Why: a decode step through transformers' modules on this 2-core CPU took ~40 ms for the embedded
SmolLM2 with 16 chains (torch.profiler in a round), of which the weights' products were ~17 ms; the
rest was ~2,000 small operations and the Python around them (peft's wrappers, the cache's
bookkeeping, keyword handling in every module), a fixed cost per token whatever the model's width.
Here a step is the same arithmetic with less around it:

- the query, key and value projections run as one packed product, and so do the gate and up
  projections; the adapter's products of a fused group run as one too (its A's stacked, its scaled
  B's on the diagonal of one matrix, zeros elsewhere), so an adapted layer runs 12 products instead
  of 21;
- the rotary embedding turns the queries and keys of a row together;
- the norms, the rotary table, the activation and the attention are the model's own modules and
  `attention.matmul_attention`, called directly (the module path runs the same attention for a
  decode step up to `attention.MATMUL_MAX_SCORES` scores; 16 chains of SmolLM2 over 2,048 cache
  columns are 0.3M of its 16.8M).

On this CPU a fused product gives each output column the bits the separate product gives it, and
the other operations are the ones transformers runs, in its order: the logits equal the module
path's to the bit (tests/test_llama_step.py checks it), so the chains are the same. The embedded
model with its LoRA adapter, 16 chains × 64 tokens: 1,451 operations a decode step instead of
1,961, and 2.41 s a sampling call against 3.36 s through the packed modules (best of three, the
sides in turn), the same chains (`python bench/lean_adapters.py embedded --chains 16 --new-tokens 64
--repeats 3`, its "llama" side; `bench/results/lean_adapters.jsonl`).

`supported(model)`: a Llama (`model_type` "llama") in bf16 on a CPU where `packing.supported`, with
no biases on its projections; `bind(lean)` then says whether this call can run here: every adapted
projection must run lean (adapters on and lean, or off). Anything else decodes through the modules.
The cache is the decoder's transformers StaticCache: keys and values are written at `column`
(where StaticCache would write them); its `cumulative_length` is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rcsd_core.modeling import packing
from rcsd_core.modeling.adapters import DecodingAdapters, base_model
from rcsd_core.modeling.attention import additive_mask, matmul_attention


def _plain(module: nn.Module) -> nn.Linear:
    """The nn.Linear a projection runs: itself, or the base layer under peft's wrapper."""
    return getattr(module, "base_layer", module)


def supported(model: nn.Module) -> bool:
    """Whether LlamaStep can decode this model: a Llama in bf16 on a CPU with packed products, no biases."""
    base = base_model(model)
    config = base.config
    if getattr(config, "model_type", None) != "llama" or getattr(config, "pretraining_tp", 1) not in (None, 1):
        return False
    head = base.get_output_embeddings()
    if head is None or head.bias is not None or not packing.supported(head.weight):
        return False
    for layer in base.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for module in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj,
                       mlp.down_proj):
            linear = _plain(module)
            if type(linear) is not nn.Linear or linear.bias is not None or linear.weight.requires_grad or \
                    linear.weight.dtype != torch.bfloat16:
                return False
    return True


def _runs_base_only(module: nn.Module) -> bool:
    """A projection whose forward is its base product: no peft wrapper, or no adapter of it active."""
    if not hasattr(module, "lora_A"):
        return True
    return bool(module.disable_adapters) or not any(name in module.lora_A for name in module.active_adapters)


# ---------------------------------------------------------------------------- fused products

@dataclass
class Group:
    """Projections that read the same input, run as one packed product (their outputs side by side)."""
    modules: list[nn.Module]
    weight: torch.Tensor                   # packed (sum of outs, in)
    a: torch.Tensor | None = None          # packed (sum of ranks, in): each adapter's A, stacked
    b: torch.Tensor | None = None          # packed (sum of outs, sum of ranks): each s·B on the diagonal

    @classmethod
    @torch.no_grad()
    def of(cls, modules: list[nn.Module]) -> "Group":
        return cls(modules, packing.pack(torch.cat([_plain(m).weight for m in modules])))

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
        if all(p is None for p in parts):
            self.a = self.b = None
            return True
        outs = [_plain(m).weight.shape[0] for m in self.modules]
        ranks = [0 if p is None else p[0].shape[0] for p in parts]
        some = next(p for p in parts if p is not None)[0]
        diagonal = some.new_zeros(sum(outs), sum(ranks))
        row = column = 0
        for part, out, rank in zip(parts, outs, ranks):
            if part is not None:
                diagonal[row:row + out, column:column + rank] = part[1]
            row, column = row + out, column + rank
        self.a = packing.pack(torch.cat([p[0] for p in parts if p is not None]))
        self.b = packing.pack(diagonal)
        return True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in) -> (B, sum of outs): base products, plus (x·Aᵀ)·(s·B)ᵀ summed inside the second."""
        out = packing.linear(x, self.weight)
        if self.a is None:
            return out
        return packing.linear_add(packing.linear(x, self.a), self.b, out)


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
    """Packed, fused copies of a Llama's frozen weights and the decode step over them."""

    @torch.no_grad()
    def __init__(self, model: nn.Module):
        base = base_model(model)
        self.body = base.model
        config = base.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.layers = []
        for block in self.body.layers:
            attn, mlp = block.self_attn, block.mlp
            self.layers.append(Layer(block, Group.of([attn.q_proj, attn.k_proj, attn.v_proj]), Group.of([attn.o_proj]),
                                     Group.of([mlp.gate_proj, mlp.up_proj]), Group.of([mlp.down_proj])))
        self.head = packing.pack(base.get_output_embeddings().weight)

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
        mask = additive_mask(valid.view(B, 1, 1, -1), x.dtype)                   # once, not per layer
        at = column.view(1)
        for layer, kv in zip(self.layers, cache.layers):
            attn = layer.block.self_attn
            qkv = layer.qkv(layer.block.input_layernorm(x))                       # (B, (H + 2 Hkv) D)
            qk = rotate(qkv[:, :(H + Hkv) * D].view(B, H + Hkv, D), cos, sin)
            kv.keys.index_copy_(2, at, qk[:, H:].unsqueeze(2))                    # (B, Hkv, 1, D) at the column
            kv.values.index_copy_(2, at, qkv[:, (H + Hkv) * D:].view(B, Hkv, 1, D))
            out = matmul_attention(qk[:, :H].unsqueeze(2), kv.keys, kv.values, mask, scale=attn.scaling)
            x = x + layer.o(out.reshape(B, H * D))                                # (B, H, 1, D) -> (B, H D)
            gate, up = layer.gate_up(layer.block.post_attention_layernorm(x)).chunk(2, dim=-1)
            x = x + layer.down(layer.block.mlp.act_fn(gate) * up)
        return packing.linear(self.body.norm(x), self.head)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, heads, D) by cos, sin (B, 1, D): x·cos + rotate_half(x)·sin, as Llama does it."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin
