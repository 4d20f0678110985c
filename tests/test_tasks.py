"""Tasks JSONL: loading, splits, numeric references, and errors naming file, line and field."""

from __future__ import annotations

import json

import pytest

from rcsd_core.errors import InputError
from rcsd_core.contracts.tasks import load_tasks


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def test_load_and_split(write_file):
    path = write_file("t.jsonl", jsonl({"id": "a", "prompt": "p", "reference": "1", "split": "train"},
                                       {"id": "b", "prompt": "q", "split": "eval"},
                                       {"id": "c", "prompt": "r"}))
    tasks = load_tasks(path)
    assert [t.id for t in tasks] == ["a", "b", "c"]
    assert tasks[0].reference == "1" and tasks[1].reference is None
    assert [t.id for t in load_tasks(path, split="eval")] == ["b"]
    assert [t.id for t in load_tasks(path, split="train")] == ["a", "c"]     # no split counts as train


def test_numeric_references_become_strings(write_file):
    path = write_file("t.jsonl", jsonl({"id": "a", "prompt": "p", "reference": 42},
                                       {"id": "b", "prompt": "p", "reference": -2.5},
                                       {"id": "c", "prompt": "p", "reference": None}))
    assert [t.reference for t in load_tasks(path)] == ["42", "-2.5", None]


def test_extra_fields_are_kept_and_blank_lines_skipped(write_file):
    path = write_file("t.jsonl", "\n" + jsonl({"id": "a", "prompt": "p", "topic": "sums"}) + "\n\n")
    (task,) = load_tasks(path)
    assert task.model_extra == {"topic": "sums"}


@pytest.mark.parametrize("content, line, field, fragment", [
    (jsonl({"id": "a", "prompt": "p"}, {"id": "a", "prompt": "q"}), 2, "id", "duplicate task id 'a' (first on line 1)"),
    (jsonl({"id": "a"}), 1, "prompt", "Field required"),
    (jsonl({"prompt": "p"}), 1, "id", "Field required"),
    (jsonl({"id": "a", "prompt": ""}), 1, "prompt", "at least 1 character"),
    (jsonl({"id": 7, "prompt": "p"}), 1, "id", "valid string"),
    (jsonl({"id": "a", "prompt": "p", "split": "test"}), 1, "split", "'train' or 'eval'"),
    (jsonl({"id": "a", "prompt": "p", "reference": True}), 1, "reference", "valid string"),
    (jsonl({"id": "a", "prompt": "p", "reference": ["1"]}), 1, "reference", "valid string"),
    (jsonl({"id": "a", "prompt": "p"}, '{"id": "b", "prompt": "q"'), 2, None, "invalid JSON"),
    (jsonl({"id": "a", "prompt": "p"}, "[1, 2]"), 2, None, "expected a JSON object, got list"),
])
def test_errors_name_file_line_field(write_file, content, line, field, fragment):
    path = write_file("tasks.jsonl", content)
    with pytest.raises(InputError) as info:
        load_tasks(path)
    err = info.value
    assert (err.source, err.line, err.field) == (str(path), line, field)
    assert fragment in err.message
    assert str(err).startswith(f"{path}:{line}: ")


def test_empty_file(write_file):
    for content in ("", "\n  \n"):
        with pytest.raises(InputError, match="no tasks in file"):
            load_tasks(write_file("empty.jsonl", content))


def test_non_utf8(write_file):
    path = write_file("t.jsonl", jsonl({"id": "a", "prompt": "p"}).encode() + '{"id": "b", "prompt": "é"}\n'.encode("latin-1"))
    with pytest.raises(InputError) as info:
        load_tasks(path)
    assert info.value.line == 2 and "not UTF-8" in info.value.message


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_tasks(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("domain", ["arithmetic", "science", "legal", "clinical"])
def test_sample_tasks(samples_dir, domain):
    tasks = load_tasks(samples_dir / f"{domain}.tasks.jsonl")
    assert len(tasks) >= 30
    assert {t.split for t in tasks} == {"train", "eval"}


def test_arithmetic_references_are_correct(arith_tasks):
    # the generated word problems carry their own numbers; every reference must be a whole number
    assert all(t.reference is not None and t.reference.lstrip("-").isdigit() for t in arith_tasks)
