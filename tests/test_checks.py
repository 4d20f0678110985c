"""Every check type's exact semantics (DESIGN §2), edge cases, and the regex time limit."""

from __future__ import annotations

import time
import warnings

import pytest

from rcsd_core.scoring.checks import (CheckTimeout, answers_equal, count_words, normalise_text, parse_number,
                              run_check)
from rcsd_core.contracts.rubric import (AnswerMatchCheck, ContainsCheck, JudgeCheck, MaxWordsCheck, MinWordsCheck,
                              NotRegexCheck, PatternError, RegexCheck, compile_pattern)


def regex_check(pattern, flags=(), kind="regex"):
    cls = RegexCheck if kind == "regex" else NotRegexCheck
    return cls(type=kind, pattern=pattern, flags=list(flags))


# ---------------------------------------------------------------------------- regex / not_regex

@pytest.mark.parametrize("pattern, flags, text, expected", [
    ("Answer", [], "the Answer: 3", 1.0),
    ("answer", [], "the Answer: 3", 0.0),                       # case-sensitive by default
    ("answer", ["IGNORECASE"], "the Answer: 3", 1.0),
    ("^Answer", [], "work\nAnswer: 3", 0.0),                    # ^ is start of text without MULTILINE
    ("^Answer", ["MULTILINE"], "work\nAnswer: 3", 1.0),
    ("a.b", [], "a\nb", 0.0),                                   # . stops at newline without DOTALL
    ("a.b", ["DOTALL"], "a\nb", 1.0),
    ("^ANSWER.*3$", ["IGNORECASE", "MULTILINE"], "x\nanswer: 3\ny", 1.0),
    ("(?i)answer", [], "ANSWER", 1.0),                          # inline flags work too
    (r"\d+", [], "", 0.0),
    ("b", [], "abc", 1.0),                                      # search, not match: anywhere in the text
    (r"(?m)^Answer:\s*-?[\d,.]+\s*\Z", [], "2 + 2 = 4\nAnswer: 4\n", 1.0),
    (r"(?m)^Answer:\s*-?[\d,.]+\s*\Z", [], "Answer: 4\nThanks!", 0.0),
])
def test_regex_and_not_regex_are_complements(pattern, flags, text, expected):
    assert run_check(regex_check(pattern, flags), text) == expected
    assert run_check(regex_check(pattern, flags, kind="not_regex"), text) == 1.0 - expected


def test_catastrophic_regex_scores_none_with_warning_within_seconds():
    check = regex_check("(a|aa)+$")
    start = time.perf_counter()
    with pytest.warns(CheckTimeout, match="left unscored"):
        assert run_check(check, "a" * 60 + "b") is None
    assert time.perf_counter() - start < 5
    with pytest.warns(CheckTimeout):
        assert run_check(regex_check("(a|aa)+$", kind="not_regex"), "a" * 60 + "b", timeout=0.2) is None


def test_catastrophic_answer_pattern_scores_none():
    check = AnswerMatchCheck(type="answer_match", pattern="((?:a|aa)+)$")
    with pytest.warns(CheckTimeout):
        assert run_check(check, "a" * 60 + "b", "a", timeout=0.2) is None


@pytest.mark.parametrize("pattern", ["((a{100}){100}){100}", "(\\d{1000}){1000}", "a{1000000}"])
def test_compile_bombs_are_refused_before_compiling(pattern):
    """Matching has a time limit; compiling had none: these took ~0.4 s and ~300 MB each (x100 for
    one more level). compile_pattern, which every check and validator goes through, refuses first."""
    start = time.perf_counter()
    with pytest.raises(PatternError, match="repeats too much"):
        compile_pattern(pattern)
    with pytest.raises(ValueError, match="invalid regular expression"):
        regex_check(pattern)
    bypassed = RegexCheck.model_construct(type="regex", pattern=pattern, flags=[])   # skipped validation
    with pytest.raises(PatternError):
        run_check(bypassed, "aaaa")
    assert time.perf_counter() - start < 0.5


def test_compiled_patterns_are_cached():
    assert compile_pattern(r"\d+", ["IGNORECASE"]) is compile_pattern(r"\d+", ("IGNORECASE",))


def test_fast_pattern_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_check(regex_check("(a|aa)+$"), "aaaa") == 1.0


# ---------------------------------------------------------------------------- contains

@pytest.mark.parametrize("terms, mode, case, text, expected", [
    (["rubric", "criteria"], "any", False, "This meets the Criteria.", 1.0),
    (["rubric", "criteria"], "any", False, "nothing to see", 0.0),
    (["rubric", "criteria"], "all", False, "the RUBRIC and its criteria", 1.0),
    (["rubric", "criteria"], "all", False, "the rubric only", 0.0),
    (["Rubric"], "any", True, "the rubric", 0.0),
    (["Rubric"], "any", True, "the Rubric", 1.0),
    (["rub"], "any", False, "scrubbing", 1.0),                  # substring, not word
    (["STRASSE"], "any", False, "straße", 1.0),                # case-folded, not just lowered
    (["x"], "any", False, "", 0.0),
])
def test_contains(terms, mode, case, text, expected):
    check = ContainsCheck(type="contains", terms=terms, mode=mode, case_sensitive=case)
    assert run_check(check, text) == expected


def test_contains_defaults_are_any_and_case_insensitive():
    check = ContainsCheck(type="contains", terms=["a", "zzz"])
    assert (check.mode, check.case_sensitive) == ("any", False)
    assert run_check(check, "A") == 1.0


# ---------------------------------------------------------------------------- word counts

@pytest.mark.parametrize("text, words", [
    ("", 0), ("   \n\t ", 0), ("one", 1), ("one two", 2), ("one\ntwo\tthree   four", 4),
    ("2 + 2 = 4", 5), ("don't stop-me", 2),
])
def test_count_words_splits_on_whitespace(text, words):
    assert count_words(text) == words


def test_max_and_min_words_boundaries_are_inclusive():
    three = "one two three"
    assert run_check(MaxWordsCheck(type="max_words", limit=3), three) == 1.0
    assert run_check(MaxWordsCheck(type="max_words", limit=2), three) == 0.0
    assert run_check(MinWordsCheck(type="min_words", limit=3), three) == 1.0
    assert run_check(MinWordsCheck(type="min_words", limit=4), three) == 0.0
    assert run_check(MaxWordsCheck(type="max_words", limit=0), "") == 1.0
    assert run_check(MinWordsCheck(type="min_words", limit=0), "") == 1.0
    assert run_check(MinWordsCheck(type="min_words", limit=1), " \n ") == 0.0


# ---------------------------------------------------------------------------- answer_match

DEFAULT = AnswerMatchCheck(type="answer_match")


@pytest.mark.parametrize("text, reference, expected", [
    ("12 x 4 = 48\nAnswer: 48", "48", 1.0),
    ("Answer: 47", "48", 0.0),
    ("answer:48", "48", 1.0),                                   # case-insensitive, spacing optional
    ("  ANSWER :  48  ", "48", 1.0),
    ("Answer: 1,234", "1234", 1.0),                             # commas removed
    ("Answer: 1234", "1,234", 1.0),
    ("Answer: 48.", "48", 1.0),                                 # one trailing period removed
    ("Answer: 1,234.", "1234", 1.0),
    ("Answer: 48.0", "48", 1.0),                                # numerically equal
    ("Answer: 4.80e1", "48", 1.0),
    ("Answer: -7", "-7", 1.0),                                  # negative numbers
    ("Answer: -7", "7", 0.0),
    ("Answer: 7", "-7", 0.0),
    ("Answer: +7", "7", 1.0),
    ("Answer: .5", "0.5", 1.0),
    ("Answer: 0", "0", 1.0),
    ("Answer: 0.0000001", "0", 0.0),                            # tolerance is relative
    ("Answer: 48 apples", "48", 0.0),                           # not a number: compared as text
    ("Answer: Paris.", "paris", 1.0),                           # text: case-folded, punctuation stripped
    ("Answer: \"Paris\"", "Paris", 1.0),
    ("Answer: **Paris**!", " paris ", 1.0),
    ("Answer: New  York", "new york", 0.0),                     # inner whitespace is kept
    ("Answer: Lyon", "Paris", 0.0),
    ("Answer: 5\nAnswer: 7", "7", 1.0),                         # the last match wins
    ("Answer: 5\nAnswer: 7", "5", 0.0),
    ("Answer: 7\nmore working\nAnswer: 5", "5", 1.0),
    ("I think it is 48.", "48", 0.0),                           # reference but no match -> 0.0
    ("", "48", 0.0),
])
def test_answer_match_default_pattern(text, reference, expected):
    assert run_check(DEFAULT, text, reference) == expected


def test_answer_match_without_reference_is_unscored():
    assert run_check(DEFAULT, "Answer: 48", None) is None
    assert run_check(DEFAULT, "no answer at all", None) is None


def test_answer_match_tolerance_is_relative():
    loose = AnswerMatchCheck(type="answer_match", tolerance=0.01)
    assert run_check(loose, "Answer: 100.9", "100") == 1.0
    assert run_check(loose, "Answer: 101.1", "100") == 0.0
    assert run_check(loose, "Answer: 1000.9", "1000") == 1.0
    assert run_check(DEFAULT, "Answer: 1000000.5", "1000000") == 1.0   # 5e-7 relative, inside 1e-6
    assert run_check(DEFAULT, "Answer: 1.01", "1") == 0.0
    exact = AnswerMatchCheck(type="answer_match", tolerance=0)
    assert run_check(exact, "Answer: 1.0000001", "1") == 0.0
    assert run_check(exact, "Answer: 1.0", "1") == 1.0


def test_answer_match_custom_pattern_and_last_match():
    boxed = AnswerMatchCheck(type="answer_match", pattern=r"\\boxed\{([^}]*)\}")
    assert run_check(boxed, r"first \boxed{3} then \boxed{4}", "4") == 1.0
    assert run_check(boxed, r"first \boxed{3} then \boxed{4}", "3") == 0.0
    assert run_check(boxed, "Answer: 4", "4") == 0.0                   # the default pattern is not used
    assert run_check(boxed, r"\boxed{1,000.}", "1000") == 1.0
    optional = AnswerMatchCheck(type="answer_match", pattern=r"=\s*(\d+)?")
    assert run_check(optional, "x =", "5") == 0.0                       # group did not take part


@pytest.mark.parametrize("text, number", [
    ("48", 48.0), ("-3", -3.0), ("1,234", 1234.0), ("1,234.", 1234.0), (" 7. ", 7.0), ("2.5", 2.5),
    ("1e3", 1000.0), ("+4", 4.0), (".5", 0.5),
    ("seven", None), ("", None), (".", None), ("-", None), ("4/5", None), ("$5", None), ("5%", None),
    ("inf", None), ("nan", None), ("1 000", None),
])
def test_parse_number(text, number):
    assert parse_number(text) == number


def test_only_one_trailing_period_is_removed():
    # "7.." -> "7." is still a number; "7..." is not, and falls back to text (punctuation stripped)
    assert parse_number("7..") == 7.0
    assert parse_number("7...") is None
    assert answers_equal("7...", "7")


def test_normalise_text():
    assert normalise_text("  «Paris»!  ") == "paris"
    assert normalise_text("...") == ""
    assert normalise_text("Ünïcode") == "ünïcode"
    assert normalise_text("ß") == "ss"


def test_judge_check_is_not_programmatic():
    with pytest.raises(ValueError, match="not programmatic"):
        run_check(JudgeCheck(type="judge"), "text")
