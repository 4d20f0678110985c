"""Importers and exporters of the formats around the studio (rcsd_core/formats), on files written
from each format's documented fields (tests/fixtures/formats), never downloaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rcsd_core.cli import main
from rcsd_core.contracts.rubric import load_rubric, rubric_from_data
from rcsd_core.contracts.rubric_text import render_rubric
from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks, rubric_for_task
from rcsd_core.errors import InputError
from rcsd_core.formats.exports import export_records, load_reviews, write_export
from rcsd_core.formats.imports import import_source, sniff_format, write_import

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
HB = FIXTURES / "healthbench.jsonl"
RAR = FIXTURES / "rar.jsonl"
CSV = FIXTURES / "tasks.csv"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------- HealthBench

def test_healthbench_examples_become_tasks_with_their_own_criteria():
    result = import_source("healthbench", HB)
    dose, emergency, cold = result.tasks
    assert [t.id for t in result.tasks] == ["hb-dose-001", "hb-emergency-002", "hb-cold-003"]
    assert dose.criteria_mode == "replace"
    assert [c.weight for c in dose.criteria] == [7, 5, 3, -8]
    assert dose.criteria[3].is_pitfall and dose.criteria[3].check is None        # judged, like HealthBench's grader
    assert dose.criteria[2].tags == ["axis:context_awareness", "level:cluster", "cluster:emergency_referrals"]
    text = "Advises waiting at least 4 hours between doses of paracetamol."
    assert dose.criteria[0].id == "advises-waiting-at-least-4-hours-" + hashlib.sha256(text.encode()).hexdigest()[:6]
    assert dose.criteria[0].description == text
    assert dose.reference.startswith("Wait until at least 4 hours")
    assert dose.model_extra["example_tags"][0] == "theme:global_health"
    # a multi-turn conversation: a transcript as the prompt, the messages kept for the exporters
    assert emergency.prompt.startswith("System: You are a careful health assistant.\n\nUser: My father")
    assert [m["role"] for m in emergency.model_extra["messages"]] == ["system", "user", "assistant", "user"]
    assert emergency.reference is None                          # ideal_completions_data: null
    # the same criterion text twice in one rubric: still two ids, in order
    assert cold.criteria[1].id == cold.criteria[0].id + "-2"
    # stable: a second import gives the same ids
    assert [c.id for c in import_source("healthbench", HB).tasks[0].criteria] == [c.id for c in dose.criteria]
    assert sniff_format(HB) == "healthbench"


def test_healthbench_zero_points_names_line_and_field(tmp_path):
    rows = _lines(HB)
    rows[1]["rubrics"][2]["points"] = 0
    with pytest.raises(InputError) as exc:
        import_source("healthbench", _jsonl(tmp_path / "hb.jsonl", rows))
    assert exc.value.line == 2 and exc.value.field == "rubrics[2].points"


def test_import_cli_refuses_a_malformed_file_and_leaves_the_folder_untouched(tmp_path, capsys):
    rows = _lines(HB)
    del rows[2]["prompt_id"]
    bad = _jsonl(tmp_path / "hb.jsonl", rows)
    out = tmp_path / "imported"
    assert main(["import", "--format", "healthbench", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:3: prompt_id" in err
    assert not out.exists()
    # an existing folder keeps its files when the import fails
    out.mkdir()
    (out / "tasks.jsonl").write_text("old\n")
    assert main(["import", "--format", "healthbench", str(bad), "--out", str(out)]) == 2
    assert (out / "tasks.jsonl").read_text() == "old\n" and sorted(p.name for p in out.iterdir()) == ["tasks.jsonl"]


def test_import_cli_writes_tasks_and_a_minimal_valid_rubric(tmp_path):
    out = tmp_path / "hb"
    assert main(["import", "--format", "healthbench", str(HB), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["rubric.yaml", "tasks.jsonl"]
    tasks, rubric = load_tasks(out / "tasks.jsonl"), load_rubric(out / "rubric.yaml")
    check_task_rubrics(rubric, tasks)
    assert tasks == import_source("healthbench", HB).tasks
    # replace mode: the shared rubric is never scored for these tasks
    assert "answers-the-prompt" not in [c.id for c in rubric_for_task(rubric, tasks[0]).criteria]
    # a second import over the folder replaces both files (the format detected from the fields)
    assert main(["import", "--format", "detect", str(RAR), "--out", str(out)]) == 0
    assert len(load_tasks(out / "tasks.jsonl")) == 2 and load_rubric(out / "rubric.yaml").name == "rar"


# ---------------------------------------------------------------------------- RaR

def test_rar_weights_classes_and_the_labelled_string_form(tmp_path):
    ct, physics = import_source("rar", RAR).tasks
    assert ct.prompt.startswith("What is the most sensitive imaging modality")
    assert ct.reference == "A non-contrast helical CT scan of the abdomen and pelvis."
    assert [(c.weight, c.tags) for c in ct.criteria] == [
        (5, ["rar:essential"]), (3, ["rar:important"]), (1, ["rar:optional"]), (-2, ["rar:pitfall"])]
    assert ct.criteria[0].title == "Identifies the modality"
    assert ct.criteria[0].description.startswith("Essential Criteria: Identifies non-contrast")
    assert physics.id == "rar-physics-2"
    # a bare labelled string, a class written as the weight, a pitfall without a title
    assert [c.weight for c in physics.criteria] == [5, 3, -1]
    assert physics.criteria[0].title == "Uses 3 W as the visible power output."
    # the same examples from Parquet (rubric as a list of structs) give the same tasks
    rows = _lines(RAR)
    rows[1]["rubric"] = [{"title": None, "description": rows[1]["rubric"][0], "weight": None},
                         *[{"title": r.get("title"), "description": r["description"], "weight": r["weight"]}
                           for r in rows[1]["rubric"][1:]]]
    rows[1]["rubric"][2]["weight"] = -1
    rows[1]["rubric"][1]["weight"] = 3
    pq.write_table(pa.Table.from_pylist([{**r, "id": r.get("id")} for r in rows]), tmp_path / "rar.parquet")
    assert import_source("rar", tmp_path / "rar.parquet").tasks == [ct, physics]


def test_rar_missing_weight_without_a_class_names_the_criterion(tmp_path):
    rows = _lines(RAR)
    rows[0]["rubric"][1] = {"title": "x", "description": "Explains why."}
    with pytest.raises(InputError) as exc:
        import_source("rar", _jsonl(tmp_path / "rar.jsonl", rows))
    assert exc.value.line == 1 and exc.value.field == "rubric[1].weight"


# ---------------------------------------------------------------------------- CSV and Parquet task lists

def test_csv_task_list(tmp_path):
    tasks = import_source("csv", CSV).tasks
    assert [(t.id, t.reference, t.split) for t in tasks] == [("add-1", "7", "train"), ("sub-2", "8", "eval"),
                                                             ("free-3", None, None)]
    assert not any(t.criteria for t in tasks)
    frame = tmp_path / "tasks.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": t.id, "prompt": t.prompt, "reference": t.reference, "split": t.split}
                                         for t in tasks]), frame)
    assert import_source("parquet", frame).tasks == tasks


def test_task_list_missing_column_and_bad_row(tmp_path):
    (tmp_path / "a.csv").write_text("id,question\n1,hi\n", encoding="utf-8")
    with pytest.raises(InputError) as exc:
        import_source("csv", tmp_path / "a.csv")
    assert exc.value.field == "prompt" and "columns: id, question" in exc.value.message
    pq.write_table(pa.Table.from_pylist([{"id": "a", "prompt": "x", "split": "train"},
                                         {"id": "b", "prompt": "y", "split": "holdout"}]), tmp_path / "b.parquet")
    with pytest.raises(InputError) as exc:
        import_source("parquet", tmp_path / "b.parquet")
    assert exc.value.row == 2 and exc.value.field == "split" and "b.parquet: row 2: split:" in str(exc.value)


# ---------------------------------------------------------------------------- TRL

def test_trl_rows_of_every_kind_from_jsonl(tmp_path):
    rows = [{"prompt": "2 + 2?"},
            {"prompt": "2 + 2?", "completion": "4"},                                 # same task, another answer
            {"prompt": [{"role": "user", "content": "3 + 3?"}], "completion": [{"role": "assistant", "content": "6"}]},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "5 + 5?"},
                          {"role": "assistant", "content": "10"}]},
            {"prompt": [{"role": "user", "content": "7 + 7?"}], "privileged_context": "Answer: 14", "task_id": "p7"}]
    result = import_source("trl", _jsonl(tmp_path / "trl.jsonl", rows))
    prompts = [t.prompt for t in result.tasks]
    assert prompts == ["2 + 2?", "3 + 3?", "System: Be brief.\n\nUser: 5 + 5?", "7 + 7?"]
    assert result.tasks[2].model_extra["messages"] == rows[3]["messages"][:2]
    assert result.tasks[3].id == "p7" and result.tasks[3].model_extra["privileged_context"] == "Answer: 14"


def test_trl_from_a_saved_dataset_dict_takes_split_names(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "a?", "completion": "x"}]),
                               "test": datasets.Dataset.from_list([{"prompt": "b?", "completion": "y"}])})
    dd.save_to_disk(str(tmp_path / "ds"))
    tasks = import_source("trl", tmp_path / "ds").tasks
    assert [(t.prompt, t.split) for t in tasks] == [("a?", "train"), ("b?", "eval")]
    assert sniff_format(tmp_path / "ds") == "trl"


def test_trl_same_id_other_prompt_is_refused(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(InputError) as exc:
        import_source("trl", path)
    assert exc.value.line == 2 and "line 1" in exc.value.message


# ---------------------------------------------------------------------------- exports

SHARED = rubric_from_data({"name": "support", "criteria": [
    {"id": "polite", "description": "Thanks the customer.", "weight": 2, "check": {"type": "contains", "terms": ["thank"]}}]})


def _export_inputs():
    tasks = import_source("healthbench", HB).tasks[:2]
    chains = [{"id": "c1", "task_id": "hb-dose-001", "text": "Wait 4 hours."},
              {"id": "c2", "task_id": "hb-dose-001", "text": "Take two more now."},
              {"id": "c3", "task_id": "hb-emergency-002", "text": "Call emergency services now."}]
    reviews = {"c2": {"decision": "reject", "reviewer": "ana",
                      "verdicts": {tasks[0].criteria[3].id: 1.0, tasks[0].criteria[0].id: 0.0}}}
    return tasks, chains, reviews


def test_trl_exports_leave_rejected_chains_out(tmp_path):
    tasks, chains, reviews = _export_inputs()
    rows = export_records("trl-prompt-completion", chains, tasks=tasks, reviews=reviews)
    assert [r["id"] for r in rows] == ["c1", "c3"]
    assert rows[0]["prompt"] == tasks[0].prompt and rows[0]["completion"] == "Wait 4 hours."
    conv = export_records("trl-conversational", chains, tasks=tasks, reviews=reviews)
    assert [m["role"] for m in conv[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert conv[1]["messages"][-1] == {"role": "assistant", "content": "Call emergency services now."}
    write_export(tmp_path / "pc.parquet", rows)
    back = pq.read_table(tmp_path / "pc.parquet").to_pylist()
    assert [r["completion"] for r in back] == ["Wait 4 hours.", "Call emergency services now."]
    assert json.loads(back[0]["criteria"])[0]["weight"] == 7


def test_sdft_rows_carry_the_rendered_task_rubric():
    tasks = [*import_source("csv", CSV).tasks[:1],
             *load_tasks_from([{"id": "t9", "prompt": "Broken order.", "criteria": [
                 {"id": "offers-refund", "description": "Offers a refund.", "weight": 5}]}])]
    chains = [{"id": "a", "task_id": "add-1", "text": "7"}, {"id": "b", "task_id": "t9", "text": "Sorry"},
              {"id": "c", "task_id": "add-1", "text": "8"}]
    rows = export_records("sdft", chains, tasks=tasks, rubric=SHARED)
    assert [r["task_id"] for r in rows] == ["add-1", "t9"]
    assert rows[0]["prompt"] == [{"role": "user", "content": tasks[0].prompt}]
    assert rows[0]["privileged_context"] == render_rubric(SHARED)
    assert rows[1]["privileged_context"] == render_rubric(rubric_for_task(SHARED, tasks[1]))
    assert "Offers a refund." in rows[1]["privileged_context"] and "Thanks the customer." in rows[1]["privileged_context"]
    # an extend-mode task's row carries every criterion it is scored with, in replace mode
    assert [c["id"] for c in rows[1]["criteria"]] == ["polite", "offers-refund"] and rows[1]["criteria_mode"] == "replace"


def load_tasks_from(records):
    from rcsd_core.contracts.tasks import task_from_data

    return [task_from_data(r) for r in records]


def test_argilla_and_labelstudio_carry_automatic_and_human_verdicts():
    tasks, chains, reviews = _export_inputs()
    pitfall, first = tasks[0].criteria[3].id, tasks[0].criteria[0].id
    scores = {"c2": {"id": "c2", "scores": {first: 0.0, pitfall: 1.0, tasks[0].criteria[1].id: None}, "total": -8 / 15}}
    records = export_records("argilla", chains, tasks=tasks, scores=scores, reviews=reviews)
    c2 = records[1]
    assert c2["fields"] == {"prompt": tasks[0].prompt, "response": "Take two more now."}
    assert c2["suggestions"] == {first: {"value": "no", "score": None, "agent": "rcsd"},
                                 pitfall: {"value": "yes", "score": None, "agent": "rcsd"}}
    assert c2["responses"]["decision"] == [{"value": "reject", "user_id": "ana"}]
    assert c2["responses"][pitfall] == [{"value": "yes", "user_id": "ana"}]
    assert c2["metadata"]["total"] == pytest.approx(-8 / 15) and records[0]["responses"] == {}
    ls = export_records("labelstudio", chains, tasks=tasks, scores=scores, reviews=reviews)
    assert ls[1]["data"]["response"] == "Take two more now." and ls[1]["predictions"][0]["score"] == pytest.approx(-8 / 15)
    results = {r["from_name"]: r["value"]["choices"] for r in ls[1]["annotations"][0]["result"]}
    assert results == {pitfall: ["yes"], first: ["no"], "decision": ["reject"]}
    assert "annotations" not in ls[0] and ls[1]["data"]["reviewer"] == "ana"
    # the labeling config names one Choices control per criterion, matching the results' from_name
    from xml.etree import ElementTree

    from rcsd_core.formats.review_tools import labelstudio_config
    config = ElementTree.fromstring(labelstudio_config(tasks[0].criteria))
    assert [c.get("name") for c in config.iter("Choices")] == [c.id for c in tasks[0].criteria] + ["decision"]


def test_trl_rows_take_a_chains_own_scores_without_a_scores_file():
    tasks, chains, _ = _export_inputs()
    chains[0] = {**chains[0], "scores": {"x": 1.0}, "total": 0.5}
    rows = export_records("trl-prompt-completion", chains, tasks=tasks)
    assert (rows[0]["total"], rows[0]["scores"]) == (0.5, {"x": 1.0}) and "total" not in rows[1]


def test_export_cli_reads_the_review_pages_export(tmp_path, capsys):
    tasks, chains, _ = _export_inputs()
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(t.model_dump(mode="json", exclude_none=True)) + "\n"
                                              for t in tasks))
    _jsonl(tmp_path / "c.jsonl", chains)
    _jsonl(tmp_path / "r.jsonl", [{"id": "c2", "chain_id": "c2", "criterion_scores": {},
                                   "review": {"decision": "accept", "reviewer": "ben", "verdicts": {}}},
                                  {"id": "c2", "chain_id": "c2", "criterion_scores": {},
                                   "review": {"decision": "reject", "reviewer": "ana", "verdicts": {}}}])
    assert load_reviews(tmp_path / "r.jsonl")["c2"]["decision"] == "reject"      # the latest line wins
    out = tmp_path / "out.jsonl"
    assert main(["export", "--format", "trl-conversational", "--chains", str(tmp_path / "c.jsonl"),
                 "--tasks", str(tmp_path / "t.jsonl"), "--reviews", str(tmp_path / "r.jsonl"), "--out", str(out)]) == 0
    assert [r["id"] for r in _lines(out)] == ["c1", "c3"]
    assert "1 rejected chains left out" in capsys.readouterr().err
    # a chain whose task is unknown: exit 2, one line, no file
    _jsonl(tmp_path / "c2.jsonl", [{"id": "x", "task_id": "nope", "text": "hi"}])
    assert main(["export", "--format", "sdft", "--chains", str(tmp_path / "c2.jsonl"), "--tasks",
                 str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "task_id" in capsys.readouterr().err and not (tmp_path / "s.jsonl").exists()
    assert main(["export", "--format", "argilla", "--chains", str(tmp_path / "c.jsonl"), "--tasks",
                 str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "a.parquet")]) == 2


def test_exported_files_are_what_trl_reads(tmp_path, tokenizer):
    """TRL's own helpers recognise the exports: datasets loads them, the chat template applies."""
    import datasets
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    tasks, chains, reviews = _export_inputs()
    write_export(tmp_path / "pc.parquet", export_records("trl-prompt-completion", chains, tasks=tasks))
    write_export(tmp_path / "conv.jsonl", export_records("trl-conversational", chains, tasks=tasks))
    write_export(tmp_path / "sdft.parquet", export_records("sdft", chains, tasks=tasks))
    pc = datasets.Dataset.from_parquet(str(tmp_path / "pc.parquet"))
    assert not is_conversational(pc[0]) and pc[0]["completion"] == "Wait 4 hours."
    conv = datasets.load_dataset("json", data_files=str(tmp_path / "conv.jsonl"), split="train")
    assert is_conversational(conv[2])
    text = maybe_apply_chat_template({"messages": conv[2]["messages"]}, tokenizer)["text"]
    assert "You are a careful health assistant." in text and text.rstrip().endswith("Call emergency services now.<|im_end|>")
    sdft = datasets.Dataset.from_parquet(str(tmp_path / "sdft.parquet"))
    assert sdft.column_names[:2] == ["prompt", "privileged_context"] and is_conversational({"prompt": sdft[0]["prompt"]})
    assert sdft[0]["privileged_context"].startswith("A strong answer meets these criteria:")


def test_a_format_read_from_the_wrong_kind_of_file_says_which_it_reads(tmp_path):
    with pytest.raises(InputError, match="read from a JSONL file, a Parquet file or a save_to_disk folder, not from "
                                         "a CSV file"):
        import_source("healthbench", CSV)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown file type '.txt'"):
        import_source("trl", tmp_path / "x.txt")


def test_chains_of_one_task_id_with_other_prompts_stay_apart():
    chains = [{"id": "a/1", "task_id": "t1", "prompt": "2 + 2?", "text": "4"},
              {"id": "b/1", "task_id": "t1", "prompt": "3 + 3?", "text": "6"}]
    rows = export_records("trl-prompt-completion", chains)
    assert [r["prompt"] for r in rows] == ["2 + 2?", "3 + 3?"]
    assert rows[0]["task_id"] == "t1" and rows[1]["task_id"].startswith("t1-")
