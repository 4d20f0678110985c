"""Batched chain sampling on the tiny random model: shapes, seeds, end-of-turn, batched = unbatched."""

from __future__ import annotations

import copy

import pytest
import torch

from rcsd_core.contracts.messages import encode_messages
from rcsd_core.modeling.batching import left_pad
from rcsd_core.modeling.contexts import student_messages
from rcsd_core.modeling.generation import cut_at_eos, sample_chains

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def peaked(tiny):
    """(model, tokenizer): a tiny random model with peaked logits, so greedy text depends on the prompt."""
    from rcsd_core.modeling.models import build_tiny_random

    return build_tiny_random(tiny[1], seed=0, initializer_range=0.2).eval(), tiny[1]


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tokenizer = tiny
    texts = ["What is 2 + 2?", "A much longer question about seven apples, three pears and a basket of figs?", "Hi"]
    ids = [encode_messages(tokenizer, student_messages(t)) for t in texts]
    assert len({len(i) for i in ids}) == 3                     # different lengths, so padding matters
    return ids


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == mask.dtype == torch.long


def test_cut_at_eos():
    assert cut_at_eos([4, 5, 2, 2, 2], 2) == ([4, 5, 2], True)
    assert cut_at_eos([4, 5, 6], 2) == ([4, 5, 6], False)
    assert cut_at_eos([2], 2) == ([2], True)
    assert cut_at_eos([], 2) == ([], False)


def test_shapes_order_and_counts(tiny, prompts):
    model, tokenizer = tiny
    calls = []
    samples, stats = sample_chains(model, tokenizer, prompts, n=2, max_new_tokens=5, seed=0, batch_size=4,
                                   progress=lambda done, total: calls.append((done, total)))
    assert [(s.prompt_index, s.sample_index) for s in samples] == [(p, s) for p in range(3) for s in range(2)]
    assert calls == [(4, 6), (6, 6)]
    for s in samples:
        assert s.prompt_ids == prompts[s.prompt_index]
        assert 1 <= s.n_tokens <= 5 and s.n_tokens == len(s.completion_ids)
        assert s.finished == (s.completion_ids[-1] == tokenizer.eos_token_id)
        assert s.text == tokenizer.decode(s.completion_ids, skip_special_tokens=True)
    assert stats.tokens == sum(s.n_tokens for s in samples)
    assert stats.seconds > 0 and stats.tokens_per_s == pytest.approx(stats.tokens / stats.seconds)


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(tiny, prompts):
    model, tokenizer = tiny
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, _ = sample_chains(model, tokenizer, prompts[:2], n=2, max_new_tokens=6, seed=7)
    b, _ = sample_chains(model, tokenizer, prompts[:2], n=2, max_new_tokens=6, seed=7)
    c, _ = sample_chains(model, tokenizer, prompts[:2], n=2, max_new_tokens=6, seed=8)
    assert [s.completion_ids for s in a] == [s.completion_ids for s in b]
    assert [s.completion_ids for s in a] != [s.completion_ids for s in c]
    assert a[0].completion_ids != a[1].completion_ids            # samples of one prompt differ
    assert torch.equal(torch.random.get_rng_state(), before)


def test_batched_and_unbatched_greedy_give_the_same_text(peaked, prompts):
    model, tokenizer = peaked
    one, _ = sample_chains(model, tokenizer, prompts, n=1, max_new_tokens=8, temperature=0, batch_size=1,
                           share_prefix=False)
    many, _ = sample_chains(model, tokenizer, prompts, n=1, max_new_tokens=8, temperature=0, batch_size=3)
    assert len({tuple(s.completion_ids) for s in one}) == 3        # the prompts lead to different text
    assert [s.completion_ids for s in one] == [s.completion_ids for s in many]
    assert [s.text for s in one] == [s.text for s in many]


def test_shared_prefix_is_used_and_changes_nothing(peaked, prompts, monkeypatch):
    from rcsd_core.modeling import generation

    model, tokenizer = peaked
    assert generation.shared_prefix_length(prompts) >= generation.MIN_SHARED_PREFIX   # the template's system turn
    plain, _ = sample_chains(model, tokenizer, prompts, n=2, max_new_tokens=6, temperature=0, share_prefix=False)
    calls = []
    original = generation.PrefixCache.cache_for
    monkeypatch.setattr(generation.PrefixCache, "cache_for",
                        lambda self, prefix, rows: calls.append((len(prefix), rows)) or original(self, prefix, rows))
    shared, _ = sample_chains(model, tokenizer, prompts, n=2, max_new_tokens=6, temperature=0, batch_size=4)
    assert calls == [(generation.shared_prefix_length(prompts[:2]), 4),
                     (generation.shared_prefix_length([prompts[2], prompts[2]]), 2)]
    assert [s.completion_ids for s in shared] == [s.completion_ids for s in plain]


def test_shared_prefix_length():
    from rcsd_core.modeling.generation import shared_prefix_length

    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2          # each keeps one token of its own
    assert shared_prefix_length([[1], [1, 2]]) == 0
    assert shared_prefix_length([[7, 8, 9]]) == 2


def test_greedy_samples_of_one_prompt_are_identical(peaked, prompts):
    model, tokenizer = peaked
    samples, _ = sample_chains(model, tokenizer, prompts[:1], n=3, max_new_tokens=4, temperature=0, seed=0)
    assert samples[0].completion_ids == samples[1].completion_ids == samples[2].completion_ids


def test_stops_at_end_of_turn(eos_as, peaked, prompts):
    model, tokenizer = peaked
    free, _ = sample_chains(model, tokenizer, prompts[:1], n=1, max_new_tokens=6, temperature=0)
    ids = free[0].completion_ids
    stop = ids[3]                                                  # make the 4th greedy token the end-of-turn
    first = ids.index(stop)
    assert first == 3
    cut, _ = sample_chains(model, eos_as(tokenizer, stop), prompts[:1], n=1, max_new_tokens=6, temperature=0)
    assert cut[0].completion_ids == ids[:first + 1]
    assert cut[0].finished and cut[0].n_tokens == first + 1
    # in a batch, a finished row stops while the others go on
    both, _ = sample_chains(model, eos_as(tokenizer, stop), [prompts[0], prompts[2]], n=1, max_new_tokens=6,
                            temperature=0)
    assert both[0].completion_ids == ids[:first + 1]
    assert stop not in both[1].completion_ids[:-1]


def test_min_new_tokens_holds_back_end_of_turn(eos_as, peaked, prompts):
    model, tokenizer = peaked
    free, _ = sample_chains(model, tokenizer, prompts[:1], n=1, max_new_tokens=4, temperature=0)
    stop = free[0].completion_ids[0]
    held, _ = sample_chains(model, eos_as(tokenizer, stop), prompts[:1], n=1, max_new_tokens=4, temperature=0,
                            min_new_tokens=3)
    assert stop not in held[0].completion_ids[:3]
    assert held[0].n_tokens >= 3


def test_progress_every_reports_inside_a_batch_so_a_raise_stops_sampling_at_once(tiny):
    from rcsd_core.modeling.generation import sample_chains

    model, tokenizer = tiny
    prompts = [encode_messages(tokenizer, [{"role": "user", "content": "Count to ten."}])]
    calls = []
    _, _ = sample_chains(model, tokenizer, prompts, n=4, max_new_tokens=32, min_new_tokens=32, batch_size=4,
                         progress=lambda d, t: calls.append((d, t)), progress_every=8)
    assert calls == [(0, 4)] * 4 + [(4, 4)]           # every 8 of 32 decode steps, then the batch's end

    class Cancelled(Exception):
        pass

    def cancel_at_second_beat(done, total, seen=[]):
        seen.append(done)
        if len(seen) == 2:
            raise Cancelled
    with pytest.raises(Cancelled):
        sample_chains(model, tokenizer, prompts, n=4, max_new_tokens=32, min_new_tokens=32, batch_size=4,
                      progress=cancel_at_second_beat, progress_every=8)


def test_final_hidden_is_the_models_last_hidden_state_without_logits(tiny, monkeypatch):
    from rcsd_core.modeling.generation import final_hidden
    from rcsd_core.modeling.models import attach_lora

    model, _ = tiny
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    with torch.no_grad():
        want = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        assert torch.allclose(final_hidden(model, input_ids=ids), want, atol=1e-6)
        lora = attach_lora(copy.deepcopy(model), rank=2, alpha=4)                     # through peft, adapter at zero
        assert torch.allclose(final_hidden(lora, input_ids=ids), want, atol=1e-6)
        monkeypatch.setattr(type(model), "get_decoder", lambda self: (_ for _ in ()).throw(ValueError("none")))
        assert torch.allclose(final_hidden(model, input_ids=ids), want, atol=1e-6)   # the whole model, no logits
