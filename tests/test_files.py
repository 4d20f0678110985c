"""File helpers: strict UTF-8, size limits, atomic writes, JSONL with partial tails."""

from __future__ import annotations

import os

import pytest

from rcsd_core.errors import InputError
from rcsd_core.files import append_jsonl, atomic_write_text, read_jsonl, read_text, write_jsonl


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
