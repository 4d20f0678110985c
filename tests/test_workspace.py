"""The studio's workspace: seeding, immutable rubric versions, uploads refused cleanly, editor rows."""

from __future__ import annotations

import pytest

from rcsd_core.studio import workspace as ws
from rcsd_core.errors import InputError
from rcsd_core.contracts.rubric import load_rubric


@pytest.fixture()
def root(tmp_path):
    return ws.ensure_workspace(tmp_path / "ws")


def test_root_from_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("RCSD_HOME", str(tmp_path / "x"))
    assert ws.workspace_root() == (tmp_path / "x").resolve()
    monkeypatch.delenv("RCSD_HOME")
    assert ws.workspace_root().name == "rcsd-workspace"


def test_first_start_copies_samples_once(root):
    assert ws.list_rubrics(root) == ["clinical-question", "grade-school-math", "legal-issue-analysis",
                                     "science-explainer"]
    assert set(ws.list_task_sets(root)) == {"arithmetic", "clinical", "legal", "science"}
    assert ws.suggested_task_set(root, "grade-school-math") == "arithmetic"
    assert len(ws.load_task_set(root, "arithmetic", split="eval")) == 40
    # a second start does not re-seed (a deleted sample stays deleted)
    (root / "tasks" / "legal.jsonl").unlink()
    ws.ensure_workspace(root)
    assert "legal" not in ws.list_task_sets(root)


def test_versions_are_immutable_and_logged(root):
    rubric = ws.load_rubric_version(root, "grade-school-math")
    first = rubric.version
    path = ws.rubric_path(root, "grade-school-math", first)
    before = path.read_bytes()
    data = rubric.model_dump(mode="json")
    data["criteria"][3]["check"]["limit"] = 80
    edited = type(rubric).model_validate(data)
    second = ws.save_rubric_version(root, edited, note="longer")
    assert second != first and ws.current_version(root, "grade-school-math") == second
    assert path.read_bytes() == before                          # the old version is untouched
    assert load_rubric(ws.rubric_path(root, "grade-school-math", first)).version == first
    history = ws.rubric_versions(root, "grade-school-math")
    assert [h["version"] for h in history] == [first, second] and history[1]["parent"] == first
    assert ws.save_rubric_version(root, edited) == second          # same content: no new entry
    assert len(ws.rubric_versions(root, "grade-school-math")) == 2
    diff = ws.rubric_diff(root, "grade-school-math", first, second)
    assert "-    limit: 60" in diff and "+    limit: 80" in diff
    ws.set_current_version(root, "grade-school-math", first)
    assert ws.current_version(root, "grade-school-math") == first


def test_create_duplicate_and_names(root):
    ws.create_rubric(root, "mine", "for me")
    assert ws.load_rubric_version(root, "mine").criteria[0].id == "final-answer"
    ws.duplicate_rubric(root, "grade-school-math", "math-copy")
    assert len(ws.load_rubric_version(root, "math-copy").criteria) == 6
    with pytest.raises(InputError, match="already exists"):
        ws.duplicate_rubric(root, "grade-school-math", "mine")
    with pytest.raises(InputError, match="invalid rubric name"):
        ws.create_rubric(root, "../escape")
    with pytest.raises(InputError, match="no rubric named"):
        ws.current_version(root, "nope")


def test_uploads_refused_cleanly(root, monkeypatch):
    good = (ws.SAMPLES_DIR / "arithmetic.yaml").read_bytes()
    assert ws.import_rubric(root, good, "a.yaml").name == "grade-school-math"
    with pytest.raises(InputError, match="unknown check type") as exc:
        ws.import_rubric(root, good.replace(b"type: max_words", b"type: nope"), "bad.yaml")
    assert exc.value.source == "bad.yaml"
    with pytest.raises(InputError, match="not UTF-8"):
        ws.import_rubric(root, b"name: x\n\xff\n", "bin.yaml")
    monkeypatch.setattr(ws, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(InputError, match="above the 100-byte limit"):
        ws.import_rubric(root, good, "big.yaml")
    monkeypatch.undo()
    assert ws.import_task_set(root, b'{"id": "t1", "prompt": "2+2?", "reference": 4}\n', "mine.tasks.jsonl") == "mine"
    assert ws.load_task_set(root, "mine")[0].reference == "4"
    with pytest.raises(InputError) as exc:
        ws.import_task_set(root, b'{"id": "t1", "prompt": "a"}\n{"id": "t1", "prompt": "b"}\n', "dup.jsonl")
    assert exc.value.line == 2 and exc.value.source == "dup.jsonl"
    assert "dup" not in ws.list_task_sets(root)
    assert not list((root / "tasks").glob(".*"))                 # no staging file left behind


def test_chain_sets_get_unique_ids(root):
    records = [{"id": "t1:student:0", "task_id": "t1", "text": "x", "scores": {}, "total": None}]
    a = ws.save_chain_set(root, records, {"rubric": "grade-school-math"})
    b = ws.save_chain_set(root, records, {"rubric": "grade-school-math"})
    assert a != b
    assert ws.load_chain_set(root, a)[0]["id"] == f"{a}/t1:student:0"
    assert {m["id"] for m in ws.list_chain_sets(root)} == {a, b}
    assert ws.chain_set_meta(root, a)["chains"] == 1
    with pytest.raises(InputError):
        ws.load_chain_set(root, "../../etc/passwd")


def test_the_newest_report_and_chain_set_come_first_when_saved_within_one_second(root):
    """Ids sort by their time stamp: saves a few milliseconds apart must not sort by the random suffix."""
    import time

    records = [{"id": "t1:student:0", "task_id": "t1", "text": "x", "scores": {}, "total": None}]
    for i in range(5):
        ws.save_signal_report(root, {"rubric": "grade-school-math", "order": i})
        ws.save_chain_set(root, records, {"rubric": "grade-school-math", "order": i})
        time.sleep(0.002)
    assert ws.latest_signal_report(root, "grade-school-math")["order"] == 4
    assert [m["order"] for m in ws.list_chain_sets(root)] == [4, 3, 2, 1, 0]


def test_editor_rows_round_trip_and_row_problems(root):
    rubric = ws.load_rubric_version(root, "science-explainer")
    rows = ws.criteria_rows(rubric)
    data = ws.rubric_data_from_rows(rubric.name, rubric.description, rows,
                                    [e.model_dump() for e in rubric.examples])
    assert ws.row_problems(data) == []
    assert type(rubric).model_validate(data).version == rubric.version
    rows[1]["weight"] = 0
    rows[2]["check"] = "regex"
    rows[2]["pattern"] = "("
    rows[3]["id"] = rows[0]["id"]
    rows.append({"id": None, "title": None, "description": None, "weight": None})   # blank added row: ignored
    problems = ws.row_problems(ws.rubric_data_from_rows(rubric.name, "", rows))
    by_row = {p["row"]: p for p in problems}
    assert set(by_row) == {2, 3, 4}
    assert by_row[2]["field"] == "weight" and "non-zero" in by_row[2]["message"]
    assert "invalid regular expression" in by_row[3]["message"]
    assert "duplicate criterion id (first on row 1)" == by_row[4]["message"]


# ---------------------------------------------------------------------------- names


BAD_NAMES = ["ok\n", "a\x00b", "x" * 300, "../escape", ".hidden", "a/b", "", "é"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_one_name_validator_guards_every_create_import_and_lookup(root, name):
    from rcsd_core.contracts.config import config_from_data, resolve_paths
    from rcsd_core.contracts.runs import create_run

    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    calls = [
        lambda: ws.create_rubric(root, name),
        lambda: ws.duplicate_rubric(root, "grade-school-math", name),
        lambda: ws.current_version(root, name),
        lambda: ws.task_set_path(root, name),
        lambda: ws.load_chain_set(root, name),
        lambda: ws.chain_set_meta(root, name),
        lambda: ws.run_dir(root, name),
    ]
    if name:   # an empty run id means "make one up"
        config = resolve_paths(config_from_data({
            "model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml", "method": "rcsd", "steps": 1,
            "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "prompts_per_step": 1, "samples_per_prompt": 1,
            "max_new_tokens": 4, "seed": 0}))
        calls.append(lambda: create_run(config, ws.runs_root(root), run_id=name))
    for call in calls:
        with pytest.raises(InputError, match="invalid|required"):
            call()
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before   # nothing written


def test_derived_task_set_names_are_valid(root):
    assert ws.import_task_set(root, b'{"id": "t", "prompt": "p"}\n', "we ird\n name.jsonl") == "we-ird--name"
    assert ws.import_task_set(root, b'{"id": "t", "prompt": "p"}\n', "\x00.jsonl") == "tasks"
    with pytest.raises(InputError, match="cannot derive a task set name"):
        ws.import_task_set(root, b'{"id": "t", "prompt": "p"}\n', "x" * 300 + ".jsonl")


def test_a_stray_folder_with_a_bad_name_does_not_break_listings(root):
    (root / "rubrics" / "ok\n").mkdir()
    (root / "rubrics" / "ok\n" / "current").write_text("0123456789ab\n")
    (root / "tasks" / "bad name.jsonl").write_text('{"id": "t", "prompt": "p"}\n')
    assert "ok\n" not in ws.list_rubrics(root) and "bad name" not in ws.list_task_sets(root)
    for name in ws.list_rubrics(root):
        ws.load_rubric_version(root, name)


# ---------------------------------------------------------------------------- uploads


def test_an_existing_task_set_is_never_overwritten(root):
    first = b'{"id": "t1", "prompt": "2+2?", "reference": "4"}\n'
    assert ws.import_task_set(root, first, "mine.jsonl") == "mine"
    with pytest.raises(InputError, match="already exists with other content") as info:
        ws.import_task_set(root, b'{"id": "x", "prompt": "other"}\n', "mine.tasks.jsonl")
    assert info.value.source == "mine.tasks.jsonl"
    assert (root / "tasks" / "mine.jsonl").read_bytes() == first
    assert ws.import_task_set(root, first, "mine.jsonl") == "mine"          # the same content again: fine
    assert not list((root / "tasks").glob(".*"))


def test_the_rubric_upload_cap_is_the_rubric_load_cap(root):
    from rcsd_core.contracts.rubric import MAX_RUBRIC_BYTES
    from rcsd_core.files import MAX_INPUT_BYTES

    head = b"name: big\ncriteria:\n  - id: a\n    weight: 1\n    description: "
    fits = head + b"x" * (MAX_RUBRIC_BYTES - len(head) - 1) + b"\n"
    assert len(fits) == MAX_RUBRIC_BYTES
    rubric = ws.import_rubric(root, fits, "fits.yaml")
    assert ws.load_rubric_version(root, "big").version == rubric.version      # whatever is accepted reloads
    assert "big" in ws.list_rubrics(root)
    two_mb = head + b"x" * (2 * 2**20) + b"\n"
    with pytest.raises(InputError, match=f"above the {MAX_RUBRIC_BYTES:,}-byte limit"):
        ws.import_rubric(root, two_mb, "two-mb.yaml")
    assert ws.load_rubric_version(root, "big").version == rubric.version
    assert ws.MAX_UPLOAD_BYTES <= MAX_INPUT_BYTES                             # task sets: uploads load back too


def test_a_rubric_whose_yaml_would_not_load_back_is_not_saved(root):
    from rcsd_core.contracts.rubric import MAX_RUBRIC_BYTES, rubric_from_data

    # control characters are escaped when saved (\x01 -> "\x01"): the file would be 4x the text
    data = {"name": "grows", "criteria": [{"id": "a", "weight": 1, "description": "\x01" * (MAX_RUBRIC_BYTES // 2)}]}
    with pytest.raises(InputError, match="above the"):
        ws.save_rubric_version(root, rubric_from_data(data))
    assert "grows" not in ws.list_rubrics(root) and not (root / "rubrics" / "grows").exists()


def test_a_row_with_content_but_no_id_is_reported_at_its_table_position(root):
    rubric = ws.load_rubric_version(root, "science-explainer")
    rows = ws.criteria_rows(rubric)
    blank = {k: None for k in ws.EDITOR_COLUMNS} | {"check": "none (judge)", "case_sensitive": False}
    filled = dict(blank, description="Cites a source.", weight=2.0)         # the id left empty
    rows = rows[:1] + [blank] + rows[1:] + [filled]                          # an untouched row in between
    data = ws.rubric_data_from_rows(rubric.name, rubric.description, rows)
    assert len(data["criteria"]) == len(rubric.criteria) + 1               # kept, not dropped
    problems = ws.row_problems(data, ws.row_positions(rows))
    assert [(p["row"], p["field"]) for p in problems] == [(len(rows), "id")]
