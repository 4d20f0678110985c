"""Packed linears (oneDNN-layout copies of bf16 weights on a CPU) against torch's own products.

Run: pytest -q tests/test_packing.py
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from rcsd_core.modeling import packing
from rcsd_core.modeling.adapters import DecodingAdapters
from rcsd_core.modeling.packing import PackedLinears
from rcsd_core.modeling.sampler import Sampler

from test_sampler import bf16_with_adapter, peaked, prompts, scale_adapter, with_adapter  # noqa: F401 (fixtures)

BF16 = torch.bfloat16
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not packing.supported(torch.zeros(1, dtype=BF16)),
                                 reason="torch without oneDNN's packed linear")]


@pytest.fixture(scope="module")
def bf16_lora(peaked):
    """A bf16 copy of the tiny peaked model with a float32 LoRA adapter (random B), as a CPU round trains it."""
    return bf16_with_adapter(peaked[0])


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("rows", [1, 5, 16, 40])
def test_a_packed_product_equals_f_linear_to_the_bit(rows):
    torch.manual_seed(rows)
    weight, bias = torch.randn(96, 64, dtype=BF16), torch.randn(96, dtype=BF16)
    x = torch.randn(rows, 3, 64, dtype=BF16)
    packed = packing.pack(weight)
    assert torch.equal(packing.linear(x, packed), F.linear(x, weight))
    assert torch.equal(packing.linear(x, packed, bias), F.linear(x, weight, bias))


def test_the_packed_sum_equals_addmm():
    torch.manual_seed(0)
    h, b, out = torch.randn(16, 8, dtype=BF16), torch.randn(96, 8, dtype=BF16), torch.randn(16, 96, dtype=BF16)
    assert torch.equal(packing.linear_add(h, packing.pack(b), out), torch.addmm(out, h, b.t()))


def test_only_frozen_bf16_linears_are_packed(peaked, bf16_lora):
    assert len(PackedLinears(with_adapter(peaked[0]))) == 0                 # float32: nothing
    packed = PackedLinears(bf16_lora)
    modules = [m for m, _ in packed.linears]
    frozen = [m for m in bf16_lora.modules() if type(m) is torch.nn.Linear and not m.weight.requires_grad]
    assert modules == frozen and bf16_lora.get_output_embeddings() in modules    # the output head too
    assert all(m.weight.dtype == torch.float32 for m in bf16_lora.modules()       # never the adapter
               if type(m) is torch.nn.Linear and m.weight.requires_grad)


def test_a_packed_model_gives_the_same_logits_and_its_forwards_come_back(bf16_lora, prompts):
    ids = torch.tensor([prompts[1]])
    packed = PackedLinears(bf16_lora)
    want = logits(bf16_lora, ids)
    with pytest.raises(RuntimeError, match="inside"):
        with packed.active():
            assert torch.equal(logits(bf16_lora, ids), want)
            raise RuntimeError("inside")
    assert not any("forward" in m.__dict__ for m, _ in packed.linears)


def test_the_packed_adapter_equals_the_plain_lean_one_and_a_refresh_brings_an_update_in(bf16_lora, prompts):
    lora = copy.deepcopy(bf16_lora)
    ids = torch.tensor([prompts[1]])
    packed, plain = DecodingAdapters(lora), DecodingAdapters(lora, packed=False)
    assert all(s.packed for s in packed.snapshots) and not any(s.packed for s in plain.snapshots)
    with plain.active():
        want = logits(lora, ids)
    with packed.active():
        assert torch.equal(logits(lora, ids), want)
    scale_adapter(lora, -3.0)
    packed.refresh()
    plain.refresh()
    with plain.active():
        want = logits(lora, ids)
    with packed.active():
        assert torch.equal(logits(lora, ids), want)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_the_sampler_draws_the_same_chains_packed_or_not(bf16_lora, peaked, prompts, temperature):
    # through the modules, each linear packed or not (the Llama step's own products: test_llama_step.py)
    kw = dict(n=2, max_new_tokens=8, temperature=temperature, seed=3, batch_size=6)
    fast, _ = Sampler(bf16_lora, peaked[1], fused_step=False).sample(prompts, **kw)
    slow, _ = Sampler(bf16_lora, peaked[1], packed=False).sample(prompts, **kw)
    assert [s.completion_ids for s in fast] == [s.completion_ids for s in slow]
    assert [s.logprobs for s in fast] == [s.logprobs for s in slow]


def test_the_sampler_packs_again_only_when_a_weight_has_moved(bf16_lora, peaked, prompts):
    sampler = Sampler(bf16_lora, peaked[1])
    kw = dict(max_new_tokens=2, temperature=0, batch_size=3)
    sampler.sample(prompts, **kw)
    first = sampler._packed[1]
    sampler.sample(prompts, **kw)
    assert sampler._packed[1] is first
    sampler.release()
    assert sampler._packed is None


def test_the_sampler_does_not_pack_while_an_adapter_is_merged(bf16_lora, peaked, prompts):
    lora = copy.deepcopy(bf16_lora)
    sampler = Sampler(lora, peaked[1])
    kw = dict(max_new_tokens=6, temperature=0, batch_size=3)
    sampler.sample(prompts, **kw)                           # packs the base weights as they are
    lora.merge_adapter()                                    # which then change in place
    merged, _ = sampler.sample(prompts, **kw)
    plain, _ = Sampler(lora, peaked[1], packed=False).sample(prompts, **kw)
    assert [s.logprobs for s in merged] == [s.logprobs for s in plain]


def test_where_the_packed_product_fails_nothing_is_packed(bf16_lora, peaked, prompts, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("this CPU does not run it")

    with monkeypatch.context() as patch:                  # the probe itself, on a build whose op fails
        patch.setattr(packing, "linear", broken)
        assert packing.packed_products_work.__wrapped__() is False
    monkeypatch.setattr(packing, "packed_products_work", lambda: False)
    assert len(PackedLinears(bf16_lora)) == 0
    assert not any(s.packed for s in DecodingAdapters(bf16_lora).snapshots)
    kw = dict(max_new_tokens=4, temperature=0, batch_size=3)
    got, _ = Sampler(bf16_lora, peaked[1]).sample(prompts, **kw)
    want, _ = Sampler(bf16_lora, peaked[1], packed=False).sample(prompts, **kw)
    assert [s.logprobs for s in got] == [s.logprobs for s in want]
