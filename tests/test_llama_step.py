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
from rcsd_core.modeling.packing import PackedLinears
from rcsd_core.modeling.sampler import Decoder, Sampler, Shape

from test_packing import BF16, bf16_lora, pytestmark  # noqa: F401 (one thread, skipped without packing; fixture)
from test_sampler import bf16_with_adapter, peaked, prompts, scale_adapter, with_adapter  # noqa: F401 (fixtures)


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


def test_a_step_gives_the_modules_logits_and_cache_to_the_bit(bf16_lora, peaked):
    decoder = mid_batch(bf16_lora, peaked[1])
    lean = DecodingAdapters(bf16_lora)
    fused = LlamaStep(bf16_lora)
    assert llama_step.supported(bf16_lora) and fused.bind(lean)
    assert all(g.a is not None for layer in fused.layers for g in layer.groups())     # every projection adapted
    with torch.no_grad(), attention_implementation(bf16_lora), PackedLinears(bf16_lora).active(), lean.active():
        want, want_keys = step_logits(bf16_lora, decoder, None)
        got, got_keys = step_logits(bf16_lora, decoder, fused)
    assert torch.equal(got, want)
    assert all(torch.equal(g, w) for g, w in zip(got_keys, want_keys))
    assert not torch.equal(got_keys[0], decoder.cache.layers[0].keys)      # the column was written


def test_some_projections_adapted_others_plain(peaked):
    """An adapter on q and v only: the fused q/k/v group adds zeros for k, the MLP groups run plain."""
    from rcsd_core.modeling.models import attach_lora, randomize_adapter

    lora = attach_lora(copy.deepcopy(peaked[0]), rank=4, targets=["q_proj", "v_proj"]).eval()
    randomize_adapter(lora, std=0.05, seed=3)
    lora = lora.to(BF16)
    decoder = mid_batch(lora, peaked[1], rows=3)
    lean, fused = DecodingAdapters(lora), LlamaStep(lora)
    assert fused.bind(lean)
    assert fused.layers[0].qkv.a is not None and fused.layers[0].gate_up.a is None
    with torch.no_grad(), attention_implementation(lora), lean.active():
        want, _ = step_logits(lora, decoder, None)
        got, _ = step_logits(lora, decoder, fused)
    assert torch.equal(got, want)


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.9])
def test_the_sampler_draws_the_same_chains_with_the_step_as_without(bf16_lora, peaked, prompts, temperature):
    kw = dict(n=2, max_new_tokens=6, temperature=temperature, seed=5, batch_size=4)
    sampler = Sampler(bf16_lora, peaked[1])
    got, _ = sampler.sample(prompts, **kw)
    want, _ = Sampler(bf16_lora, peaked[1], fused_step=False).sample(prompts, **kw)
    assert isinstance(sampler._packed[1], LlamaStep) and all(d.llama for d in sampler.decoders.values())  # it ran
    assert [s.completion_ids for s in got] == [s.completion_ids for s in want]
    assert [s.logprobs for s in got] == [s.logprobs for s in want]


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


def test_a_qwen3_step_gives_the_modules_logits_to_the_bit(peaked):
    # Its per-head query and key norms run before the rotation: the packed step runs them as the modules do.
    from test_fused_step import qwen3_of

    qwen3 = bf16_with_adapter(qwen3_of(peaked[1]), seed=4)
    assert llama_step.supported(qwen3)
    decoder = mid_batch(qwen3, peaked[1])
    lean, fused = DecodingAdapters(qwen3), LlamaStep(qwen3)
    assert fused.bind(lean) and fused.qk_norms
    with torch.no_grad(), attention_implementation(qwen3), PackedLinears(qwen3).active(), lean.active():
        want, want_keys = step_logits(qwen3, decoder, None)
        got, got_keys = step_logits(qwen3, decoder, fused)
    assert torch.equal(got, want)
    assert all(torch.equal(g, w) for g, w in zip(got_keys, want_keys))
