"""The studio's import box (Rubrics page) and export downloads (Review and Results pages), driven
with AppTest against a temporary workspace, and the studio functions behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from test_pages import home, open_page  # noqa: F401  (home is a fixture)

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import preset_config
from rcsd_core.contracts.rubric_text import render_rubric
from rcsd_core.contracts.tasks import rubric_for_task
from rcsd_core.errors import InputError
from rcsd_core.files import append_jsonl
from rcsd_core.studio import exchange
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore

HB = Path(__file__).parent / "fixtures" / "formats" / "healthbench.jsonl"




def submit_import(at: AppTest, name: str, data: bytes, fmt: str = "detect") -> AppTest:
    at.file_uploader(key="dataset-upload").upload(name, data, "application/octet-stream")
    at.selectbox(key="dataset-format").set_value(fmt)
    next(b for b in at.button if b.label == "Import data set").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_rubrics_page_imports_a_healthbench_file(home):
    at = submit_import(open_page("pages/rubrics.py"), "healthbench.jsonl", HB.read_bytes())
    assert "Imported 3 tasks as task set healthbench with rubric healthbench." in [str(s.value) for s in at.success]
    tasks = ws.load_task_set(home, "healthbench")
    assert [len(t.criteria) for t in tasks] == [4, 3, 3] and tasks[0].criteria_mode == "replace"
    assert ws.suggested_task_set(home, "healthbench") == "healthbench"
    assert at.session_state["rubric"] == "healthbench"


def test_rubrics_page_import_error_is_one_line_and_stores_nothing(home):
    rows = [json.loads(line) for line in HB.read_text().splitlines()]
    rows[1]["rubrics"][0]["points"] = "ten"
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    at = submit_import(open_page("pages/rubrics.py"), "hb-bad.jsonl", data, "healthbench")
    errors = [str(e.value).replace("\\", "") for e in at.error]       # shown as plain text: Markdown escaped
    assert len(errors) == 1 and "hb-bad.jsonl:2: rubrics[0].points: must be a non-zero number" in errors[0]
    assert "hb-bad" not in ws.list_task_sets(home) and "healthbench" not in ws.list_rubrics(home)


def test_review_page_offers_exports_and_rejected_chains_leave_training_data(home):
    store = ReviewStore(ws.store_path(home))
    for i, decision in ((1, "accept"), (2, "reject")):
        chain = {"id": f"set/c{i}", "task_id": "t1", "prompt": "What is 2 + 2?", "text": f"answer {i}",
                 "scores": {"concise": 1.0, "final-answer-line": 0.0}, "total": 0.25}
        flag = store.add_flag(chain, rubric_name="grade-school-math", rubric_version="0" * 12, reason="check",
                              flagged_by="eve")
        store.add_review(flag, reviewer="ana", decision=decision, verdicts={"final-answer-line": 1.0})
    at = open_page("pages/review.py")
    labels = [b.label for b in at.get("download_button")]
    assert "Download TRL prompt-completion" in labels
    assert at.selectbox(key="review-export-format").options == ["TRL prompt-completion", "TRL conversational",
                                                                 "Argilla records", "Label Studio tasks"]
    trl = [json.loads(line) for line in exchange.review_export(store, "TRL prompt-completion").decode().splitlines()]
    assert [r["id"] for r in trl] == ["set/c1"] and trl[0]["prompt"] == "What is 2 + 2?"
    studio = json.loads(exchange.review_export(store, "Label Studio tasks"))
    assert [t["annotations"][0]["result"][-1]["value"]["choices"] for t in studio] == [["accept"], ["reject"]]
    at.selectbox(key="review-export-format").set_value("Argilla records").run()
    assert "Download Argilla records" in [b.label for b in at.get("download_button")] and not at.error


def test_results_page_exports_the_runs_chains_and_sdft_rows(home):
    config = preset_config("cpu-demo", model="tiny-random", steps=1, prompts_per_step=1, samples_per_prompt=2,
                           max_new_tokens=8, rubric=str(ws.rubric_path(home, "grade-school-math")),
                           tasks=str(ws.task_set_path(home, "arithmetic")))
    run_dir = runs.create_run(config, ws.runs_root(home), run_id="export-run")
    tasks = ws.load_task_set(home, "arithmetic")
    for sample in (0, 1):
        append_jsonl(run_dir / runs.SAMPLES_FILE, {"id": f"{tasks[0].id}:{sample}", "task_id": tasks[0].id,
                                                   "sample": sample, "step": 1, "kind": "train", "text": "4",
                                                   "scores": {"concise": 1.0}, "total": 0.1})
    runs.write_status(run_dir, "done", step=1)
    at = open_page("pages/results.py")
    assert "Download TRL prompt-completion" in [b.label for b in at.get("download_button")] and not at.error
    rows = [json.loads(line) for line in exchange.run_export(run_dir, "TRL conversational").decode().splitlines()]
    assert [r["id"] for r in rows] == [f"train-1/{tasks[0].id}:0", f"train-1/{tasks[0].id}:1"]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "4"} and rows[0]["total"] == 0.1
    sdft = json.loads(exchange.run_export(run_dir, "SDFT (privileged context)").decode().splitlines()[0])
    frozen = runs.load_run_config(run_dir)
    from rcsd_core.contracts.rubric import rubric_from_data
    assert sdft["privileged_context"] == render_rubric(rubric_for_task(rubric_from_data(frozen.rubric), tasks[0]))


def test_review_export_refuses_sdft(home):
    with pytest.raises(InputError, match="SDFT"):
        exchange.review_export(ReviewStore(ws.store_path(home)), "SDFT (privileged context)")
