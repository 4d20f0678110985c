"""Rubric YAML: validation messages (file, line, criterion, field), version, save/load, rendering."""

from __future__ import annotations

import os
import time

import pytest

from rcsd_core.modeling.contexts import render_rubric
from rcsd_core.errors import InputError
from rcsd_core.contracts.rubric import (MAX_CRITERIA, MAX_PATTERN_CHARS, MAX_RUBRIC_BYTES, PatternError, Rubric,
                                        check_pattern, dump_rubric, load_rubric, parse_rubric, rubric_errors,
                                        rubric_from_data, rubric_version, save_rubric)

BASE = """\
name: test-rubric
description: A test.
criteria:
  - id: first
    title: First
    description: Says hello.
    weight: 2
    check:
      type: contains
      terms: [hello]
  - id: second
    description: Short.
    weight: 1
"""


def error_of(text: str, name: str = "r.yaml") -> InputError:
    with pytest.raises(InputError) as info:
        parse_rubric(text, source=name)
    return info.value


def test_base_parses(samples_dir):
    rubric = parse_rubric(BASE)
    assert [c.id for c in rubric.criteria] == ["first", "second"]
    assert rubric.criteria[1].check is None and rubric.criteria[1].is_judged
    assert not rubric.criteria[0].is_judged


@pytest.mark.parametrize("domain", ["arithmetic", "science", "legal", "clinical"])
def test_sample_rubrics_load(samples_dir, domain):
    rubric = load_rubric(samples_dir / f"{domain}.yaml")
    assert 1 <= len(rubric.criteria) <= MAX_CRITERIA
    assert any(c.weight > 0 for c in rubric.criteria)


# ---------------------------------------------------------------------------- validation messages
# Each case: an edit of BASE, then the expected line, field and message fragment.

CASES = {
    "zero weight": (BASE.replace("weight: 2", "weight: 0"), 7, "criterion 'first'.weight", "non-zero"),
    "boolean weight": (BASE.replace("weight: 2", "weight: yes"), 7, "criterion 'first'.weight", "must be a number"),
    "string weight": (BASE.replace("weight: 2", "weight: '2'"), 7, "criterion 'first'.weight", "must be a number"),
    "nan weight": (BASE.replace("weight: 2", "weight: .nan"), 7, "criterion 'first'.weight", "finite"),
    "missing weight": (BASE.replace("    weight: 1\n", ""), 11, "criterion 'second'.weight", "Field required"),
    "missing description": (BASE.replace("    description: Short.\n", ""), 11, "criterion 'second'.description",
                            "Field required"),
    "bad id": (BASE.replace("id: second", "id: Second_One"), 11, "criterion 'Second_One'.id", "pattern"),
    "duplicate id": (BASE.replace("id: second", "id: first"), 11, "criterion 'first'.id", "duplicate criterion id"),
    "unknown check type": (BASE.replace("type: contains", "type: regexp"), 9, "criterion 'first'.check.type",
                           "unknown check type 'regexp'"),
    "invalid regex": (BASE.replace("type: contains\n      terms: [hello]", "type: regex\n      pattern: '(unclosed'"),
                      10, "criterion 'first'.check.pattern", "invalid regular expression '(unclosed'"),
    "missing pattern": (BASE.replace("type: contains\n      terms: [hello]", "type: regex"), 8,
                        "criterion 'first'.check.pattern", "Field required"),
    "bad flag": (BASE.replace("terms: [hello]", "terms: [hello]\n      mode: some"), 11,
                 "criterion 'first'.check.mode", "'any' or 'all'"),
    "unknown criterion key": (BASE.replace("    title: First\n", "    title: First\n    colour: red\n"), 6,
                              "criterion 'first'.colour", "unknown field"),
    "unknown check key": (BASE.replace("terms: [hello]", "terms: [hello]\n      case: true"), 11,
                          "criterion 'first'.check.case", "unknown field"),
    "unknown top-level key": (BASE + "rubric_version: 3\n", 14, "rubric_version", "unknown field"),
    "empty terms": (BASE.replace("terms: [hello]", "terms: []"), 10, "criterion 'first'.check.terms",
                    "at least 1"),
    "negative limit": (BASE.replace("type: contains\n      terms: [hello]", "type: max_words\n      limit: -1"), 10,
                       "criterion 'first'.check.limit", "greater than or equal to 0"),
    "fractional limit": (BASE.replace("type: contains\n      terms: [hello]", "type: max_words\n      limit: 2.5"), 10,
                         "criterion 'first'.check.limit", "integer"),
    "answer pattern without group": (BASE.replace("type: contains\n      terms: [hello]",
                                                  "type: answer_match\n      pattern: 'Answer: \\d+'"),
                                     10, "criterion 'first'.check.pattern", "exactly one capture group"),
    "duplicate key": (BASE.replace("    weight: 1\n", "    weight: 1\n    weight: 3\n"), 14,
                      "criterion 'second'.weight", "duplicate key"),
    "missing name": (BASE.replace("name: test-rubric\n", ""), 1, "name", "Field required"),
    "bad name": (BASE.replace("name: test-rubric", "name: Test Rubric"), 1, "name", "pattern"),
    "missing criteria": ("name: x\n", 1, "criteria", "Field required"),
    "no criteria": ("name: x\ncriteria: []\n", 2, "criteria", "at least 1"),
    "criterion not a mapping": ("name: x\ncriteria:\n  - just text\n", 3, "criteria[0]", "dictionary"),
    "example without answer": (BASE + "examples:\n  - prompt: Hi\n", 15, "examples.0.answer", "Field required"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_error_names_file_line_field(case):
    text, line, field, fragment = CASES[case]
    err = error_of(text)
    assert err.source == "r.yaml"
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert fragment in err.message, str(err)
    message = str(err)
    assert message.startswith(f"r.yaml:{line}: {field}: ")
    assert "\n" not in message and "Traceback" not in message


def test_more_than_fifty_criteria():
    rows = "".join(f"  - {{id: c{i}, description: d, weight: 1}}\n" for i in range(MAX_CRITERIA + 1))
    err = error_of("name: x\ncriteria:\n" + rows)
    assert (err.line, err.field) == (2, "criteria")
    assert "at most 50" in err.message
    parse_rubric("name: x\ncriteria:\n" + rows.rsplit("  - ", 1)[0])   # exactly 50 is fine


def test_malformed_yaml_names_line():
    err = error_of(BASE.replace("terms: [hello]", "terms: [hello"))
    assert err.message.startswith("malformed YAML")
    assert err.line is not None and err.line >= 10


def test_not_a_mapping():
    for text in ("", "- a\n- b\n", "just a string\n"):
        assert "must be a YAML mapping" in error_of(text).message


def test_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = BASE + f"extra: !!python/object/apply:os.system ['touch {marker}']\n"
    err = error_of(text)
    assert "malformed YAML" in err.message
    assert not marker.exists()


def test_alias_bomb_is_refused_fast():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for prev, name in zip("abcdefgh", "bcdefghi"):
        bomb += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
    err = error_of(bomb + BASE)
    assert "anchors and aliases" in err.message and err.line == 1


def test_alias_amplification_rubric_is_refused_fast_and_writes_nothing(write_file, tmp_path):
    """The issue's case: ~200 KB, one anchored string, thousands of aliases in a criterion's terms."""
    text = BASE.replace("terms: [hello]", "terms: [&t " + "hello" * 20 + ", " + ", ".join(["*t"] * 40_000) + "]")
    assert 150_000 < len(text) < 2**20
    path = write_file("bomb.yaml", text)
    start = time.perf_counter()
    with pytest.raises(InputError, match="anchors and aliases") as info:
        load_rubric(path)
    assert time.perf_counter() - start < 1.0
    assert info.value.line == 10 and info.value.source == str(path)   # the line of the anchor


# ---------------------------------------------------------------------------- patterns

BOMBS = ["((a{100}){100}){100}", "(?:(?:a{100}){100}){100}", "a{1000000}", "(a|b){200000}", "(ab){6000}",
         "((a{0,1000}){0,1000}){0,1000}", "[[](((a{100}){100}){100})", "x" * (MAX_PATTERN_CHARS + 1),
         "(" * 60 + "a" + ")" * 60,
         "(?#[)((a{100}){100}){100}",              # a comment holding a `[`: the bomb after it is live
         "(?x)# [\\n((a{100}){100}){100}"]         # verbose mode: `#` comments could hide text; refused


@pytest.mark.parametrize("pattern", BOMBS)
def test_compile_bombs_are_refused_naming_criterion_and_field(pattern):
    text = BASE.replace("type: contains\n      terms: [hello]", f"type: regex\n      pattern: '{pattern}'")
    start = time.perf_counter()
    err = error_of(text)
    assert time.perf_counter() - start < 0.5
    assert err.field == "criterion 'first'.check.pattern" and err.line is not None
    assert "invalid regular expression" in err.message
    assert any(words in err.message for words in ("repeats too much", "characters", "nests groups", "verbose"))


def test_compile_bombs_in_the_editor_and_in_answer_match():
    """The editor validates on every keystroke (rubric_errors): it must refuse as fast."""
    data = {"name": "x", "criteria": [{"id": "c", "description": "d", "weight": 1,
                                       "check": {"type": "answer_match", "pattern": "(((a{100}){100}){100})"}}]}
    start = time.perf_counter()
    rows = rubric_errors(data)
    assert time.perf_counter() - start < 0.5
    assert [(cid, field) for cid, field, _ in rows] == [("c", "check.pattern")]
    assert "repeats too much" in rows[0][2]


@pytest.mark.parametrize("pattern", [r"(?m)^Answer:\s*-?[\d,.]+\s*\Z", r"(?im)^\s*answer\s*:\s*(.+?)\s*$",
                                     r"\d{1,3}(,\d{3})*", r".{0,20000}", r"[{]{100}", r"a\{100000\}", r"(a|b){5000}",
                                     r"\p{L}{3}", r"(?:abc){e<=1}", r"x{,5}", r"[a\]{9}]"])
def test_ordinary_patterns_pass_the_static_check(pattern):
    check_pattern(pattern)


def test_sample_rubric_patterns_pass(samples_dir):
    for path in samples_dir.glob("*.yaml"):
        for c in load_rubric(path).criteria:
            if getattr(c.check, "pattern", None):
                check_pattern(c.check.pattern)


# ---------------------------------------------------------------------------- line separators

SEPARATED = ["a\x85b", "line\x85", "a\u2028b", "a\u2029b", "a\r\nb", "a\rb", "trailing  ", "x\ntrailing  \ny",
             "\x85\n\u2028", "é\x85\n", "  lead\nx", "tab\t\nend"]


@pytest.mark.parametrize("text", SEPARATED)
def test_line_separators_keep_the_version_across_dump_and_load(text, tmp_path):
    rubric = rubric_from_data({"name": "sep", "description": text,
                               "criteria": [{"id": "a", "title": text, "description": text, "weight": 1,
                                             "check": {"type": "contains", "terms": [text]}}],
                               "examples": [{"prompt": text, "answer": text}]})
    again = load_rubric(save_rubric(rubric, tmp_path / "r.yaml"))
    assert again.version == rubric.version and again == rubric


def test_a_rubric_too_large_to_load_back_is_not_saved(tmp_path):
    huge = rubric_from_data({"name": "big", "criteria": [{"id": "a", "description": "x" * MAX_RUBRIC_BYTES,
                                                          "weight": 1}]})
    with pytest.raises(InputError, match="above the 1,048,576-byte limit"):
        save_rubric(huge, tmp_path / "big.yaml")
    assert not (tmp_path / "big.yaml").exists()


def test_weights_and_tolerances_are_bounded():
    assert "weight must be between" in error_of(BASE.replace("weight: 2", "weight: 1.0e+300")).message
    err = error_of(BASE.replace("type: contains\n      terms: [hello]", "type: answer_match\n      tolerance: .inf"))
    assert err.field == "criterion 'first'.check.tolerance"


def test_several_problems_are_counted():
    err = error_of(BASE.replace("weight: 2", "weight: 0").replace("weight: 1", "weight: 0"))
    assert "(and 1 more problem)" in err.message


def test_rubric_errors_lists_every_problem():
    data = {"name": "x", "criteria": [{"id": "a", "description": "d", "weight": 0},
                                      {"id": "b", "description": "d", "weight": 1, "check": {"type": "nope"}}]}
    rows = rubric_errors(data)
    assert ("a", "weight", "weight must be a non-zero finite number") in rows
    assert any(cid == "b" and field == "check.type" and "unknown check type 'nope'" in msg for cid, field, msg in rows)
    assert rubric_errors({"name": "x", "criteria": [{"id": "a", "description": "d", "weight": 1}]}) == []


# ---------------------------------------------------------------------------- files

def test_load_names_the_file(write_file):
    path = write_file("bad.yaml", BASE.replace("weight: 2", "weight: 0"))
    with pytest.raises(InputError) as info:
        load_rubric(path)
    assert str(info.value).startswith(f"{path}:7: criterion 'first'.weight:")


def test_non_utf8_rubric(write_file):
    path = write_file("latin1.yaml", BASE.replace("Says hello.", "Says héllo.").encode("latin-1"))
    with pytest.raises(InputError) as info:
        load_rubric(path)
    assert info.value.line == 6 and "not UTF-8" in info.value.message and str(path) in str(info.value)


def test_utf8_bom_is_fine(write_file):
    assert load_rubric(write_file("bom.yaml", "\ufeff" + BASE)).name == "test-rubric"


def test_oversized_rubric(write_file):
    path = write_file("big.yaml", BASE + "# " + "x" * (2**20) + "\n")
    with pytest.raises(InputError, match="above the"):
        load_rubric(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_rubric(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------- version

def test_version_is_stable_across_yaml_formatting():
    reformatted = """\
# same content, other layout
criteria:
- {id: first, title: First, description: Says hello., weight: 2.0, check: {type: contains, terms: [hello], mode: any}}
- id: second
  weight: 1
  description: "Short."
description: 'A test.'
name: test-rubric
"""
    assert parse_rubric(BASE).version == parse_rubric(reformatted).version
    assert len(parse_rubric(BASE).version) == 12


@pytest.mark.parametrize("edit", [
    ("weight: 2", "weight: 3"), ("Says hello.", "Says hi."), ("terms: [hello]", "terms: [hello, hi]"),
    ("name: test-rubric", "name: other"), ("id: second", "id: third"),
])
def test_version_changes_with_content(edit):
    assert parse_rubric(BASE).version != parse_rubric(BASE.replace(*edit)).version


def test_version_depends_on_criterion_order():
    rubric = parse_rubric(BASE)
    swapped = Rubric.model_validate({**rubric.model_dump(), "criteria": rubric.model_dump()["criteria"][::-1]})
    assert rubric_version(swapped) != rubric.version


# ---------------------------------------------------------------------------- save

def test_save_load_round_trip(tmp_path, samples_dir):
    for domain in ("arithmetic", "science", "legal", "clinical"):
        rubric = load_rubric(samples_dir / f"{domain}.yaml")
        path = save_rubric(rubric, tmp_path / f"{domain}.yaml")
        again = load_rubric(path)
        assert again == rubric and again.version == rubric.version
        assert dump_rubric(again) == path.read_text(encoding="utf-8")   # a fixed point


def test_dump_is_readable_yaml(arith_rubric):
    text = dump_rubric(arith_rubric)
    assert text.startswith("name: grade-school-math\n")
    assert "weight: 3\n" in text and "weight: -2\n" in text          # integers stay integers
    assert "answer: |" in text or "answer: |-" in text                # multi-line text as a block
    assert "type: answer_match" in text


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.yaml"
    old = parse_rubric(BASE)
    save_rubric(old, path)
    before = path.read_bytes()

    def broken(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        save_rubric(parse_rubric(BASE.replace("weight: 2", "weight: 9")), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.yaml"]        # no temp file left behind


def test_rubric_is_immutable():
    rubric = parse_rubric(BASE)
    with pytest.raises(Exception):
        rubric.name = "changed"


# ---------------------------------------------------------------------------- rendering

def test_render_rubric_for_the_teacher(arith_rubric):
    text = render_rubric(arith_rubric)
    positives = [c for c in arith_rubric.trained if c.weight > 0]
    for c in arith_rubric.criteria:  # a held-out criterion is never shown to the teacher
        assert (c.description.strip() in text) == (not c.held_out)
    assert text.index(positives[-1].description.strip()) < text.index("It avoids these pitfalls:")
    assert "Worked example." in text and arith_rubric.examples[0].answer.strip() in text
    assert arith_rubric.examples[1].answer.strip() not in text        # one example by default
    assert "Worked example." not in render_rubric(arith_rubric, examples=0)
    assert "(weight 5)" in text and "weight -2" not in text            # pitfalls are listed without weight
