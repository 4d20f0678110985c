"""The on-device sampler against the reference path (`sample_chains`, i.e. model.generate) and a plain forward.

Tiny random models (peaked logits, so greedy text depends on the prompt) with and without a LoRA
adapter; the embedded SmolLM2 in one slow test. Run: pytest -q tests/test_sampler.py
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rcsd_core.contracts.messages import encode_messages
from rcsd_core.modeling.batching import pack_batch
from rcsd_core.modeling.contexts import student_messages
from rcsd_core.modeling.adapters import DecodingAdapters
from rcsd_core.modeling.attention import attention_implementation, folded_attention, grouped_attention
from rcsd_core.modeling.generation import sample_chains
from rcsd_core.modeling.sampler import (Decoder, Sampler, Shape, pick_tokens, sample_chains_on_device,
                                        static_sampling_supported, weights_key)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["What is 2 + 2?", "A much longer question about seven apples, three pears and a basket of figs?", "Hi"]


@pytest.fixture(scope="module")
def peaked(tiny):
    """(model, tokenizer): a tiny random model with peaked logits, so greedy text depends on the prompt."""
    from rcsd_core.modeling.models import build_tiny_random

    return build_tiny_random(tiny[1], seed=0, initializer_range=0.2).eval(), tiny[1]


def with_adapter(model, seed: int = 0):
    """A deep copy of `model` with a LoRA adapter whose B matrices are random (so the adapter changes logits)."""
    from rcsd_core.modeling.models import attach_lora, randomize_adapter

    lora = attach_lora(copy.deepcopy(model), rank=4)
    randomize_adapter(lora, std=0.05, seed=seed)
    return lora.eval()


def bf16_with_adapter(model, seed: int = 0):
    """`with_adapter` on a bf16 copy of `model` whose adapter stays float32, as a CPU round trains it."""
    lora = with_adapter(model, seed).to(torch.bfloat16)
    for name, p in lora.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    return lora


def scale_adapter(lora, factor: float, *, undo: bool = False) -> None:
    """Multiply the adapter's B matrices by `factor` in place, as an optimizer step updates weights
    (`undo`: divide them by it again)."""
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.div_(factor) if undo else p.mul_(factor)


@pytest.fixture(scope="module")
def prompts(tiny):
    ids = [encode_messages(tiny[1], student_messages(t)) for t in TEXTS]
    assert len({len(i) for i in ids}) == 3                     # different lengths, so padding matters
    return ids


def plain_logprobs(model, samples, pad_id: int) -> list[list[float]]:
    """log pi(token) of each completion token from one ordinary forward over [prompt + completion]."""
    batch = pack_batch([s.prompt_ids for s in samples], [s.completion_ids for s in samples], pad_id)
    batch = batch.to(next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=batch.ids, attention_mask=batch.attention, position_ids=batch.positions).logits
    C = batch.tokens.shape[1]
    logp = torch.log_softmax(logits[:, batch.start:batch.start + C].float(), -1)
    chosen = logp.gather(-1, batch.tokens.unsqueeze(-1)).squeeze(-1)
    return [chosen[i, :s.n_tokens].tolist() for i, s in enumerate(samples)]


def assert_logprobs_match(model, samples, pad_id: int, tolerance: float = 1e-5) -> None:
    expected = plain_logprobs(model, samples, pad_id)
    for s, want in zip(samples, expected):
        assert len(s.logprobs) == s.n_tokens
        assert torch.allclose(torch.tensor(s.logprobs), torch.tensor(want), atol=tolerance, rtol=0), \
            (s.prompt_index, s.sample_index, s.logprobs, want)


# ---------------------------------------------------------------------------- choosing tokens (pure)

def naive_pick(scores: torch.Tensor, u: float, temperature: float, top_p: float) -> int:
    """One row, in float64 and plain Python: nucleus by descending probability, then inverse CDF
    (over the vocabulary in its own order when top_p is 1: no sort needed then)."""
    probs = torch.softmax(scores.double() / temperature, -1).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i]) if top_p < 1 else range(len(probs))
    kept, mass = [], 0.0
    for i in order:
        if mass >= top_p:
            break
        kept.append(i)
        mass += probs[i]
    total = sum(probs[i] for i in kept)
    running = 0.0
    for i in kept:
        running += probs[i]
        if running > u * total:
            return i
    return kept[-1]


def test_pick_tokens_against_a_naive_reference():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 50, generator=generator) * 3
    uniforms = torch.rand(64, generator=generator)
    for temperature, top_p in [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5), (1.0, 1e-9)]:
        got = pick_tokens(scores, uniforms, torch.tensor(temperature), torch.tensor(top_p), greedy=False,
                          nucleus=top_p < 1)
        want = [naive_pick(scores[i], uniforms[i].item(), temperature, top_p) for i in range(64)]
        assert got.tolist() == want, (temperature, top_p)
    greedy = pick_tokens(scores, uniforms, torch.tensor(1.0), torch.tensor(1.0), greedy=True, nucleus=False)
    assert torch.equal(greedy, scores.argmax(-1))


def test_pick_tokens_never_draws_a_token_of_zero_probability():
    scores = torch.full((3, 6), float("-inf"))
    scores[:, 2] = 0.0
    scores[:, 4] = 0.0
    got = pick_tokens(scores, torch.tensor([0.0, 0.5, 0.999999]), torch.tensor(1.0), torch.tensor(1.0),
                      greedy=False, nucleus=False)
    assert got.tolist() == [2, 4, 4]


# ---------------------------------------------------------------------------- attention

def reference_attention(query, key, value, mask):
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return out.transpose(1, 2)


class LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten operation makes while active."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


@pytest.mark.parametrize("T", [1, 5])
def test_grouped_attention_equals_repeated_heads_and_never_repeats_the_cache(T):
    generator = torch.Generator().manual_seed(0)
    B, H, Hkv, L, D = 3, 6, 2, 40, 16
    query = torch.randn(B, H, T, D, generator=generator)
    key, value = torch.randn(B, Hkv, L, D, generator=generator), torch.randn(B, Hkv, L, D, generator=generator)
    mask = torch.rand(B, 1, T, L, generator=generator) > 0.3
    mask[..., 0] = True
    want = reference_attention(query, key, value, mask)
    with LargestOutput() as seen:
        got, _ = grouped_attention(torch.nn.Module(), query, key, value, mask)     # as it runs on this CPU
    assert torch.allclose(got, want, atol=1e-6)
    assert seen.numel < B * H * L * D            # no (B, H, L, D) copy of keys or values was made
    with LargestOutput() as seen:
        got = folded_attention(query, key, value, mask).transpose(1, 2)              # the path CUDA takes
    assert torch.allclose(got, want, atol=1e-6)
    assert seen.numel < B * H * L * D


# ---------------------------------------------------------------------------- against sample_chains

@pytest.mark.parametrize("share_prefix", [True, False])
def test_greedy_tokens_equal_sample_chains(peaked, prompts, share_prefix):
    model, tokenizer = peaked
    ref, _ = sample_chains(model, tokenizer, prompts, n=2, max_new_tokens=10, temperature=0, batch_size=4,
                           share_prefix=share_prefix)
    calls = []
    got, stats = sample_chains_on_device(model, tokenizer, prompts, n=2, max_new_tokens=10, temperature=0,
                                         batch_size=4, share_prefix=share_prefix,
                                         progress=lambda done, total: calls.append((done, total)))
    assert len({tuple(s.completion_ids) for s in ref}) == 3                      # the prompts lead to different text
    assert [(s.prompt_index, s.sample_index) for s in got] == [(s.prompt_index, s.sample_index) for s in ref]
    assert [s.completion_ids for s in got] == [s.completion_ids for s in ref]
    assert [s.text for s in got] == [s.text for s in ref]
    assert [s.prompt_ids for s in got] == [prompts[s.prompt_index] for s in got]
    assert calls == [(4, 6), (6, 6)]
    assert stats.tokens == sum(s.n_tokens for s in got) and stats.seconds > 0
    assert model.config._attn_implementation == "sdpa"                          # switched back after the call


def test_end_of_turn_inside_the_budget_ends_a_chain_as_generate_does(eos_as, peaked, prompts):
    model, tokenizer = peaked
    free, _ = sample_chains(model, tokenizer, prompts[:1], n=1, max_new_tokens=6, temperature=0)
    stop = free[0].completion_ids[3]                              # make the 4th greedy token the end-of-turn
    assert free[0].completion_ids.index(stop) == 3
    stopping = eos_as(tokenizer, stop)
    pair = [prompts[0], prompts[2]]
    ref, _ = sample_chains(model, stopping, pair, n=1, max_new_tokens=6, temperature=0)
    got, _ = Sampler(model, stopping).sample(pair, n=1, max_new_tokens=6, temperature=0)
    assert got[0].completion_ids == free[0].completion_ids[:4] and got[0].finished
    assert [s.completion_ids for s in got] == [s.completion_ids for s in ref]
    assert [s.finished for s in got] == [s.finished for s in ref]
    assert stop not in got[1].completion_ids[:-1]                 # the other row went on
    assert_logprobs_match(model, got, tokenizer.pad_token_id)


def test_min_new_tokens_holds_back_end_of_turn(eos_as, peaked, prompts):
    model, tokenizer = peaked
    free, _ = sample_chains(model, tokenizer, prompts[:1], n=1, max_new_tokens=4, temperature=0)
    stopping = eos_as(tokenizer, free[0].completion_ids[0])       # greedy would stop at once
    early, _ = Sampler(model, stopping).sample(prompts[:1], max_new_tokens=4, temperature=0)
    assert early[0].completion_ids == free[0].completion_ids[:1] and early[0].finished
    ref, _ = sample_chains(model, stopping, prompts[:1], max_new_tokens=6, temperature=0, min_new_tokens=3)
    held, _ = Sampler(model, stopping).sample(prompts[:1], max_new_tokens=6, temperature=0, min_new_tokens=3)
    assert stopping.eos_token_id not in held[0].completion_ids[:3] and held[0].n_tokens >= 3
    assert held[0].completion_ids == ref[0].completion_ids
    # sampled chains (cool enough that they would stop at once): none ends before min_new_tokens
    free, _ = Sampler(model, stopping).sample(prompts[:1], n=4, max_new_tokens=5, temperature=0.05, seed=0)
    assert any(s.finished and s.n_tokens < 4 for s in free)
    held, _ = Sampler(model, stopping).sample(prompts[:1], n=4, max_new_tokens=5, temperature=0.05, seed=0,
                                              min_new_tokens=4)
    assert all(stopping.eos_token_id not in s.completion_ids[:4] and s.n_tokens >= 4 for s in held)


def test_other_architectures_qwen3_runs_and_sliding_windows_are_refused(tokenizer, prompts):
    from transformers import AutoModelForCausalLM, MistralConfig, Qwen3Config

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=len(tokenizer), initializer_range=0.2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        qwen3 = AutoModelForCausalLM.from_config(Qwen3Config(head_dim=16, **small)).eval()   # head_dim != 32 / 4
        mistral = AutoModelForCausalLM.from_config(MistralConfig(sliding_window=4, **small)).eval()
    ref, _ = sample_chains(qwen3, tokenizer, prompts, max_new_tokens=6, temperature=0, batch_size=3)
    got, _ = Sampler(qwen3, tokenizer).sample(prompts, max_new_tokens=6, temperature=0, batch_size=3)
    assert [s.completion_ids for s in got] == [s.completion_ids for s in ref]
    assert_logprobs_match(qwen3, got, tokenizer.pad_token_id)
    with pytest.raises(NotImplementedError, match="sliding-window"):
        Sampler(mistral, tokenizer).sample(prompts, max_new_tokens=2)
    # what a round's `sampler: auto` asks before it picks the Sampler over generate
    assert static_sampling_supported(qwen3) and not static_sampling_supported(mistral)


# ---------------------------------------------------------------------------- seeds and log-probs

def test_same_seed_same_chains_other_seed_other_chains(peaked, prompts):
    model, tokenizer = peaked
    sampler = Sampler(model, tokenizer)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, _ = sampler.sample(prompts, n=2, max_new_tokens=6, seed=7, batch_size=4)
    b, _ = sampler.sample(prompts, n=2, max_new_tokens=6, seed=7, batch_size=4)
    c, _ = sampler.sample(prompts, n=2, max_new_tokens=6, seed=8, batch_size=4)
    assert [s.completion_ids for s in a] == [s.completion_ids for s in b]
    assert [s.logprobs for s in a] == [s.logprobs for s in b]
    assert [s.completion_ids for s in a] != [s.completion_ids for s in c]
    assert a[0].completion_ids != a[1].completion_ids              # samples of one prompt differ
    assert torch.equal(torch.random.get_rng_state(), before)       # the global generator is left alone
    nucleus, _ = sampler.sample(prompts, n=2, max_new_tokens=6, seed=7, batch_size=4, top_p=0.5)
    assert [s.completion_ids for s in nucleus] != [s.completion_ids for s in a]


@pytest.mark.parametrize("share_prefix", [True, False])
def test_logprobs_equal_a_plain_forward(peaked, prompts, share_prefix):
    model, tokenizer = peaked
    lora = with_adapter(model)
    samples, _ = Sampler(lora, tokenizer).sample(prompts, n=2, max_new_tokens=8, seed=1, batch_size=4,
                                                 temperature=0.8, top_p=0.95, share_prefix=share_prefix)
    assert_logprobs_match(lora, samples, tokenizer.pad_token_id)


def test_an_in_place_adapter_update_is_seen_by_the_next_call(peaked, prompts):
    model, tokenizer = peaked
    lora = with_adapter(model)
    sampler = Sampler(lora, tokenizer)
    before, _ = sampler.sample(prompts, n=1, max_new_tokens=8, temperature=0, batch_size=3)
    decoder = next(iter(sampler.decoders.values()))
    keys = decoder.cache.layers[0].keys.data_ptr()
    scale_adapter(lora, -3.0)
    after, _ = sampler.sample(prompts, n=1, max_new_tokens=8, temperature=0, batch_size=3)
    assert list(sampler.decoders.values()) == [decoder] and decoder.cache.layers[0].keys.data_ptr() == keys
    assert [s.logprobs for s in after] != [s.logprobs for s in before]
    assert_logprobs_match(lora, after, tokenizer.pad_token_id)
    ref, _ = sample_chains(lora, tokenizer, prompts, n=1, max_new_tokens=8, temperature=0, batch_size=3)
    assert [s.completion_ids for s in after] == [s.completion_ids for s in ref]
    assert not any(getattr(m, "merged", False) for m in lora.modules())   # the adapter stayed unmerged


def test_each_distinct_prompt_is_prefilled_once_for_its_samples(peaked, prompts):
    model, tokenizer = peaked
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    try:
        samples, _ = Sampler(model, tokenizer).sample(prompts, n=4, max_new_tokens=5, seed=2, batch_size=12)
    finally:
        hook.remove()
    prefills = [shape for shape in seen if shape[1] > 1 and shape[0] > 1]
    assert [rows for rows, _ in prefills] == [3]                        # 3 prompts, not 12 rows
    assert [rows for rows, width in seen if width == 1] == [12] * 4     # every decode step runs all 12 chains
    assert len({tuple(s.completion_ids) for s in samples}) > 3          # a prompt's samples still differ
    assert_logprobs_match(model, samples, tokenizer.pad_token_id)


def test_a_batch_of_another_width_replaces_the_decoder_and_draws_a_fresh_samplers_chains(peaked, prompts):
    model, tokenizer = peaked
    sampler = Sampler(model, tokenizer)
    sampler.sample(prompts, max_new_tokens=6, seed=4, batch_size=3)                    # the longest prompt in it
    wide = next(iter(sampler.decoders))
    short = [prompts[2], prompts[0], prompts[2]]
    again, _ = sampler.sample(short, max_new_tokens=6, seed=4, batch_size=3)
    fresh, _ = Sampler(model, tokenizer).sample(short, max_new_tokens=6, seed=4, batch_size=3)
    assert [s.width for s in sampler.decoders] == [len(prompts[0])] and wide.width == len(prompts[1])
    assert [s.completion_ids for s in again] == [s.completion_ids for s in fresh]   # no trace of the earlier width
    assert [s.logprobs for s in again] == [s.logprobs for s in fresh]


def test_kept_decoders_are_bounded_and_another_width_replaces_the_decoder_of_its_rows(peaked, prompts):
    # Each decoder holds a whole static cache: a round whose prompts change width from step to
    # step, with evaluations between, must not keep one per shape.
    from rcsd_core.modeling.sampler import KEEP_DECODERS

    model, tokenizer = peaked
    sampler = Sampler(model, tokenizer)
    sampler.sample([prompts[2]], n=2, max_new_tokens=4, temperature=0, batch_size=2)
    sampler.sample([prompts[1]], n=2, max_new_tokens=4, temperature=0, batch_size=2)    # wider, same rows
    assert [s.width for s in sampler.decoders] == [len(prompts[1])]
    for rows in (1, 3, 4, 5):
        sampler.sample(prompts[:1], n=rows, max_new_tokens=4, temperature=0, batch_size=rows)
        assert len(sampler.decoders) <= KEEP_DECODERS
    assert [s.rows for s in sampler.decoders] == [4, 5]                                  # the most recent kept


def test_weights_key_keeps_in_place_updates_and_changes_with_the_adapter_switches(peaked):
    # On CUDA the captured step is reused while this key holds, and captured again when it changes.
    lora = with_adapter(peaked[0])
    key = weights_key(lora)
    with torch.no_grad():
        next(p for n, p in lora.named_parameters() if "lora_A" in n).add_(1.0)
    assert weights_key(lora) == key                               # an optimizer step: same graph
    with lora.disable_adapter():
        assert weights_key(lora) != key                           # the frozen teacher: another graph
    assert weights_key(lora) == key


# ---------------------------------------------------------------------------- the decode step as one graph

def assert_one_step_traces_as_one_graph(lora, tokenizer) -> None:
    """One graph, no break, for a bare decode step on a decoder's buffers, the adapter run lean as
    a compiled sampler runs it (unpacked: oneDNN's packed products do not trace)."""
    decoder = Decoder(lora, Shape(rows=2, width=4, new_tokens=4), eos=tokenizer.eos_token_id,
                      pad=tokenizer.pad_token_id)
    lean = DecodingAdapters(lora, packed=False)
    assert len(lean) > 0
    with torch.no_grad(), attention_implementation(lora), lean.active():
        decoder.resume()
        explanation = torch._dynamo.explain(decoder.step)()
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons


def test_the_decode_step_traces_as_one_graph(peaked, prompts):
    model, tokenizer = peaked
    lora = with_adapter(model)
    eager, _ = Sampler(lora, tokenizer).sample(prompts, max_new_tokens=6, seed=3, top_p=0.9)
    traced, _ = Sampler(lora, tokenizer, compile="eager").sample(prompts, max_new_tokens=6, seed=3, top_p=0.9)
    assert [s.completion_ids for s in traced] == [s.completion_ids for s in eager]
    assert_one_step_traces_as_one_graph(lora, tokenizer)                     # and, explicitly


def test_a_compiled_sampler_takes_more_prompt_widths_than_torch_compiles_default_limit(peaked, tokenizer):
    # one compilation per decoder shape; torch.compile's default limit of 8 with fullgraph was an error
    from rcsd_core.modeling.sampler import COMPILED_SHAPES

    model, _ = peaked
    sampler = Sampler(model, tokenizer, compile="eager")
    widths = 10
    assert 8 < widths < COMPILED_SHAPES
    for words in range(1, widths + 1):
        samples, _ = sampler.sample([tokenizer.encode("apples " * words)], n=2, max_new_tokens=3, seed=words)
        assert len(samples) == 2


def test_a_bf16_decode_step_on_the_cpu_attention_path_traces_as_one_graph(peaked):
    # bf16 on a CPU takes attention.matmul_attention: it must trace without a break too
    model, tokenizer = peaked
    assert_one_step_traces_as_one_graph(with_adapter(copy.deepcopy(model).to(torch.bfloat16)), tokenizer)


def test_the_input_grad_hook_of_checkpointing_is_off_while_sampling_and_back_after(peaked, prompts):
    # gradient checkpointing on a peft model hooks the embeddings to set requires_grad on their
    # output; under torch.compile(fullgraph) on torch 2.11 that hook broke the decode step's graph
    from rcsd_core.modeling.models import enable_checkpointing

    model, tokenizer = peaked
    lora = with_adapter(model)
    enable_checkpointing(lora)
    embeddings = lora.get_input_embeddings()
    outputs = []
    probe = embeddings.register_forward_hook(lambda module, args, out: outputs.append(out.requires_grad))
    try:
        plain, _ = Sampler(lora, tokenizer).sample(prompts, max_new_tokens=4, seed=1)
        traced, _ = Sampler(lora, tokenizer, compile="eager").sample(prompts, max_new_tokens=4, seed=1)
        assert outputs and not any(outputs)                   # the hook did not run while sampling
    finally:
        probe.remove()
    assert [s.completion_ids for s in traced] == [s.completion_ids for s in plain]
    assert embeddings(torch.tensor([prompts[0]])).requires_grad   # the hook is back for training


def test_rehearsed_steps_leave_the_batch_where_it_was(peaked, prompts):
    # What CUDA-graph warm-up and capture do in the middle of a batch, checked here on a CPU: if a
    # buffer the step changes were not put back, the chains would come out shifted.
    model, tokenizer = peaked
    lora = with_adapter(model)
    plain, _ = Sampler(lora, tokenizer).sample(prompts, max_new_tokens=6, seed=5, batch_size=3)
    rehearsed = Sampler(lora, tokenizer)
    original = Decoder.decode

    def decode_after_rehearsal(self, **kw):
        self.rehearse(3)
        return original(self, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Decoder, "decode", decode_after_rehearsal)
        got, _ = rehearsed.sample(prompts, max_new_tokens=6, seed=5, batch_size=3)
    assert [s.completion_ids for s in got] == [s.completion_ids for s in plain]
    assert [s.logprobs for s in got] == [s.logprobs for s in plain]


# ---------------------------------------------------------------------------- the embedded model

@pytest.mark.slow
def test_embedded_model_greedy_tokens_and_logprobs():
    from rcsd_core.modeling.models import load_model

    model, tokenizer = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    texts = ["What is 12 times 7? Answer briefly.", "Name a colour.", "Write one sentence about the sea and ships."]
    ids = [encode_messages(tokenizer, student_messages(t)) for t in texts]
    ref, _ = sample_chains(model, tokenizer, ids, n=1, max_new_tokens=24, temperature=0, batch_size=3)
    got, _ = Sampler(model, tokenizer).sample(ids, n=1, max_new_tokens=24, temperature=0, batch_size=3)
    assert [s.completion_ids for s in got] == [s.completion_ids for s in ref]
    assert any(s.finished for s in got)                           # one chain ends with end-of-turn in the budget
    # Through 30 layers, fp32 forwards of other batch shapes differ by ~1e-5 themselves (measured
    # here: 1.1e-5 between batches of 8 and of 1): the sampler may differ by up to twice that floor.
    together = plain_logprobs(model, got, tokenizer.pad_token_id)
    alone = [plain_logprobs(model, [s], tokenizer.pad_token_id)[0] for s in got]
    floor = max(abs(a - b) for x, y in zip(together, alone) for a, b in zip(x, y))
    assert_logprobs_match(model, got, tokenizer.pad_token_id, tolerance=max(1e-5, 2 * floor))
