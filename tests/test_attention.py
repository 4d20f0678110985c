"""grouped_attention's CPU matrix-product path (bf16 / fp16) against torch's SDPA on repeated heads."""

from __future__ import annotations

import pytest
import torch

from rcsd_core.modeling.attention import ATTENTION, grouped_attention, matmul_attention, use_grouped_attention
from rcsd_core.modeling.models import load_model


def reference(query, key, value, mask=None, causal=False):
    """SDPA in float64 on keys and values repeated per query head; (B, H, T, D)."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    return torch.nn.functional.scaled_dot_product_attention(query.double(), key.double(), value.double(),
                                                            attn_mask=mask, is_causal=causal)


def inputs(B=3, H=6, Hkv=2, T=5, L=12, D=16, dtype=torch.bfloat16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=generator).to(dtype)   # noqa: E731
    mask = torch.rand(B, 1, T, L, generator=generator) > 0.3
    mask[..., -1] = True
    return make(B, H, T, D), make(B, Hkv, L, D), make(B, Hkv, L, D), mask


@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matmul_path_equals_sdpa_on_repeated_heads(T, dtype):
    query, key, value, mask = inputs(T=T, dtype=dtype)
    got, _ = grouped_attention(torch.nn.Module(), query, key, value, mask)          # (B, T, H, D)
    want = reference(query, key, value, mask).transpose(1, 2)
    assert got.dtype == dtype
    assert (got.double() - want).abs().max() < 2e-2                                 # bf16: 8 bits of mantissa
    # a per-head mask (B, H, T, L) and an additive float mask give the same
    additive = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, float("-inf"))
    assert torch.equal(matmul_attention(query, key, value, additive), matmul_attention(query, key, value, mask))
    per_head = mask.expand(-1, query.shape[1], -1, -1)
    assert torch.equal(matmul_attention(query, key, value, per_head), matmul_attention(query, key, value, mask))


def test_matmul_path_causal_without_mask_and_gradients():
    query, key, value, _ = inputs(T=7, L=7)
    for t in (query, key, value):
        t.requires_grad_()
    got, _ = grouped_attention(torch.nn.Module(), query, key, value, None)          # causal, no padding
    want = reference(query, key, value, causal=True).transpose(1, 2)
    assert (got.double() - want).abs().max() < 2e-2
    got.float().square().sum().backward()
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (query, key, value))
    reference(q64, k64, v64, causal=True).square().sum().backward()
    for mine, theirs in ((query, q64), (key, k64), (value, v64)):
        assert torch.allclose(mine.grad.double(), theirs.grad, atol=0.15, rtol=0.05)


def test_a_query_that_sees_nothing_comes_out_finite():
    # left padding: a padding query has no key to see; -inf would give NaN and spread through the layers
    query, key, value, mask = inputs(T=4, L=4)
    mask[0, :, 0, :] = False
    out = matmul_attention(query, key, value, mask)
    assert torch.isfinite(out).all()


def test_float32_keeps_the_fused_kernel(monkeypatch):
    query, key, value, mask = inputs(T=5, dtype=torch.float32)
    calls = []
    monkeypatch.setattr("rcsd_core.modeling.attention.matmul_attention", lambda *a, **k: calls.append(1))
    grouped_attention(torch.nn.Module(), query, key, value, mask)
    assert not calls


def test_cpu_models_load_with_it_and_a_bf16_forward_matches_sdpa():
    model, _ = load_model("tiny-random", device="cpu", dtype="bfloat16")
    assert model.config._attn_implementation == ATTENTION
    ids = torch.randint(5, 1000, (2, 9), generator=torch.Generator().manual_seed(1))
    attention = torch.ones_like(ids)
    attention[1, :3] = 0                                                             # left padding
    with torch.no_grad():
        mine = model(input_ids=ids, attention_mask=attention).logits
        model.set_attn_implementation("sdpa")
        theirs = model(input_ids=ids, attention_mask=attention).logits
        use_grouped_attention(model)
    real = attention.bool()
    assert (mine[real].float() - theirs[real].float()).abs().max() < 0.1 * theirs[real].float().abs().max()
    assert model.config._attn_implementation == ATTENTION


def graph_nodes(tensor: torch.Tensor) -> set[str]:
    """Names of the autograd nodes that lead to `tensor`."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo += [next_node for next_node, _ in node.next_functions]
    return {type(node).__name__ for node in seen}


def test_the_mask_is_added_in_place_without_grad_and_out_of_place_with_it():
    query, key, value, mask = inputs()
    with torch.no_grad():
        want = matmul_attention(query, key, value, mask)
    query.requires_grad_(True)
    got = matmul_attention(query, key, value, mask)
    assert torch.equal(got.detach(), want)
    # in place on the scores' view, autograd would copy every gradient of the scores back (CopySlices);
    # an added mask passes the gradient through, where a masked fill would take one more pass
    assert "CopySlices" not in graph_nodes(got) and "MaskedFillBackward0" not in graph_nodes(got)


def filled_attention(query, key, value, mask):
    """matmul_attention with masked scores set to the lowest value (a masked fill), not added to it."""
    B, H, T, D = query.shape
    Hkv, L = key.shape[1], key.shape[2]
    scores = torch.matmul((query * D ** -0.5).reshape(B, Hkv, H // Hkv * T, D), key.transpose(-1, -2))
    scores = scores.view(B, Hkv, H // Hkv, T, L).masked_fill(~mask.unsqueeze(2), torch.finfo(query.dtype).min)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(weights.view(B, Hkv, H // Hkv * T, L), value).view(B, H, T, D)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_added_mask_gives_the_bits_of_a_filled_one(dtype):
    # adding the lowest value leaves exactly it (or, in fp16, a value whose weight is exactly 0), so the
    # weights, the output and the gradients are those of filling; a row that sees nothing (a padding
    # query) stays uniform. A loss never reads such a row: there the fill would stop a gradient the
    # sum lets through, so the loss here leaves it out too
    query, key, value, mask = inputs(T=6, L=9, dtype=dtype, seed=3)
    mask[1, :, 2, :] = False
    read = mask.any(-1, keepdim=True)                                        # (B, 1, T, 1)
    leaves = [t.clone().requires_grad_() for t in (query, key, value)]
    theirs = [t.clone().requires_grad_() for t in (query, key, value)]
    got, want = matmul_attention(*leaves, mask), filled_attention(*theirs, mask)
    assert torch.equal(got, want)
    (got.float().square() * read).sum().backward()
    (want.float().square() * read).sum().backward()
    for mine, other in zip(leaves, theirs):
        assert torch.equal(mine.grad, other.grad)
