"""The on-device sampler with its CUDA graphs, against `generate` and a plain forward on the same GPU.

Skipped where torch sees no GPU (CI has none). On a GPU machine:

    pytest -q -m gpu tests/test_sampler_cuda.py

What a CPU cannot check: the decode step captured as a CUDA graph and replayed per token gives the
tokens of `generate` and the log-probs of a plain forward; an in-place adapter update (what an
optimizer step does) is seen by a replayed graph without capturing it again; a graph replay draws
the same chains as the eager step for the same seed; switching the adapter off captures another graph;
the fused step (`sampler_step: fused`) replayed as a graph gives generate's tokens and sees an update;
in bf16 the fused step runs each norm as one operation (torch's fused CUDA kernel) and each adapted
group as one product and an in-place sum.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rcsd_core.modeling.generation import sample_chains
from rcsd_core.modeling.sampler import Decoder, Sampler, Shape

from test_sampler import assert_logprobs_match, peaked, prompts, scale_adapter, with_adapter  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def on_gpu(peaked):
    """(lora model on the GPU, float32, no TF32; tokenizer): exact enough to compare tokens and log-probs."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model, tokenizer = peaked
    yield with_adapter(model).to("cuda"), tokenizer
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def captured(sampler: Sampler) -> int:
    return sum(len(d.graphs) for d in sampler.decoders.values())


def test_replayed_graph_gives_generates_tokens_and_a_plain_forwards_logprobs(on_gpu, prompts):
    lora, tokenizer = on_gpu
    sampler = Sampler(lora, tokenizer)
    got, _ = sampler.sample(prompts, n=2, max_new_tokens=12, temperature=0, batch_size=4)
    ref, _ = sample_chains(lora, tokenizer, prompts, n=2, max_new_tokens=12, temperature=0, batch_size=4)
    assert captured(sampler) == 1                          # one shape, greedy: one graph, replayed per token
    assert len({tuple(s.completion_ids) for s in ref}) == 3
    assert [s.completion_ids for s in got] == [s.completion_ids for s in ref]
    assert_logprobs_match(lora, got, tokenizer.pad_token_id, tolerance=1e-4)


def test_graph_replay_draws_the_eager_steps_chains(on_gpu, prompts):
    # The same decoder shape, buffers and uniforms; only the step's launch differs (replay or eager).
    lora, tokenizer = on_gpu
    kw = dict(n=4, max_new_tokens=12, temperature=0.9, top_p=0.95, seed=11, batch_size=8)
    sampler = Sampler(lora, tokenizer)
    graphed, _ = sampler.sample(prompts, **kw)
    assert captured(sampler) == 1
    original = Decoder.decode
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Decoder, "decode", lambda self, **options: original(self, **{**options, "graph": False}))
        eager, _ = Sampler(lora, tokenizer).sample(prompts, **kw)
    assert [s.completion_ids for s in graphed] == [s.completion_ids for s in eager]
    assert len({tuple(s.completion_ids) for s in graphed}) > 3          # sampled: the chains of a prompt differ
    assert torch.allclose(torch.tensor(sum((s.logprobs for s in graphed), [])),
                          torch.tensor(sum((s.logprobs for s in eager), [])), atol=1e-6, rtol=0)


def test_an_in_place_update_is_seen_by_the_replayed_graph_and_disabling_the_adapter_captures_another(
        on_gpu, prompts):
    lora, tokenizer = on_gpu
    sampler = Sampler(lora, tokenizer)
    before, _ = sampler.sample(prompts, max_new_tokens=10, temperature=0, batch_size=4)
    scale_adapter(lora, -3.0)
    try:
        after, _ = sampler.sample(prompts, max_new_tokens=10, temperature=0, batch_size=4)
        assert captured(sampler) == 1                      # the same graph, replayed on the updated weights
        assert [s.logprobs for s in after] != [s.logprobs for s in before]
        ref, _ = sample_chains(lora, tokenizer, prompts, max_new_tokens=10, temperature=0, batch_size=4)
        assert [s.completion_ids for s in after] == [s.completion_ids for s in ref]
        assert_logprobs_match(lora, after, tokenizer.pad_token_id, tolerance=1e-4)
        with lora.disable_adapter():
            base, _ = sampler.sample(prompts, max_new_tokens=10, temperature=0, batch_size=4)
            ref, _ = sample_chains(lora, tokenizer, prompts, max_new_tokens=10, temperature=0, batch_size=4)
        assert captured(sampler) == 2
        assert [s.completion_ids for s in base] == [s.completion_ids for s in ref]
    finally:
        scale_adapter(lora, -3.0, undo=True)


def test_the_fused_step_replayed_as_a_graph_gives_generates_tokens_and_sees_an_update(on_gpu, prompts):
    # `sampler_step: fused`: plain fused products over the frozen weights re-laid in place, the adapter's
    # stacked products in buffers filled at each call, so the captured graph sees the update.
    lora, tokenizer = on_gpu
    model = copy.deepcopy(lora)
    sampler = Sampler(model, tokenizer, fused_step=True)
    kw = dict(n=2, max_new_tokens=12, temperature=0, batch_size=4)
    got, _ = sampler.sample(prompts, **kw)
    ref, _ = sample_chains(model, tokenizer, prompts, **kw)
    assert all(d.llama is not None for d in sampler.decoders.values()) and captured(sampler) == 1
    assert [s.completion_ids for s in got] == [s.completion_ids for s in ref]
    assert_logprobs_match(model, got, tokenizer.pad_token_id, tolerance=1e-4)
    scale_adapter(model, -3.0)
    after, _ = sampler.sample(prompts, **kw)
    ref, _ = sample_chains(model, tokenizer, prompts, **kw)
    assert captured(sampler) == 1 and [s.logprobs for s in after] != [s.logprobs for s in got]
    assert [s.completion_ids for s in after] == [s.completion_ids for s in ref]


def test_in_bf16_the_fused_step_runs_a_norm_as_one_operation_and_a_group_as_two(on_gpu):
    from rcsd_core.modeling.adapters import DecodingAdapters
    from rcsd_core.modeling.attention import attention_implementation
    from rcsd_core.modeling.llama_step import LlamaStep
    from rcsd_core.modeling.operations import OperationCount

    lora, tokenizer = on_gpu
    model = copy.deepcopy(lora).to(torch.bfloat16)
    decoder = Decoder(model, Shape(rows=2, width=8, new_tokens=4), eos=tokenizer.eos_token_id,
                      pad=tokenizer.pad_token_id)
    lean = DecodingAdapters(model, packed=False)
    decoder.llama = LlamaStep(model, packed=False)
    assert decoder.llama.bind(lean)
    with torch.no_grad(), attention_implementation(model), lean.active():
        decoder.resume()
        with OperationCount() as ops:
            decoder.step()
    layers = len(decoder.llama.layers)
    assert ops.names["_fused_rms_norm.default"] == 2 * layers + 1 and "rsqrt.default" not in ops.names
    assert ops.names["addmm_.default"] == 4 * layers and "addmm.default" not in ops.names
