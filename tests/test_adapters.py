"""Lean decoding adapters against peft's own LoRA forward.

Tiny random model with a LoRA adapter whose B matrices are random (so the adapter moves the logits).
Run: pytest -q tests/test_adapters.py
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from rcsd_core.modeling.adapters import DecodingAdapters, lean_adapter, trained_lean
from rcsd_core.modeling.models import attach_lora, randomize_adapter
from rcsd_core.modeling.operations import OperationCount
from rcsd_core.modeling.sampler import Sampler

from test_sampler import (assert_logprobs_match, bf16_with_adapter, peaked, prompts, scale_adapter,  # noqa: F401
                          with_adapter)

pytestmark = pytest.mark.usefixtures("one_thread")


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.fixture(scope="module")
def ids(prompts):
    return torch.tensor([prompts[1]])


def test_lean_forward_equals_peft_forward_in_float32(peaked, ids):
    lora = with_adapter(peaked[0])
    lean = DecodingAdapters(lora)
    assert len(lean) == sum(1 for m in lora.modules() if hasattr(m, "lora_A"))     # every adapted linear
    with lean.active():
        got = logits(lora, ids)
    want = logits(lora, ids)                                                           # peft's forward again
    assert (want - logits(peaked[0], ids)).abs().max() > 1e-2                          # the adapter matters
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_an_adapted_linear_runs_three_operations_instead_of_seven(peaked):
    lora = bf16_with_adapter(peaked[0])
    module = next(m for m in lora.modules() if lean_adapter(m) is not None)
    x = torch.randn(4, 1, module.in_features, dtype=torch.bfloat16)
    counts = []
    for lean in (False, True):
        with torch.no_grad(), (DecodingAdapters(lora).active() if lean else contextlib.nullcontext()), \
                OperationCount() as ops:
            out = module(x)
        counts.append(ops.count)
        assert out.dtype == torch.bfloat16
    assert counts == [7, 3]      # peft: product, cast, two products, scaling, sum, cast back; lean: three products


def test_in_bf16_an_adapted_linear_is_as_close_to_exact_as_peft_is():
    # SmolLM2's gate projection (576 -> 1536), rank 16, a trained-looking B: the lean forward rounds A
    # and s·B to bf16, peft keeps them float32; both round the output to bf16 once
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(576, 1536, bias=False)),
                           LoraConfig(r=16, lora_alpha=32, target_modules=["0"]))
    randomize_adapter(model, std=0.02)
    module = next(m for m in model.modules() if lean_adapter(m) is not None)
    module.base_layer.to(torch.bfloat16)                        # a bf16 base with a float32 adapter
    x = torch.randn(64, 576).to(torch.bfloat16)
    W, A, B = (t.double() for t in (module.base_layer.weight, module.lora_A["default"].weight,
                                     module.lora_B["default"].weight))
    exact = x.double() @ W.T + module.scaling["default"] * (x.double() @ A.T) @ B.T
    with torch.no_grad():
        peft_error = (module(x).double() - exact).abs().max()
        with DecodingAdapters(model).active():
            lean_error = (module(x).double() - exact).abs().max()
    update = (exact - x.double() @ W.T).abs().max()
    assert update > 10 * peft_error                             # the update is far above the output's rounding
    assert lean_error <= 1.5 * peft_error, (lean_error, peft_error)


def test_refresh_brings_an_in_place_update_in_and_the_snapshots_stay_the_same_tensors(peaked, ids):
    lora = with_adapter(peaked[0])
    lean = DecodingAdapters(lora)
    addresses = [(s.a.data_ptr(), s.b.data_ptr()) for s in lean.snapshots]
    scale_adapter(lora, -3.0)
    want = logits(lora, ids)
    with lean.active():
        stale = logits(lora, ids)
        lean.refresh()
        fresh = logits(lora, ids)
    assert not torch.allclose(stale, want, atol=1e-3)            # a snapshot is a copy ...
    assert torch.allclose(fresh, want, atol=1e-5, rtol=0)       # ... until it is refreshed in place
    assert [(s.a.data_ptr(), s.b.data_ptr()) for s in lean.snapshots] == addresses


def test_peft_forward_is_back_after_the_block_even_after_an_error(peaked):
    lora = with_adapter(peaked[0])
    lean = DecodingAdapters(lora)
    with pytest.raises(RuntimeError, match="inside"):
        with lean.active():
            assert all("forward" in s.module.__dict__ for s in lean.snapshots)
            raise RuntimeError("inside")
    assert not any("forward" in s.module.__dict__ for s in lean.snapshots)


@pytest.mark.filterwarnings("ignore::FutureWarning")     # peft asks the model a deprecated name when it wraps
def test_linears_that_lean_would_change_keep_peft_forward(peaked):
    model = peaked[0]
    lora = with_adapter(model)
    with lora.disable_adapter():
        assert len(DecodingAdapters(lora)) == 0                  # adapters off: the base model
    dropout = attach_lora(copy.deepcopy(model), rank=4, dropout=0.1)
    assert len(DecodingAdapters(dropout.train())) == 0           # dropout would act in train mode
    assert len(DecodingAdapters(dropout.eval())) > 0
    from peft import LoraConfig, get_peft_model

    dora = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", use_dora=True))
    assert len(DecodingAdapters(dora)) == 0
    merged = with_adapter(model)
    merged.merge_adapter()
    assert len(DecodingAdapters(merged)) == 0


def test_the_sampler_runs_lean_with_the_chains_and_logprobs_of_peft(peaked, prompts):
    model, tokenizer = peaked
    lora = with_adapter(model)
    kw = dict(n=2, max_new_tokens=8, temperature=0.9, seed=7, batch_size=6)
    lean, _ = Sampler(lora, tokenizer).sample(prompts, **kw)
    plain, _ = Sampler(lora, tokenizer, lean_adapters=False).sample(prompts, **kw)
    assert [s.completion_ids for s in lean] == [s.completion_ids for s in plain]
    assert_logprobs_match(lora, lean, tokenizer.pad_token_id)


def test_the_sampler_keeps_one_snapshot_set_per_adapter_state(peaked, prompts):
    model, tokenizer = peaked
    lora = with_adapter(model)
    sampler = Sampler(lora, tokenizer)
    kw = dict(max_new_tokens=4, temperature=0, batch_size=3)
    sampler.sample(prompts, **kw)
    first = next(iter(sampler._adapters.values()))
    with lora.disable_adapter():
        base, _ = sampler.sample(prompts, **kw)
    again, _ = sampler.sample(prompts, **kw)
    assert len(sampler._adapters) == 2 and next(iter(reversed(sampler._adapters.values()))) is first
    assert_logprobs_match(lora, again, tokenizer.pad_token_id)
    with lora.disable_adapter():
        assert_logprobs_match(lora, base, tokenizer.pad_token_id)


# ---------------------------------------------------------------------------- the training forward

def gate_projection(seed: int = 0):
    """A peft-wrapped bf16 linear of SmolLM2's gate shape (576 -> 1536) with a float32 rank-16 adapter."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(576, 1536, bias=False)),
                           LoraConfig(r=16, lora_alpha=32, target_modules=["0"]))
    randomize_adapter(model, std=0.02, seed=seed)
    module = next(m for m in model.modules() if lean_adapter(m) is not None)
    module.base_layer.to(torch.bfloat16)
    return model.train(), module


def test_the_trained_lean_forward_is_as_close_to_exact_as_peft_and_so_are_its_gradients():
    # Under autocast, as `models.compute_precision` runs the student: peft rounds (x·Aᵀ)·Bᵀ, then its
    # scaling, then the sum; the lean forward rounds the sum once, inside the product.
    model, module = gate_projection()
    x = torch.randn(96, 576).to(torch.bfloat16)
    grad_out = torch.randn(96, 1536, generator=torch.Generator().manual_seed(1))
    A, B = module.lora_A["default"].weight, module.lora_B["default"].weight
    W, s = module.base_layer.weight.double(), module.scaling["default"]
    exact = x.double() @ W.T + s * (x.double() @ A.double().T) @ B.double().T
    exact_grad_b = s * grad_out.double().T @ (x.double() @ A.double().T)            # d(out·g)/dB
    results = {}
    for name, block in (("peft", contextlib.nullcontext), ("lean", lambda: trained_lean(model))):
        A.grad = B.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False), block():
            out = module(x)
        (out.float() * grad_out).sum().backward()
        results[name] = ((out.double() - exact).abs().max(), (B.grad.double() - exact_grad_b).abs().max(),
                         A.grad.dtype, B.grad.dtype, out.dtype)
    (peft_out, peft_grad, *peft_types), (lean_out, lean_grad, *lean_types) = results["peft"], results["lean"]
    assert lean_types == peft_types == [torch.float32, torch.float32, torch.bfloat16]
    assert lean_out <= peft_out, (lean_out, peft_out)
    assert lean_grad <= 1.5 * peft_grad, (lean_grad, peft_grad)
    assert not any("forward" in m.__dict__ for m in model.modules())                # peft's forward is back


def test_the_trained_lean_forward_runs_fewer_operations_forward_and_backward():
    model, module = gate_projection()
    x = torch.randn(8, 576).to(torch.bfloat16)
    counts = []
    for block in (contextlib.nullcontext, lambda: trained_lean(model)):
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False), block(), OperationCount() as ops:
            out = module(x)
            out.float().sum().backward()
        counts.append(ops.count)
    assert counts[1] < counts[0], counts


def test_inside_the_block_an_adapter_switched_off_runs_the_base_alone(peaked, ids):
    # The round's evaluation runs the teacher (adapter off) inside compute_precision's block.
    lora = bf16_with_adapter(peaked[0])
    with torch.no_grad():
        with lora.disable_adapter():
            base = logits(lora, ids)
        with trained_lean(lora):
            on = logits(lora, ids)
            with lora.disable_adapter():
                off = logits(lora, ids)
    assert torch.equal(off, base)
    assert (on - base).abs().max() > 1e-2
