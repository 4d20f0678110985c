"""Guidance map: per-token divergence equal to the losses' own, aligned to the right positions;
HTML that escapes model text with one span per token; strongest positions are the maxima."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import torch

from rcsd_core.contracts.messages import encode_messages
from rcsd_core.modeling.contexts import student_messages, teacher_messages
from rcsd_core.design.guidance import (GuidanceMap, build_tokens, guidance_map, heat_colour, render_html,
                                strongest_positions, token_divergences, token_texts, top_tokens)
from rcsd_core.modeling.losses import divergence_per_token
from rcsd_core.modeling.models import load_model
from rcsd_core.contracts.rubric import load_rubric
from rcsd_core.contracts.tasks import Task

RUBRIC = Path(__file__).resolve().parent.parent / "sample_rubrics" / "arithmetic.yaml"
TASK = Task(id="t1", prompt="Ann has 4 pens and gets 3 more. How many pens?", reference="7")
CHAIN = "4 + 3 = 7 <b>pens</b> & more\nAnswer: 7"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


@pytest.mark.parametrize("name,params", [("forward_kl", {}), ("jsd", {"beta": 0.3}), ("reverse_kl", {})])
def test_token_divergences_equal_losses_per_token(name, params):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 50, generator=g), torch.randn(7, 50, generator=g) * 2
    got = token_divergences(s, t, divergence=name, **params)
    want = divergence_per_token(name, s[None], t[None], torch.ones(1, 7, dtype=torch.bool), **params)[0]
    assert got.shape == (7,) and torch.allclose(got, want)
    if name == "forward_kl":  # and against a naive reference
        p_t, log_s = torch.softmax(t, -1), torch.log_softmax(s, -1)
        naive = (p_t * (p_t.log() - log_s)).sum(-1)
        assert torch.allclose(got, naive, atol=1e-5)


def test_top_tokens_and_strongest_positions():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    probs, ids = top_tokens(logits, 2)
    assert ids.tolist() == [[1, 2], [0, 1]] and probs[0, 0] > probs[0, 1]
    assert strongest_positions([0.1, 0.9, 0.5, 0.9], 3) == [1, 3, 2]
    assert heat_colour(0.0, 1.0).endswith(" 0.000)") and heat_colour(2.0, 1.0) == heat_colour(1.0, 1.0)


def test_guidance_map_aligns_with_direct_forwards(tiny):
    model, tokenizer = tiny
    rubric = load_rubric(RUBRIC)
    gmap = guidance_map(model, tokenizer, rubric, TASK, CHAIN, top_k=3)
    ids = tokenizer.encode(CHAIN, add_special_tokens=False)
    assert [t["token_id"] for t in gmap.tokens] == ids
    assert "".join(t["text"] for t in gmap.tokens) == CHAIN
    s_prompt = encode_messages(tokenizer, student_messages(TASK.prompt))
    t_prompt = encode_messages(tokenizer, teacher_messages(TASK.prompt, rubric, include_reference=False))
    with torch.no_grad():
        s = model(input_ids=torch.tensor([s_prompt + ids])).logits[:, len(s_prompt) - 1:-1]
        t = model(input_ids=torch.tensor([t_prompt + ids])).logits[:, len(t_prompt) - 1:-1]
    want = divergence_per_token("forward_kl", s, t)[0]
    got = torch.tensor([row["divergence"] for row in gmap.tokens])
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    p_student = torch.softmax(s[0].float(), -1)[torch.arange(len(ids)), torch.tensor(ids)]
    assert torch.allclose(torch.tensor([row["student_p"] for row in gmap.tokens]), p_student, rtol=1e-4)
    assert all(len(row["teacher_top"]) == 3 for row in gmap.tokens)
    top = gmap.strongest(2)
    assert top[0]["divergence"] == max(got.tolist()) and top[0]["position"] == int(got.argmax())
    assert top[0]["divergence"] >= top[1]["divergence"]


def test_include_reference_changes_the_teacher(tiny):
    model, tokenizer = tiny
    rubric = load_rubric(RUBRIC)
    a = guidance_map(model, tokenizer, rubric, TASK, "Answer: 7")
    b = guidance_map(model, tokenizer, rubric, TASK, "Answer: 7", include_reference=True)
    assert [r["divergence"] for r in a.tokens] != [r["divergence"] for r in b.tokens]


def test_html_escapes_text_and_has_one_span_per_token(tiny):
    model, tokenizer = tiny
    gmap = guidance_map(model, tokenizer, load_rubric(RUBRIC), TASK, CHAIN)
    page = gmap.to_html()
    assert len(re.findall(r'<span class="rcsd-tok"', page)) == len(gmap.tokens)
    assert "<b>pens</b>" not in page and "&lt;" in page and "&amp;" in page
    spans = re.findall(r'<span class="rcsd-tok"[^>]*>(.*?)</span>', page)
    assert html.unescape("".join(spans).replace("↵<br>", "\n")) == CHAIN  # the text, escaped, token by token
    assert "Strongest positions" in page and page.count("<tr>") == 1 + min(10, len(gmap.tokens))


def test_render_html_escapes_teacher_tokens_in_titles():
    rows = [{"text": '"q"', "divergence": 1.0, "student_p": 0.1, "teacher_p": 0.2,
             "teacher_top": [("<script>", 0.5)], "student_top": []},
            {"text": "ok", "divergence": 0.0, "student_p": 0.5, "teacher_p": 0.5, "teacher_top": [], "student_top": []}]
    page = render_html(rows, strongest=1)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert GuidanceMap(rows).strongest(1)[0]["text"] == '"q"'


def test_token_texts_survive_multibyte_characters(tiny):
    _, tokenizer = tiny
    text = "naïve café → 7 ✓"
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = token_texts(tokenizer, ids)
    assert len(pieces) == len(ids) and "".join(pieces) == text


def test_build_tokens_sampled_token_uses_the_log_ratio(tiny):
    _, tokenizer = tiny
    ids = tokenizer.encode("7", add_special_tokens=False) * 3
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, len(tokenizer), generator=g), torch.randn(3, len(tokenizer), generator=g)
    rows = build_tokens(tokenizer, ids, s, t, divergence="sampled_token", top_k=2)
    ratio = torch.log_softmax(s, -1)[:, ids[0]] - torch.log_softmax(t, -1)[:, ids[0]]
    assert torch.allclose(torch.tensor([r["divergence"] for r in rows]), ratio, atol=1e-5)
