"""Programmatic checks: the exact semantics of DESIGN §2, one pure function per check type.

Each returns 1.0 (passes), 0.0 (fails) or None (unscored). User patterns run on the `regex`
engine with a time limit, so a catastrophic pattern scores None with a warning instead of
hanging a preview or a training step.

    >>> from rcsd_core.contracts.rubric import ContainsCheck
    >>> run_check(ContainsCheck(type="contains", terms=["Answer"]), "answer: 7")
    1.0
"""

from __future__ import annotations

import math
import unicodedata
import warnings

import regex

from rcsd_core.contracts.rubric import (AnswerMatchCheck, ContainsCheck, NotRegexCheck,
                              RegexCheck, compile_pattern)

REGEX_TIMEOUT_S = 1.0
_NUMBER = regex.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class CheckTimeout(UserWarning):
    """A user pattern ran past its time limit; the criterion stays unscored."""


def run_check(check, text: str, reference: str | None = None, *, timeout: float = REGEX_TIMEOUT_S) -> float | None:
    """Score one chain text with one programmatic check (judge checks are not handled here)."""
    kind = check.type
    if kind in ("regex", "not_regex"):
        found = _search(check, text, timeout)
        if found is None:
            return None
        return float(found) if kind == "regex" else float(not found)
    if kind == "contains":
        return check_contains(check, text)
    if kind == "max_words":
        return float(count_words(text) <= check.limit)
    if kind == "min_words":
        return float(count_words(text) >= check.limit)
    if kind == "answer_match":
        return check_answer_match(check, text, reference, timeout=timeout)
    if kind == "equations_true":
        return check_equations_true(text)
    raise ValueError(f"check type {kind!r} is not programmatic")


_EQUATION = regex.compile(r"(\d+)\s*([-+*/x×])\s*(\d+)\s*=\s*(\d+)")


def equations(text: str) -> list[tuple[int, str, int, int, bool]]:
    """Every "a op b = c" written with digits (as the arithmetic rubric's shows-equation sees them),
    with whether it is true; integer arithmetic, so division is exact (c·b == a)."""
    out = []
    for a, op, b, c in _EQUATION.findall(text):
        a, b, c = int(a), int(b), int(c)
        if op == "+":
            ok = a + b == c
        elif op == "-":
            ok = a - b == c
        elif op == "/":
            ok = b != 0 and c * b == a
        else:  # *, x, ×
            ok = a * b == c
        out.append((a, op, b, c, ok))
    return out


def check_equations_true(text: str) -> float | None:
    """1.0 when every equation the text writes is true, 0.0 when one is false, None when it writes none."""
    found = equations(text)
    return float(all(e[4] for e in found)) if found else None


def count_words(text: str) -> int:
    return len(text.split())


def check_contains(check: ContainsCheck, text: str) -> float:
    haystack = text if check.case_sensitive else text.casefold()
    terms = check.terms if check.case_sensitive else [t.casefold() for t in check.terms]
    hits = [t in haystack for t in terms]
    return float(any(hits) if check.mode == "any" else all(hits))


def check_answer_match(check: AnswerMatchCheck, text: str, reference: str | None, *,
                       timeout: float = REGEX_TIMEOUT_S) -> float | None:
    """The last match's group against the reference: numeric when both parse, else normalised text."""
    if reference is None:
        return None
    pattern = compile_pattern(check.pattern)
    try:
        matches = list(pattern.finditer(text, timeout=timeout))
    except TimeoutError:
        _warn_timeout(check.pattern, timeout)
        return None
    if not matches:
        return 0.0
    return float(answers_equal(matches[-1].group(1) or "", reference, check.tolerance))


def answers_equal(answer: str, reference: str, tolerance: float = 1e-6) -> bool:
    """DESIGN's equality: numbers within relative tolerance, else case-folded stripped text."""
    a, r = parse_number(answer), parse_number(reference)
    if a is not None and r is not None:
        return math.isclose(a, r, rel_tol=tolerance, abs_tol=0.0)
    return normalise_text(answer) == normalise_text(reference)


def parse_number(text: str) -> float | None:
    """A number after removing commas and one trailing period, or None ("1,234." -> 1234.0)."""
    cleaned = text.strip().replace(",", "")
    if cleaned.endswith("."):
        cleaned = cleaned[:-1]
    if not _NUMBER.fullmatch(cleaned):
        return None
    return float(cleaned)


def normalise_text(text: str) -> str:
    """Case-fold and strip surrounding whitespace and punctuation."""
    def is_edge(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch).startswith("P")

    start, end = 0, len(text)
    while start < end and is_edge(text[start]):
        start += 1
    while end > start and is_edge(text[end - 1]):
        end -= 1
    return text[start:end].casefold()


def _search(check: RegexCheck | NotRegexCheck, text: str, timeout: float) -> bool | None:
    pattern = compile_pattern(check.pattern, check.flags)
    try:
        return pattern.search(text, timeout=timeout) is not None
    except TimeoutError:
        _warn_timeout(check.pattern, timeout)
        return None


def _warn_timeout(pattern: str, timeout: float) -> None:
    warnings.warn(f"pattern {pattern!r} ran past its {timeout:g}s limit; criterion left unscored",
                  CheckTimeout, stacklevel=3)
