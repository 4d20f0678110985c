"""The decode step written out over plain fused products (`llama_step.LlamaStep(packed=False)`), as a
GPU would run it with `sampler_step: fused`, checked on this CPU in float32 against the model's modules.

A tiny Llama (grouped-query: 4 query, 2 key/value heads) and a tiny Qwen3 (its per-head query and
key norms), each with a LoRA adapter on every linear. Plain fused products may round differently
from the separate ones, so logits are compared within 1e-5, not to the bit (the packed CPU step's
bit-equality is tests/test_llama_step.py's). Run: pytest -q tests/test_fused_step.py
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
from rcsd_core.modeling.sampler import Decoder, Sampler, weights_key

from test_llama_step import mid_batch, same_state, step_logits
from test_sampler import peaked, prompts, scale_adapter, with_adapter  # noqa: F401 (fixtures)


def qwen3_of(tokenizer):
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=len(tokenizer), initializer_range=0.2,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    with torch.no_grad():                 # norms away from 1, so a step that skipped them would show
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture(params=["llama", "qwen3"])
def base(request, peaked):
    """(a tiny float32 Llama or Qwen3, its tokenizer)."""
    return (peaked[0] if request.param == "llama" else qwen3_of(peaked[1])), peaked[1]


@pytest.fixture
def lora(base):
    """(a copy of `base` with a random-B LoRA adapter on every linear, its tokenizer)."""
    return with_adapter(base[0], seed=2), base[1]


def test_the_plain_step_gives_the_modules_logits_and_cache(lora):
    model, tokenizer = lora
    assert llama_step.supported(model, packed=False) and not llama_step.supported(model)   # float32: not packed
    decoder = mid_batch(model, tokenizer)
    lean = DecodingAdapters(model, packed=False)
    fused = LlamaStep(model, packed=False)
    assert fused.bind(lean) and all(g.a is not None for layer in fused.layers for g in layer.groups())
    with torch.no_grad(), attention_implementation(model), lean.active():
        want, want_keys = step_logits(model, decoder, None)
        got, got_keys = step_logits(model, decoder, fused)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    for g, w in zip(got_keys, want_keys):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    assert not torch.equal(got_keys[0], decoder.cache.layers[0].keys)      # the column was written


def test_the_fused_weights_are_the_modules_own_re_laid_not_a_copy(lora):
    model, tokenizer = lora
    ids = torch.tensor([[5, 17, 99, 3, 250]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    bytes_before = sum(p.numel() * p.element_size() for p in model.parameters())
    fused = LlamaStep(model, packed=False)
    attn = model.get_base_model().model.layers[0].self_attn
    qkv = fused.layers[0].qkv.weight
    assert qkv.shape[0] == sum(m.base_layer.weight.shape[0] for m in (attn.q_proj, attn.k_proj, attn.v_proj))
    for module in (attn.q_proj, attn.k_proj, attn.v_proj):                 # views of the fused rows
        assert module.base_layer.weight.untyped_storage().data_ptr() == qkv.untyped_storage().data_ptr()
    assert fused.layers[0].o.weight.data_ptr() == attn.o_proj.base_layer.weight.data_ptr()
    assert sum(p.numel() * p.element_size() for p in model.parameters()) == bytes_before
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)           # the same values where they now live
    addresses = weights_key(model)[0]
    LlamaStep(model, packed=False)                                         # a second step finds them laid out
    assert weights_key(model)[0] == addresses


def test_the_three_operation_rotation_is_llamas_within_rounding():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=generator)
    cos, sin = torch.randn(3, 1, 16, generator=generator), torch.randn(3, 1, 16, generator=generator)
    torch.testing.assert_close(llama_step.rotation(cos, sin)(x), llama_step.rotate(x, cos, sin), atol=1e-6, rtol=0)


def test_an_adapted_group_runs_its_weight_and_its_a_as_one_product(lora):
    model, tokenizer = lora
    decoder = mid_batch(model, tokenizer)
    lean = DecodingAdapters(model, packed=False)
    fused = LlamaStep(model, packed=False)
    assert fused.bind(lean)
    for layer in fused.layers:
        for group in layer.groups():
            assert group.folded                             # A's rows right after the weight's
            assert group.a.data_ptr() == group.weight.data_ptr() + group.weight.numel() * group.weight.element_size()
    with torch.no_grad(), attention_implementation(model), lean.active(), OperationCount() as ops:
        step_logits(model, decoder, fused)
    names = ops.names
    assert names["mm.default"] == 4 * len(fused.layers) + 1     # one product a group, and the head
    assert names["addmm_.default"] == 4 * len(fused.layers) and "addmm.default" not in names


def test_an_adapter_of_other_ranks_runs_its_a_as_a_product_of_its_own(lora):
    model, _ = lora
    fused = LlamaStep(model, packed=False)
    group = fused.layers[0].o
    module = group.modules[0]
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(2, module.base_layer.in_features, generator=generator)          # rank 2, not the adapter's 4
    b = torch.randn(module.base_layer.out_features, 2, generator=generator)
    assert group.bind({id(module): (a, b)}) and not group.folded
    x = torch.randn(3, module.base_layer.in_features, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(group(x), module.base_layer(x) + x @ a.t() @ b.t(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_sampler_with_the_fused_step_draws_the_modules_chains(lora, prompts, temperature):
    model, tokenizer = lora
    kw = dict(n=2, max_new_tokens=8, temperature=temperature, seed=3, batch_size=6)
    sampler = Sampler(model, tokenizer, fused_step=True)
    got, _ = sampler.sample(prompts, **kw)
    want, _ = Sampler(model, tokenizer, fused_step=False).sample(prompts, **kw)
    assert all(d.llama is not None for d in sampler.decoders.values())   # it ran
    assert [s.completion_ids for s in got] == [s.completion_ids for s in want]
    for g, w in zip(got, want):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-5)
    default = Sampler(model, tokenizer)                                    # float32 on a CPU: the modules
    default.sample(prompts, **kw)
    assert all(d.llama is None for d in default.decoders.values())


@pytest.mark.parametrize("seed", [2, 5])
def test_in_bf16_the_plain_step_is_as_near_the_float32_model_as_the_modules(base, seed):
    # The dtype a GPU round samples in, with plain products and one-call norms as a GPU runs them. They
    # round differently from the modules (a norm applies its weight before the cast back to bf16), so
    # the step is held to the float32 logits of the same values, as near as the modules' bf16 logits.
    from test_sampler import bf16_with_adapter

    model, tokenizer = bf16_with_adapter(base[0], seed=seed), base[1]
    reference = copy.deepcopy(model).float()                  # the same values, in float32
    decoder = mid_batch(model, tokenizer)
    exact = same_state(mid_batch(reference, tokenizer), decoder)
    lean = DecodingAdapters(model, packed=False)
    with torch.no_grad(), attention_implementation(model):
        want, _ = step_logits(reference, exact, None)
        with lean.active():
            modules, _ = step_logits(model, decoder, None)
            fused = LlamaStep(model, packed=False)
            assert fused.bind(lean)
            got, _ = step_logits(model, decoder, fused)
    modules_error = (modules.float() - want).abs().max()
    error = (got.float() - want).abs().max()
    assert 0 < error <= 1.5 * modules_error, (float(error), float(modules_error))


def test_in_bf16_the_sampler_decodes_through_the_plain_step(base, prompts):
    from test_sampler import bf16_with_adapter

    model, tokenizer = bf16_with_adapter(base[0], seed=2), base[1]
    sampler = Sampler(model, tokenizer, fused_step=True, packed=False)
    kw = dict(n=2, max_new_tokens=8, min_new_tokens=8, temperature=0, batch_size=6)
    got, _ = sampler.sample(prompts, **kw)
    assert not sampler._packed[1].packed and all(d.llama is not None for d in sampler.decoders.values())
    assert all(s.n_tokens == 8 for s in got)
    assert [s.completion_ids for s in sampler.sample(prompts, **kw)[0]] == [s.completion_ids for s in got]


def test_an_adapter_update_is_seen_through_the_same_buffers(lora, prompts):
    # A captured CUDA graph reads the adapter's stacked products from fixed addresses: each call must
    # fill the same tensors, never replace them.
    model, tokenizer = lora
    kw = dict(n=1, max_new_tokens=8, temperature=0)
    sampler, plain = Sampler(model, tokenizer, fused_step=True), Sampler(model, tokenizer, fused_step=False)
    before, _ = sampler.sample(prompts, **kw)
    group = sampler._packed[1].layers[0].qkv
    buffers = group.a, group.b
    scale_adapter(model, 6.0)                                # in place, as an optimizer step
    after, _ = sampler.sample(prompts, **kw)
    assert group.a is buffers[0] and group.b is buffers[1]
    assert [s.completion_ids for s in after] == [s.completion_ids for s in plain.sample(prompts, **kw)[0]]
    assert [s.logprobs for s in after] != [s.logprobs for s in before]
    with model.disable_adapter():                            # base-only: no adapter products
        off, _ = sampler.sample(prompts, **kw)
        assert group.a is None
        assert [s.completion_ids for s in off] == [s.completion_ids for s in plain.sample(prompts, **kw)[0]]
    again, _ = sampler.sample(prompts, **kw)                 # on again: the same buffers as before
    assert group.a is buffers[0] and [s.completion_ids for s in again] == [s.completion_ids for s in after]


def test_a_partly_adapted_model_runs_zeros_for_the_plain_projections(peaked, prompts):
    from rcsd_core.modeling.models import attach_lora, randomize_adapter

    model = attach_lora(copy.deepcopy(peaked[0]), rank=4, targets=["q_proj", "v_proj"]).eval()
    randomize_adapter(model, std=0.05, seed=3)
    kw = dict(n=2, max_new_tokens=6, temperature=0)
    sampler = Sampler(model, peaked[1], fused_step=True)
    got, _ = sampler.sample(prompts, **kw)
    layer = sampler._packed[1].layers[0]
    assert layer.qkv.a is not None and layer.gate_up.a is None
    assert [s.completion_ids for s in got] == \
        [s.completion_ids for s in Sampler(model, peaked[1], fused_step=False).sample(prompts, **kw)[0]]


def test_with_compile_the_step_stays_off(lora):
    model, tokenizer = lora
    assert Sampler(model, tokenizer, fused_step=True, compile="eager").fused_step is False
