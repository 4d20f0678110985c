"""Attention for every forward rcsd runs: grouped-query caches read as they are, and small CPU
attention as two plain matrix products.

    from rcsd_core.modeling.attention import attention_implementation, use_grouped_attention
    with attention_implementation(model): ...     # for one block (the sampler does this)
    use_grouped_attention(model)                  # for good (load_model does this on a CPU)

`grouped_attention` is registered in transformers' attention interface under ATTENTION, with the
masks "sdpa" builds, so a model's own code runs unchanged. It picks one of three paths:

- **small, in bf16 or fp16 on a CPU** (the scores of a call, B·H·T·L, at most MATMUL_MAX_SCORES):
  the query heads of a key/value group on the query axis, scores = Q·Kᵀ, a masked softmax in
  float32, times V. On this 2-core CPU (SmolLM2 shapes: 9 query / 3 key-value heads, bf16), torch's
  fused CPU kernel took 802 µs for a decode step of 16 rows over 128 columns and these two
  products 113 µs (`bench/grouped_attention.py --dtype bfloat16`); for a training micro-batch of
  8 × 121 tokens, forward and backward, 13.8 ms against 3.6 ms; and in a whole `cpu-demo` step
  the teacher and student passes were faster this way at every size they have. In float32 the
  fused kernel is as fast or faster (and its sums do not depend on the query length, so a decode
  step and a plain forward agree within 1e-5 in log-probability over 30 layers), so float32 keeps
  it. Masked keys get the dtype's lowest value added (`additive_mask`), not −inf, so a row with
  nothing to see (a padding query) comes out finite instead of NaN;
- **a decode step, or any call on CUDA**: fold the G query heads of a group into the query axis —
  query (B, H, T, D) → (B, Hkv, G·T, D), the mask tiled G times (a view when T = 1) — so every SDPA
  kernel that takes a mask reads the cache as it is. transformers' own "sdpa" repeats keys and
  values per query head (`repeat_kv`) whenever there is a mask, i.e. always with left padding:
  2–3 copies of the cache per layer per step on grouped-query models;
- **otherwise**: SDPA with `enable_gqa=True` (on a CPU the fused kernel takes grouped heads itself).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from rcsd_core.modeling.adapters import base_model

ATTENTION = "rcsd_grouped_sdpa"
MATMUL_MAX_SCORES = 1 << 24   # B·H·T·L above this (64 MiB of float32 scores) go to a fused kernel


def grouped_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention interface: query (B, H, T, D), key/value (B, Hkv, L, D) -> (B, T, H, D)."""
    B, H, T, _ = query.shape
    groups = H // key.shape[1]
    causal = attention_mask is None and T > 1 and bool(getattr(module, "is_causal", True) if is_causal is None
                                                       else is_causal)
    if query.device.type == "cpu" and query.dtype != torch.float32 and dropout == 0.0 and \
            B * H * T * key.shape[2] <= MATMUL_MAX_SCORES:
        out = matmul_attention(query, key, value, attention_mask, scale=scaling, causal=causal)
    elif groups > 1 and attention_mask is not None and attention_mask.shape[1] == 1 and \
            (T == 1 or query.device.type != "cpu"):
        out = folded_attention(query, key, value, attention_mask, dropout=dropout, scale=scaling)
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                             scale=scaling, is_causal=causal, enable_gqa=groups > 1)
    return out.transpose(1, 2).contiguous(), None


def matmul_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, *,
                     scale: float | None = None, causal: bool = False) -> torch.Tensor:
    """Attention as Q·Kᵀ, a masked float32 softmax and ·V, groups folded (no cache copy); (B, H, T, D).

    mask: bool (True = may attend) or additive float, (B, 1 or H, T, L); `causal` without a mask
    lets query t see keys up to L - T + t."""
    B, H, T, D = query.shape
    Hkv, L = key.shape[1], key.shape[2]
    groups = H // Hkv
    scale = 1 / math.sqrt(D) if scale is None else scale
    scores = torch.matmul((query * scale).reshape(B, Hkv, groups * T, D), key.transpose(-1, -2))
    scores = scores.view(B, Hkv, groups, T, L)                                       # (B, Hkv, G, T, L)
    if causal and mask is None:
        mask = torch.ones(T, L, dtype=torch.bool, device=query.device).tril(L - T)
    if mask is not None:
        mask = mask[None, None, None] if mask.dim() == 2 else \
            mask.unsqueeze(2) if mask.shape[1] == 1 else mask.unflatten(1, (Hkv, groups))
        if mask.dtype == torch.bool:
            mask = additive_mask(mask, scores.dtype)
        if scores.requires_grad:     # in place on this view would make autograd copy the whole scores back
            scores = scores + mask
        else:                        # no grad (decoding, the teacher): in place, one pass fewer
            scores = scores.add_(mask)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(weights.view(B, Hkv, groups * T, L), value).view(B, H, T, value.shape[-1])


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A bool mask (True = may attend) as 0 where it may and the dtype's lowest value where not.

    Added to the scores it gives the bits of filling them: x + lowest rounds to the lowest value
    for any score x of a real model (in fp16 to a value whose softmax weight is exactly 0 all the
    same). The gradients are the fill's too wherever a loss reads the row; only a row that sees
    nothing (a padding query, which no loss reads) passes a gradient on where the fill stopped it.
    It is faster: on this 2-core CPU a fill under a mask broadcast over the heads took 1.8 ms
    for a teacher layer of `cpu-demo` (4 × 9 × 279 × 680 bf16 scores, its block mask), against
    0.23 ms to convert the (4, 1, 279, 680) mask and 0.50 ms to add it; and the sum's backward
    passes the gradient through where the fill's takes one more pass (tests/test_attention.py)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def folded_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, *,
                     dropout: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """SDPA with the query heads of each key/value group on the query axis: (B, H, T, D) out, no cache copy."""
    B, H, T, D = query.shape
    groups = H // key.shape[1]
    query = query.reshape(B, key.shape[1], groups * T, D)                      # (B, Hkv, G*T, D)
    if T > 1:
        mask = mask.repeat(1, 1, groups, 1)                                    # (B, 1, G*T, L)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scale)
    return out.reshape(B, H, T, value.shape[-1])


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, grouped_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)    # masks built the way "sdpa" builds them


def use_grouped_attention(model) -> None:
    """Run the model with `grouped_attention` from now on (a model without the interface is left as it is)."""
    base = base_model(model)
    if hasattr(base, "set_attn_implementation") and base.config._attn_implementation != ATTENTION:
        _register()
        base.set_attn_implementation(ATTENTION)


@contextlib.contextmanager
def attention_implementation(model, name: str = ATTENTION):
    """Run the model with attention `name` inside the block, and with its own again after it."""
    _register()
    base = base_model(model)
    before = base.config._attn_implementation
    if before != name:
        base.set_attn_implementation(name)
    try:
        yield
    finally:
        if before != name:
            base.set_attn_implementation(before)
