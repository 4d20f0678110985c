"""Every committed benchmark result is strict JSON: no bare NaN or Infinity, which no strict parser reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
FILES = sorted(RESULTS.glob("*.json")) + sorted(RESULTS.glob("*.jsonl"))


def refuse(constant: str):
    raise ValueError(f"non-standard JSON constant {constant}")


def test_there_are_results_to_check():
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_result_parses_as_strict_json(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        json.loads(text, parse_constant=refuse)
    else:
        for line in filter(str.strip, text.splitlines()):
            json.loads(line, parse_constant=refuse)


def test_a_bare_nan_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        json.loads('{"a": NaN}', parse_constant=refuse)
