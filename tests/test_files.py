"""File helpers: strict UTF-8, size limits, atomic writes, JSONL with partial tails."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from rcsd_core.errors import InputError
from rcsd_core.files import (MAX_YAML_DEPTH, append_jsonl, atomic_write_text, dump_yaml, parse_yaml,
                             parse_yaml_document, read_jsonl, read_text, write_jsonl)

ROOT = Path(__file__).resolve().parent.parent


def test_read_text_refuses_non_utf8_with_line(write_file):
    path = write_file("x.txt", b"ok\nstill ok\nbad \xff here\n")
    with pytest.raises(InputError) as info:
        read_text(path)
    assert info.value.line == 3 and "0xff" in info.value.message and info.value.source == str(path)


def test_read_text_size_limit(write_file):
    path = write_file("x.txt", "x" * 101)
    assert read_text(path, max_bytes=101) == "x" * 101
    with pytest.raises(InputError, match="101 bytes, above the 100-byte limit"):
        read_text(path, max_bytes=100)


def test_atomic_write_replaces_and_cleans_up(tmp_path, monkeypatch):
    path = atomic_write_text(tmp_path / "sub" / "f.txt", "one")
    assert path.read_text() == "one"
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("rename failed")))
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(path, "two")
    assert path.read_text() == "one"
    assert os.listdir(path.parent) == ["f.txt"]


def test_jsonl_round_trip_and_append(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"a": 1}, {"b": "é"}])
    append_jsonl(path, {"c": None})
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}, {"c": None}]
    assert "é" in path.read_text(encoding="utf-8")


def test_partial_tail_is_skipped_only_when_tolerated(write_file):
    path = write_file("m.jsonl", '{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(path, tolerate_partial_tail=True) == [{"step": 1}, {"step": 2}]
    with pytest.raises(InputError) as info:
        read_jsonl(path)
    assert info.value.line == 3
    # a bad line in the middle is an error even when tolerating a partial tail
    bad = write_file("n.jsonl", '{"step": 1}\n{oops}\n{"step": 3}\n')
    with pytest.raises(InputError, match="invalid JSON"):
        read_jsonl(bad, tolerate_partial_tail=True)


def test_tolerant_read_of_missing_file_is_empty(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", tolerate_partial_tail=True) == []


def test_deeply_nested_or_huge_json_lines_are_input_errors(write_file):
    for line in ("[" * 100_000 + "]" * 100_000, '{"id": ' + "9" * 5000 + "}"):
        with pytest.raises(InputError, match="unusable JSON value") as info:
            read_jsonl(write_file("t.jsonl", '{"id": "ok"}\n' + line + "\n"))
        assert info.value.line == 2


# ---------------------------------------------------------------------------- YAML

def alias_amplification(copies: int = 50_000) -> str:
    """One anchored 100-character string and thousands of aliases to it: ~200 KB of YAML that
    expands to megabytes (and, with nested lists of aliases, to gigabytes)."""
    return "word: &w " + "x" * 100 + "\nwords: [" + ", ".join(["*w"] * copies) + "]\n"


def test_aliases_are_refused_before_anything_expands():
    text = alias_amplification()
    assert 150_000 < len(text) < 250_000
    start = time.perf_counter()
    with pytest.raises(InputError, match="anchors and aliases") as info:
        parse_yaml(text, source="r.yaml")
    assert time.perf_counter() - start < 1.0
    assert info.value.source == "r.yaml" and info.value.line == 1
    with pytest.raises(InputError, match="anchors and aliases"):
        parse_yaml("a: &unused 1\n")            # an anchor alone is refused too: nothing needs one
    with pytest.raises(InputError, match="anchors and aliases"):
        parse_yaml("base: {x: 1}\nother:\n  <<: *base\n")


def test_yaml_size_is_capped_before_parsing():
    text = "a: " + "x" * 2000 + "\n"
    assert parse_yaml(text, max_bytes=len(text)) == {"a": "x" * 2000}
    start = time.perf_counter()
    with pytest.raises(InputError, match=f"{len(text) + 1:,} bytes, above the {len(text):,}-byte limit"):
        parse_yaml(text + " ", max_bytes=len(text))
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize("text,words", [
    ("a: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1), "nested more than"),
    ("[" * 5000 + "]" * 5000, "nest"),
    ("n: " + "9" * 5000, "unusable YAML value"),
    ("a: 1\n---\nb: 2\n", "malformed YAML"),
    ("a: !!python/object/apply:os.system ['true']", "malformed YAML"),
    ("a: [1, 2", "malformed YAML"),
    ("a: \x07", "malformed YAML"),
    ("? [1, 2]\n: x\n", "malformed YAML"),
])
def test_hostile_yaml_is_an_input_error(text, words):
    with pytest.raises(InputError, match=words):
        parse_yaml(text, source="x.yaml")


def test_yaml_document_gives_lines():
    data, node = parse_yaml_document("a: 1\nb:\n  c: 2\n")
    assert data == {"a": 1, "b": {"c": 2}} and node.value[1][0].start_mark.line == 1
    assert parse_yaml("") is None


@pytest.mark.parametrize("value", ["a\x85b", "a\u2028b", "a\u2029b", "a\r\nb", "a\rb", "trailing  ",
                                   "x\ntrailing \ny", "\n\nlead", "a\n", "tab\tend\t", "\x00\x1b",
                                   "é\x85\n", "- not a list", "yes", "1e3", "~"])
def test_dump_yaml_reads_back_exactly(value):
    data = {"text": value, "list": [value, {"k": value}]}
    assert parse_yaml(dump_yaml(data)) == data


def test_dump_yaml_never_writes_aliases():
    shared = ["a", "b"]
    assert parse_yaml(dump_yaml({"x": shared, "y": shared})) == {"x": shared, "y": shared}


def test_user_yaml_is_read_only_through_the_safe_helper():
    """No module but files.py calls a YAML loader itself, so every user YAML gets the bounds."""
    loader = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load|compose|compose_all|load_all|safe_load_all|"
                        r"parse)\b|SafeLoader\(")
    sources = [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "rcsd_core").rglob("*.py")]
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in sources
                 if path.name != "files.py" or path.parent.name != "rcsd_core"
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if loader.search(line)]
    assert offenders == []
