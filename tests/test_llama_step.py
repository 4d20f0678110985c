"""The written-out Llama (and Qwen3) decode step (`modeling/llama_step.py`), packed, against the model's own modules.

A bf16 copy of the tiny peaked Llama (grouped-query: 4 query, 2 key/value heads) with a float32
LoRA adapter, as a CPU round samples it. Run: pytest -q tests/test_llama_step.py
"""

from __future__ import annotations

import copy

import pytest
import torch

from rcsd_core.modeling import llama_step
from rcsd_core.modeling.adapters import DecodingAdapters
from rcsd_core.modeling.attention import attention_implementation
from rcsd_core.modeling.llama_step import LlamaStep
from rcsd_core.modeling.operations import OperationCount
from rcsd_core.modeling.packing import PackedLinears
from rcsd_core.modeling.sampler import Decoder, Sampler, Shape

from test_packing import BF16, bf16_lora, pytestmark  # noqa: F401 (one thread, skipped without packing; fixture)
from test_sampler import (assert_logprobs_match, bf16_with_adapter, peaked, prompts, scale_adapter,  # noqa: F401
                          with_adapter)


def mid_batch(model, tokenizer, rows: int = 5) -> Decoder:
    """A decoder whose cache holds 12 random columns, rows left-padded by 0..rows-1 columns, at
    positions that differ per row: the state of a batch in the middle of decoding."""
    decoder = Decoder(model, Shape(rows=rows, width=12, new_tokens=6), eos=tokenizer.eos_token_id,
                      pad=tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(1)
    for layer in decoder.cache.layers:
        layer.keys.normal_(generator=generator)
        layer.values.normal_(generator=generator)
    decoder.resume()
    for row in range(rows):
        decoder.valid[row, :row] = False
    decoder.position.copy_(12 - torch.arange(rows))
    decoder.last.copy_(torch.randint(0, 2000, (rows,), generator=generator))
    return decoder


def step_logits(model, decoder: Decoder, fused: LlamaStep | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The logits of one step, and each layer's keys after it, from a copy of the decoder's state."""
    saved = [(layer.keys.clone(), layer.values.clone()) for layer in decoder.cache.layers]
    valid = decoder.valid.clone()
    valid.index_fill_(1, decoder.column.view(1), True)
    if fused is None:
        out = model(input_ids=decoder.last.view(-1, 1), attention_mask=valid.view(valid.shape[0], 1, 1, -1),
                    position_ids=decoder.position.view(-1, 1), use_cache=True,
                    **{decoder.keyword: decoder.cache}).logits[:, -1]
    else:
        out = fused.logits(decoder.last, decoder.position, decoder.column, valid, decoder.cache)
    keys = [layer.keys.clone() for layer in decoder.cache.layers]
    for layer, (k, v) in zip(decoder.cache.layers, saved):
        layer.keys.copy_(k)
        layer.values.copy_(v)
        layer.cumulative_length.fill_(12)
    return out, keys


def same_state(decoder: Decoder, like: Decoder) -> Decoder:
    """`decoder` given `like`'s cache values (in its own dtype) and decode state."""
    for mine, theirs in zip(decoder.cache.layers, like.cache.layers):
        mine.keys.copy_(theirs.keys)
        mine.values.copy_(theirs.values)
    for name in ("valid", "position", "last", "column"):
        getattr(decoder, name).copy_(getattr(like, name))
    return decoder


def errors_from_float32(model, tokenizer) -> tuple[float, float, float]:
    """(the step's, the packed modules') largest logit error against the same values in float32 from one
    mid-batch state, and the adapter's own largest effect on those logits)."""
    reference = copy.deepcopy(model).float()
    decoder = mid_batch(model, tokenizer)
    exact = same_state(mid_batch(reference, tokenizer), decoder)
    lean, fused = DecodingAdapters(model), LlamaStep(model)
    assert llama_step.supported(model) and fused.bind(lean)
    with torch.no_grad(), attention_implementation(model):
        want, _ = step_logits(reference, exact, None)
        with reference.disable_adapter():
            unadapted, _ = step_logits(reference, same_state(mid_batch(reference, tokenizer), decoder), None)
        with PackedLinears(model).active(), lean.active():
            modules, _ = step_logits(model, decoder, None)
        got, keys = step_logits(model, decoder, fused)
    assert not torch.equal(keys[0], decoder.cache.layers[0].keys)              # the column was written
    return tuple(float((x.float() - want).abs().max()) for x in (got, modules, unadapted))


@pytest.mark.parametrize("seed", [2, 5])
@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_a_step_is_as_near_the_float32_model_as_the_modules(peaked, kind, seed):
    # The step adds the adapter inside its product ([x | x·Aᵀ]·[W | s·B]ᵀ, one rounding), where the
    # modules round x·Wᵀ and then the sum: not the same bits, so each is held to the float32 logits of
    # the same values. A Qwen3 also runs its per-head query and key norms before the rotation.
    from test_fused_step import qwen3_of

    model = bf16_with_adapter(peaked[0] if kind == "llama" else qwen3_of(peaked[1]), seed=seed)
    error, modules_error, adapter_effect = errors_from_float32(model, peaked[1])
    assert 0 < error <= 1.5 * modules_error, (error, modules_error)
    assert adapter_effect > 5 * modules_error, (adapter_effect, modules_error)   # a lost adapter would show


def test_an_adapted_group_runs_two_packed_products_and_no_separate_sum(bf16_lora):
    fused = LlamaStep(bf16_lora)
    assert fused.bind(DecodingAdapters(bf16_lora))
    group = fused.layers[0].gate_up
    assert group.weight is None and group.joined is not None          # [W | s·B] stands for W
    x = torch.randn(3, group.modules[0].in_features).to(BF16)
    with torch.no_grad(), OperationCount() as ops:
        group(x)
    assert ops.names == {"_linear_pointwise.default": 2, "cat.default": 1}, ops.names     # x·Aᵀ, [x | x·Aᵀ], the product
    with bf16_lora.disable_adapter():                                  # off: the packed W is made again
        assert fused.bind(None)
    assert group.joined is None and group.weight is not None
    with torch.no_grad(), OperationCount() as ops:
        group(x)
    assert ops.names == {"_linear_pointwise.default": 1}


def test_some_projections_adapted_others_plain(peaked):
    """An adapter on q and v only: the fused q/k/v group's B has zeros for k, the MLP groups run plain."""
    from rcsd_core.modeling.models import attach_lora, randomize_adapter

    lora = attach_lora(copy.deepcopy(peaked[0]), rank=4, targets=["q_proj", "v_proj"]).eval()
    randomize_adapter(lora, std=0.05, seed=3)
    lora = lora.to(BF16)
    for name, p in lora.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    fused = LlamaStep(lora)
    assert fused.bind(DecodingAdapters(lora))
    assert fused.layers[0].qkv.a is not None and fused.layers[0].gate_up.a is None
    error, modules_error, adapter_effect = errors_from_float32(lora, peaked[1])
    assert 0 < error <= 1.5 * modules_error and adapter_effect > 5 * modules_error


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.9])
def test_the_sampler_decodes_through_the_step_and_reports_its_chains_log_probs(bf16_lora, peaked, prompts,
                                                                                temperature):
    kw = dict(n=2, max_new_tokens=6, temperature=temperature, seed=5, batch_size=4)
    sampler = Sampler(bf16_lora, peaked[1])
    got, _ = sampler.sample(prompts, **kw)
    assert isinstance(sampler._packed[1], LlamaStep) and all(d.llama for d in sampler.decoders.values())  # it ran
    assert [s.completion_ids for s in sampler.sample(prompts, **kw)[0]] == [s.completion_ids for s in got]
    # bf16 rounding on this tiny peaked model moves log-probs by up to ~0.26 either way (step or modules)
    assert_logprobs_match(copy.deepcopy(bf16_lora).float(), got, peaked[1].pad_token_id, tolerance=0.5)


def test_an_adapter_update_and_the_adapter_off_are_seen(peaked, prompts):
    lora = bf16_with_adapter(peaked[0], seed=2)
    sampler, plain = Sampler(lora, peaked[1]), Sampler(lora, peaked[1], fused_step=False)
    kw = dict(n=1, max_new_tokens=6, temperature=0)
    before, _ = sampler.sample(prompts, **kw)
    scale_adapter(lora, 4.0)                                # in place, as an optimizer step
    after, _ = sampler.sample(prompts, **kw)
    assert [s.completion_ids for s in after] == [s.completion_ids for s in plain.sample(prompts, **kw)[0]]
    assert [s.completion_ids for s in after] != [s.completion_ids for s in before]
    with lora.disable_adapter():                            # base-only projections: no adapter products
        off, _ = sampler.sample(prompts, **kw)
        assert [s.completion_ids for s in off] == [s.completion_ids for s in plain.sample(prompts, **kw)[0]]
    scale_adapter(lora, 4.0, undo=True)


def test_what_the_step_does_not_run_decodes_through_the_modules(peaked, bf16_lora, prompts):
    assert not llama_step.supported(with_adapter(peaked[0]))                  # float32
    assert not llama_step.supported(peaked[0].to(BF16))                      # trainable base weights
    lean = DecodingAdapters(bf16_lora)
    fused = LlamaStep(bf16_lora)
    assert not fused.bind(None)                        # an active adapter with no lean snapshot: peft's own forward
    assert fused.bind(lean)
    kw = dict(n=1, max_new_tokens=5, temperature=0)
    sampler = Sampler(bf16_lora, peaked[1], lean_adapters=False)             # peft's forward for the adapter
    got, _ = sampler.sample(prompts, **kw)
    want, _ = Sampler(bf16_lora, peaked[1], lean_adapters=False, packed=False).sample(prompts, **kw)
    assert [s.completion_ids for s in got] == [s.completion_ids for s in want]
    assert all(d.llama is None for d in sampler.decoders.values())
