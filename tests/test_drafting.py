"""Rubric drafting: the parser copes with fenced YAML, JSON, bullet lines and junk; dedupes
near-duplicates; always keeps the raw reply; and drafting with a (tiny random) model runs end to end."""

from __future__ import annotations

import pytest

from rcsd_core.design.drafting import draft_rubric, parse_draft, slugify, strip_fences
from rcsd_core.contracts.rubric import Rubric

FENCED_YAML = """Sure! Here is a rubric for these problems:

```yaml
- title: Final answer line
  description: The answer ends with a line "Answer: <number>".
  weight: 3
- title: Shows the working
  description: The answer writes at least one equation with digits.
- title: Final answer line.
  description: The answer ends with a line "Answer: <number>"
  weight: 2
- title: Restates the rubric
  description: The answer talks about the grading criteria.
  weight: -2
```
Let me know if you need more."""


def test_fenced_yaml_is_parsed_slugified_weighted_and_deduplicated():
    result = parse_draft(FENCED_YAML, "Arithmetic Draft", "Word problems.")
    assert isinstance(result.rubric, Rubric) and result.rubric.name == "arithmetic-draft"
    assert [c.id for c in result.rubric.criteria] == ["final-answer-line", "shows-the-working", "restates-the-rubric"]
    weights = {c.id: c.weight for c in result.rubric.criteria}
    assert weights == {"final-answer-line": 3, "shows-the-working": 1.0, "restates-the-rubric": -2}
    assert [d["title"] for d in result.dropped] == ["Final answer line."]
    assert "near-duplicate of 'final-answer-line'" in result.dropped[0]["reason"]
    assert result.raw == FENCED_YAML and result.rubric.description == "Word problems."
    assert all(c.is_judged for c in result.rubric.criteria)  # drafted criteria are judged until checks are added


def test_json_in_prose_and_criteria_mapping():
    text = ('The criteria are [{"title": "Correct result", "description": "The number is right.", "weight": "5"}, '
            '{"name": "Units", "description": "States the unit.", "pitfall": false}] and that is all.')
    result = parse_draft(text, "x")
    assert [(c.id, c.weight) for c in result.rubric.criteria] == [("correct-result", 5.0), ("units", 1.0)]
    mapping = parse_draft('{"criteria": [{"title": "Avoid jargon", "description": "Uses jargon."}]}', "x")
    assert mapping.rubric.criteria[0].weight == -1.0  # an "Avoid ..." title makes a pitfall


def test_bullet_lines_fallback_and_colliding_ids():
    text = "1. **Clarity**: The answer is easy to follow.\n2. Clarity: The steps are in a sensible order!\n" \
           "* Brevity – at most 60 words.\nrandom line"
    result = parse_draft(text, "x")
    assert [c.id for c in result.rubric.criteria] == ["clarity", "clarity-2", "brevity"]
    assert result.rubric.criteria[1].title == "Clarity"


def test_bad_check_is_dropped_but_criterion_kept():
    text = "- title: Ends with answer\n  description: ends right\n  check: {type: regex, pattern: '('}\n" \
           "- title: Has steps\n  description: shows steps\n  check: {type: contains, terms: [step]}"
    result = parse_draft(text, "x")
    first, second = result.rubric.criteria
    assert first.check is None and second.check.type == "contains"
    assert any("invalid check dropped" in e for e in result.errors)


@pytest.mark.parametrize("junk", ["", "I think a good answer is correct and clear.", "```\n\n```",
                                  "- 42\n- true", "[1, 2, 3]", "{{{ not yaml"])
def test_junk_gives_no_rubric_and_keeps_raw(junk):
    result = parse_draft(junk, "x")
    assert result.rubric is None and result.raw == junk and result.errors
    assert "no criteria found" in result.errors[0] or "no usable criterion" in result.errors[0]


def test_invalid_name_is_reported_not_raised():
    result = parse_draft("- title: A\n  description: b", "!!!")
    assert result.rubric is not None and result.rubric.name == "criterion"  # slugified fallback, still valid
    assert slugify("Réponse finale (ligne)") == "reponse-finale-ligne"
    assert strip_fences("```json\n[1]\n```") == "[1]"


def test_draft_with_tiny_random_model_keeps_raw_and_explains():
    from rcsd_core.modeling.models import load_model

    model, tokenizer = load_model("tiny-random")
    result = draft_rubric(model, tokenizer, description="Solve arithmetic word problems.",
                          prompts=["What is 2 + 2?"], references=["4"], name="draft", max_new_tokens=12)
    assert result.raw  # random tokens: no rubric, but the raw reply and a reason are kept
    assert result.rubric is None or isinstance(result.rubric, Rubric)
    assert any("cut at 12 tokens" in e for e in result.errors) or result.rubric is not None
