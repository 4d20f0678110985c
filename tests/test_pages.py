"""Every studio page driven with streamlit.testing.v1.AppTest against a temporary workspace.

The app runs through app.py (st.navigation), one page at a time via `switch_page`; each test
asserts what the page shows, not only that it ran. Rounds are not launched here (the browser
test does that): a run directory is created through rcsd_core.contracts.runs and its metrics and eval
files are written as a finished round would leave them, or a 1-step tiny-random round is trained
in this process for the Results page to launch a real evaluation job on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from rcsd_core.contracts import runs
from rcsd_core.studio import workspace as ws
from rcsd_core.contracts.config import preset_config
from rcsd_core.files import append_jsonl, atomic_write_text
from rcsd_core.studio.store import ReviewStore

TIMEOUT = 120
APP = Path(__file__).resolve().parent.parent / "app.py"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RCSD_HOME", str(tmp_path / "ws"))
    return ws.ensure_workspace(tmp_path / "ws")


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def settle(at: AppTest, timeout: float = TIMEOUT) -> AppTest:
    """Wait for the studio's background jobs (Sample chains, Measure signal start one), then rerun the
    page once, as its polling would when the job ends."""
    from rcsd_core.studio import background

    root = ws.workspace_root()
    deadline = time.time() + timeout
    while any((job := background.latest(root, kind)) is not None and job.status in background.ACTIVE
              for kind in ("preview", "signal", "ablation")):
        assert time.time() < deadline, "a studio job did not finish in time"
        time.sleep(0.2)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sample_tiny(at: AppTest, *, tasks: int = 1, samples: int = 1, tokens: int = 8, context: str = "student",
                **selects: str) -> AppTest:
    """Fill the Preview form for a quick tiny-random sample (plus any selectbox by label), submit, wait."""
    by_label(at.selectbox, "Model").set_value("tiny-random")
    for label, value in selects.items():
        by_label(at.selectbox, label).set_value(value)
    by_label(at.number_input, "Tasks (first N of the train split)").set_value(tasks)
    by_label(at.number_input, "Samples per task").set_value(samples)
    by_label(at.number_input, "Max new tokens").set_value(tokens)
    by_label(at.radio, "Context").set_value(context)
    by_label(at.button, "Sample chains").click().run()
    return settle(at)


def texts(at: AppTest) -> str:
    """All markdown, captions, info/success/error/warning text on the page, joined."""
    parts = []
    for kind in ("markdown", "caption", "info", "success", "error", "warning", "text", "code", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def frames(at: AppTest) -> list[pd.DataFrame]:
    return [e.value for e in at.dataframe]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page that has `column`."""
    matches = [f for f in frames(at) if column in f.columns]
    assert matches, f"no table with column {column!r}"
    return matches[0]


def by_label(widgets, label: str):
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget labelled {label!r}: {[w.label for w in widgets]}"
    return matches[0]


# ---------------------------------------------------------------------------- every page, fresh workspace

@pytest.mark.parametrize("page, says", [
    ("pages/home.py", "No previews yet"), ("pages/rubrics.py", "A strong answer meets these criteria:"),
    ("pages/tasks.py", "Valid · no changes."), ("pages/preview.py", "No chains yet"), ("pages/review.py", "Nothing flagged yet"),
    ("pages/train.py", "No runs yet"), ("pages/results.py", "No runs yet")])
def test_every_page_renders_on_a_fresh_workspace(home, page, says):
    at = open_page(page)
    assert says in texts(at)


# ---------------------------------------------------------------------------- home

def test_home_lists_sample_rubrics(home):
    at = open_page("pages/home.py")
    assert at.title[0].value == "rcsd studio"
    table = frame_with(at, "rubric")
    assert {"grade-school-math", "science-explainer", "legal-issue-analysis", "clinical-question"} <= set(table["rubric"])
    assert int(table.loc[table["rubric"] == "grade-school-math", "criteria"].iloc[0]) == 6  # one held out
    assert "No runs yet" in texts(at)


# ---------------------------------------------------------------------------- rubrics

def test_rubric_editor_rows_validation_and_new_version(home):
    at = open_page("pages/rubrics.py", rubric="grade-school-math")
    editor = at.data_editor[0]
    assert list(editor.value["id"]) == ["final-answer-line", "correct-answer", "shows-equation", "concise",
                                        "restates-rubric", "equations-true"]
    assert list(editor.value["held_out"]) == [False] * 5 + [True]
    assert "no changes from the current version" in texts(at)
    # the teacher-context tab renders the rubric as the teacher reads it, then the worked examples as turns
    assert "A strong answer meets these criteria:" in texts(at)
    roles = [m.name for m in at.chat_message]
    assert roles == ["assistant", "user", "assistant", "user", "assistant", "user"]
    assert "4 + 3 = 7\nAnswer: 7" in texts(at)

    current = ws.current_version(home, "grade-school-math")
    key = f"criteria-grade-school-math-{current}"
    # a zero weight on row 2 and a bad id on row 3: messages name the row, criterion and field
    at.session_state[key] = {"edited_rows": {1: {"weight": 0}, 2: {"id": "Bad Id"}}, "added_rows": [],
                             "deleted_rows": []}
    at.run()
    problems = frame_with(at, "row")
    assert set(problems["row"]) == {2, 3}
    assert "weight must be a non-zero finite number" in set(problems["message"])
    assert problems.loc[problems["row"] == 2, "criterion"].iloc[0] == "correct-answer"
    assert any("problems to fix before saving" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Save as new version"]

    # a valid edit can be saved as a new version, and the history then shows a diff
    at.session_state[key] = {"edited_rows": {3: {"limit": 80}}, "added_rows": [], "deleted_rows": []}
    at.run()
    by_label(at.button, "Save as new version").click().run()
    assert not at.exception
    versions = ws.rubric_versions(home, "grade-school-math")
    assert len(versions) == 2
    assert ws.load_rubric_version(home, "grade-school-math").criterion("concise").check.limit == 80
    at = open_page("pages/rubrics.py", rubric="grade-school-math")
    diff = [c.value for c in at.code if c.language == "diff"][0]
    assert "-    limit: 60" in diff and "+    limit: 80" in diff


def test_rubric_create_and_duplicate(home):
    at = open_page("pages/rubrics.py")
    by_label(at.text_input, "New rubric name").input("my-rubric")
    by_label(at.button, "Create").click().run()
    assert not at.exception
    assert "my-rubric" in ws.list_rubrics(home)
    assert list(at.data_editor[0].value["id"]) == ["final-answer"]
    by_label(at.text_input, "New rubric name").input("my-rubric")
    by_label(at.button, "Create").click().run()
    assert any("already exists" in e.value for e in at.error)


# ---------------------------------------------------------------------------- preview -> review

def test_preview_tiny_random_grid_flag_then_review_decision(home):
    at = open_page("pages/preview.py", rubric="grade-school-math")
    assert "No chains yet" in texts(at)
    assert by_label(at.selectbox, "Model").value == "smollm2-135m-instruct"   # the embedded default
    sample_tiny(at, tasks=2, tokens=8, context="both")
    assert not at.exception, [e.value for e in at.exception]
    grid = frame_with(at, "chain")
    assert len(grid) == 4                                   # 2 tasks × 1 sample × (student, teacher)
    assert {"final-answer-line", "correct-answer", "concise"} <= set(grid.columns)
    assert set(grid["context"]) == {"student", "teacher"}
    assert at.get("plotly_chart"), "the pass-rate chart is drawn"
    assert len(ws.list_chain_sets(home)) == 1

    by_label(at.text_input, "Reason").input("answer line missing")
    by_label(at.text_input, "Your name").input("ana")
    by_label(at.button, "Flag chain").click().run()
    assert not at.exception
    assert any("added to the review queue" in s.value for s in at.success)

    at = open_page("pages/review.py")
    queue = frame_with(at, "reason")
    assert list(queue["reason"]) == ["answer line missing"] and list(queue["status"]) == ["open"]
    by_label(at.text_input, "Reviewer").input("ben")
    by_label(at.radio, "Decision").set_value("reject")
    by_label(at.selectbox, "concise (auto: pass)").set_value("fail")
    by_label(at.text_area, "Note").input("too long in fact")
    by_label(at.button, "Record decision").click().run()
    assert not at.exception
    store = ReviewStore(ws.store_path(home))
    flag = store.flag(1)
    assert flag["status"] == "reject" and flag["latest"]["verdicts"]["concise"] == 0.0
    assert store.excluded_chain_ids() == {flag["chain_id"]}
    page = texts(at)
    assert "disagrees with the automatic score" in "\n".join(w.value for w in at.warning)
    assert "reject: 1" in page
    history = frame_with(at, "decision")
    assert list(history["reviewer"]) == ["ben"] and list(history["note"]) == ["too long in fact"]

    # the rejected chain stays in the grid but leaves the Preview page's rates, totals and lint
    at = open_page("pages/preview.py", rubric="grade-school-math")
    assert "1 rejected in review: left out of rates, totals and lint" in texts(at)
    assert len(frame_with(at, "chain")) == 4


def test_preview_guidance_map_and_signal_panel(home):
    at = open_page("pages/preview.py", rubric="grade-school-math")
    by_label(at.number_input, "Tasks (first N of the train split)").set_value(1)
    by_label(at.number_input, "Samples per task").set_value(1)
    by_label(at.number_input, "Max new tokens").set_value(6)
    by_label(at.radio, "Context").set_value("student")
    by_label(at.button, "Sample chains").click().run()
    settle(at)
    assert len(frame_with(at, "chain")) == 1
    by_label(at.button, "Compute guidance map").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("rcsd-guidance" in str(h.proto.body) for h in at.get("html"))
    by_label(at.button, "Measure signal").click().run()
    settle(at)
    assert not at.exception, [e.value for e in at.exception]
    table = frame_with(at, "gap")
    assert list(table["criterion"]) == ["final-answer-line", "correct-answer", "shows-equation", "concise",
                                        "restates-rubric", "equations-true", "total"]
    assert ws.latest_signal_report(home, "grade-school-math")["samples"] == 1


# ---------------------------------------------------------------------------- train and results

def _finished_run(home) -> str:
    config = preset_config("cpu-demo", model="tiny-random", steps=2, prompts_per_step=1, samples_per_prompt=2,
                           max_new_tokens=8, rubric=str(ws.rubric_path(home, "grade-school-math")),
                           tasks=str(ws.task_set_path(home, "arithmetic")))
    run_dir = runs.create_run(config, ws.runs_root(home), run_id="test-run")
    for step in (1, 2):
        append_jsonl(run_dir / "metrics.jsonl", {
            "step": step, "train/loss": 1.0 / step, "train/divergence": 0.5 / step, "criterion/concise": 0.5,
            "criterion/final-answer-line": 0.0, "train/tokens_per_s": 100.0, "memory/peak_gib": 0.1,
            "eval/total": 0.1 * step, "eval/criterion/concise": 0.5})
    runs.write_status(run_dir, "done", step=2)
    crit = [{"criterion": "concise", "weight": 1, "before": 0.5, "after": 0.75, "diff": 0.25, "ci_low": 0.05,
             "ci_high": 0.45, "significant": True, "prompts": 4},
            {"criterion": "final-answer-line", "weight": 3, "before": 0.0, "after": 0.0, "diff": 0.0, "ci_low": 0.0,
             "ci_high": 0.0, "significant": False, "prompts": 4}]
    evaluation = {"run_id": "test-run", "criteria": crit,
                  "total": {"criterion": "total", "before": 0.2, "after": 0.3, "diff": 0.1, "ci_low": -0.02,
                            "ci_high": 0.22, "significant": False, "prompts": 4},
                  "prompts": [{"task_id": "arith-064", "prompt": "What is 2 + 2?", "reference": "4",
                               "before": ["four"], "after": ["2 + 2 = 4\nAnswer: 4"], "before_total": 0.1,
                               "after_total": 1.0}]}
    atomic_write_text(run_dir / "eval.json", json.dumps(evaluation))
    return run_dir.name


def _trained_run(home) -> str:
    """A real 1-step tiny-random round (adapter saved), trained here; no eval.json yet."""
    from rcsd_core.training.round import train_round

    config = preset_config("cpu-demo", model="tiny-random", steps=1, prompts_per_step=1, samples_per_prompt=2,
                           max_new_tokens=8, eval_every=0, eval_tasks=2, eval_samples=1, threads=1,
                           rubric=str(ws.rubric_path(home, "grade-school-math")),
                           tasks=str(ws.task_set_path(home, "arithmetic")))
    run_dir = runs.create_run(config, ws.runs_root(home), run_id="trained-run")
    assert train_round(run_dir)["status"] == "done"
    return run_dir.name


def test_train_page_runs_table_and_charts(home):
    at = open_page("pages/train.py")
    assert "No runs yet" in texts(at)
    assert [s.label for s in at.selectbox][0] == "Preset"
    run_id = _finished_run(home)
    at = open_page("pages/train.py")
    table = frame_with(at, "steps")
    assert list(table["id"]) == [run_id] and list(table["status"]) == ["done"]
    assert [m.value for m in at.metric][:2] == ["done", "2 / 2"]
    assert len(at.get("plotly_chart")) == 6                 # loss, divergence, eval, criteria, tokens/s, memory
    assert by_label(at.button, "Resume").disabled and by_label(at.button, "Stop").disabled


def test_train_page_stop_and_resume_buttons(home):
    run_id = _finished_run(home)
    run_dir = ws.run_dir(home, run_id)
    runs.write_status(run_dir, "queued", pid=None)             # launched, not yet started
    at = open_page("pages/train.py")
    assert not by_label(at.button, "Stop").disabled and by_label(at.button, "Resume").disabled
    by_label(at.button, "Stop").click().run()
    assert (run_dir / "STOP").exists()
    runs.write_status(run_dir, "failed", error="CUDA out of memory")
    at = open_page("pages/train.py")
    assert by_label(at.button, "Stop").disabled and not by_label(at.button, "Resume").disabled
    assert any("CUDA out of memory" in e.value for e in at.error)


def test_train_page_refuses_bad_extra_config(home):
    at = open_page("pages/train.py")
    by_label(at.text_area, "Other config keys (YAML, optional)").input("no_such_key: 1")
    by_label(at.button, "Launch round").click().run()
    assert any("unknown key 'no_such_key'" in e.value for e in at.error)
    assert runs.list_runs(ws.runs_root(home)).empty


def test_results_page_before_after_and_report(home):
    run_id = _finished_run(home)
    assert runs.read_eval_status(ws.run_dir(home, run_id)) is None     # an older run: eval.json alone
    at = open_page("pages/results.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["eval total · before"] == "0.200" and metrics["eval total · after"] == "0.300"
    assert metrics["95% CI of the change"] == "[-0.020, +0.220]"
    table = frame_with(at, "delta")
    assert list(table["criterion"]) == ["concise", "final-answer-line", "total"]
    assert [c.value for c in at.code][:2] == ["four", "2 + 2 = 4\nAnswer: 4"]
    assert len(at.get("plotly_chart")) == 3                 # before/after, change with CI, eval over steps
    assert at.get("download_button")
    assert run_id in texts(at) or at.selectbox[0].value == run_id


def test_results_page_launches_an_evaluation_job_and_shows_its_result(home):
    run_id = _trained_run(home)
    run_dir = ws.run_dir(home, run_id)
    at = open_page("pages/results.py")
    assert "No before/after evaluation of the adapter yet" in texts(at)        # the round evaluated itself at steps 0, 1
    by_label(at.number_input, "Eval prompts").set_value(2)
    by_label(at.button, "Evaluate base vs adapter now").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = runs.read_eval_status(run_dir)
    assert job["status"] in ("queued", "running") and job["limit"] == 2     # a process that loads torch first
    assert any("Evaluating base vs adapter" in i.value for i in at.info)      # the page polls the job
    assert not [b for b in at.button if b.label == "Evaluate base vs adapter now"]
    deadline = time.time() + 240
    while runs.read_eval_status(run_dir)["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert runs.read_eval_status(run_dir)["status"] == "done", runs.tail_log(run_dir, 40, name=runs.EVAL_LOG_FILE)
    job = runs.read_eval_status(run_dir)
    assert (job["done"], job["total"]) == (4, 4)      # 2 prompts × 1 chain, without then with the adapter
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert {"eval total · before", "eval total · after", "95% CI of the change"} <= set(metrics)
    assert list(frame_with(at, "delta")["criterion"])[-1] == "total"
    assert json.loads((run_dir / "eval.json").read_text())["eval_prompts"] == 2


def test_results_page_shows_a_failed_evaluation_as_plain_text(home):
    run_id = _finished_run(home)
    runs.write_eval_status(ws.run_dir(home, run_id), "failed", pid=None, error="boom [see](http://example.com)")
    at = open_page("pages/results.py")
    error = " ".join(e.value for e in at.error)
    assert "The last evaluation failed" in error and "boom" in error
    assert "[see](" not in error                     # escaped: no link can be made from the message
    assert metrics_of(at)["eval total · before"] == "0.200"   # the earlier eval.json is still shown


def metrics_of(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


# ---------------------------------------------------------------------------- page state and plain text

def test_remembered_select_keeps_the_choice_across_pages():
    def page():
        import streamlit as st

        from rcsd_core.studio import state

        chosen = state.remembered_select("Rubric", ["a", "b", "c"], "rubric", fallback="b")
        st.text(f"chosen {chosen}")

    at = AppTest.from_function(page, default_timeout=TIMEOUT).run()
    assert at.selectbox[0].value == "b" and at.session_state["rubric"] == "b"     # the fallback, remembered
    at.selectbox[0].set_value("c").run()
    assert at.session_state["rubric"] == "c" and at.text[0].value == "chosen c"
    again = AppTest.from_function(page, default_timeout=TIMEOUT)
    again.session_state["rubric"] = "a"              # chosen on another page
    assert again.run().selectbox[0].value == "a"
    again.session_state["rubric"] = "gone"           # no longer an option: the fallback
    assert again.run().selectbox[0].value == "b"


def test_plain_text_escapes_markdown():
    from rcsd_core.studio.state import plain

    assert plain("![x](http://e/i.png) :red[hot] $x$") == r"\!\[x\](http\://e/i.png) \:red\[hot\] \$x\$"
    assert plain("unknown key 'no_such_key'") == "unknown key 'no_such_key'"


def test_pages_share_one_model_cache_and_no_model_code():
    pages = [APP, *sorted((APP.parent / "pages").glob("*.py"))]
    for path in pages:
        source = path.read_text(encoding="utf-8")
        assert "cache_resource" not in source, f"{path.name}: models are cached once, in rcsd_core.studio.state"
        assert "evaluate_run" not in source, f"{path.name}: evaluations run as detached jobs"


def test_review_page_shows_user_text_as_plain_text(home):
    chain = {"id": "set/c1", "task_id": "[t](http://x)", "text": "**bold** chain", "prompt": "p", "context": "student",
             "scores": {"concise": 1.0}, "total": 1.0}
    ReviewStore(ws.store_path(home)).add_flag(chain, rubric_name="grade-school-math", rubric_version="0" * 12,
                                              reason="see ![img](http://x/i.png)", flagged_by="**eve**")
    at = open_page("pages/review.py")
    markdown = [str(e.value) for kind in ("markdown", "info", "caption", "warning", "success", "error")
                for e in getattr(at, kind)]
    assert not [m for m in markdown if "http://x" in m or "**eve**" in m or "**bold**" in m]
    shown = "\n".join(str(e.value) for e in [*at.text, *at.code])
    assert "see ![img](http://x/i.png)" in shown and "Flagged by **eve**" in shown and "**bold** chain" in shown


def test_a_damaged_review_database_is_said_and_the_pages_stay_usable(home):
    at = open_page("pages/preview.py", rubric="grade-school-math")
    sample_tiny(at, tasks=1, tokens=8, context="both")
    ws.store_path(home).write_bytes(b"this is not a sqlite database" * 100)   # damaged on disk

    at = open_page("pages/review.py")                      # no exception: the page says what is wrong
    assert "review database" in "\n".join(e.value for e in at.error) and "damaged" in texts(at)
    at = open_page("pages/preview.py", rubric="grade-school-math")
    assert "review database" in "\n".join(e.value for e in at.error)
    assert len(frame_with(at, "chain")) == 2                # the chains are still shown


# ---------------------------------------------------------------------------- a task's own criteria

PER_TASK = [
    {"id": "pt-1", "prompt": "Ann has 4 pens and gets 3 more. How many?", "reference": "7", "criteria": [
        {"id": "names-pens", "description": "Mentions pens.", "weight": 3, "tags": ["axis:completeness"],
         "check": {"type": "contains", "terms": ["pen"]}}]},
    {"id": "pt-2", "prompt": "Bo has 5 cups and breaks 2. How many are left?", "reference": "3",
     "criteria_mode": "replace", "criteria": [
         {"id": "answer-line", "description": "Ends with an Answer line.", "weight": 5,
          "check": {"type": "regex", "pattern": "(?m)^Answer:"}},
         {"id": "rambles", "description": "Over 40 words.", "weight": -1, "check": {"type": "min_words", "limit": 40}}]},
    {"id": "pt-3", "prompt": "What is 2 + 2?", "reference": "4"},
]


def _import_per_task(home) -> str:
    data = "".join(json.dumps(t) + "\n" for t in PER_TASK).encode()
    return ws.import_task_set(home, data, "per-task.jsonl")


def test_rubrics_page_shows_edits_and_saves_a_tasks_own_criteria(home):
    _import_per_task(home)
    at = open_page("pages/rubrics.py", rubric="grade-school-math", **{"task-criteria-set": "per-task"})
    assert "2 of 3 tasks carry their own criteria (3 in all, 1 replacing the rubric's)" in texts(at)
    editor = at.data_editor[2]                      # rubric criteria, worked examples, then the task's
    assert list(editor.value["id"]) == ["names-pens"] and list(editor.value["tags"]) == ["axis:completeness"]
    assert "the teacher and the scorer see 7 criteria for this task · no changes" in texts(at)  # 6 shared + 1 own

    # a zero weight: the tasks contract's own message, beside its row
    key = "task-criteria-per-task-pt-1"
    at.session_state[key] = {"edited_rows": {0: {"weight": 0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    problems = frame_with(at, "row")               # the rubric's own editor has no problems: this is the task's
    assert list(problems["row"]) == [1] and problems["field"].iloc[0] == "criteria: criterion 'names-pens'.weight"
    assert problems["message"].iloc[0] == "weight must be a non-zero finite number"
    # an id of the shared rubric in extend mode: refused, naming the task
    at.session_state[key] = {"edited_rows": {0: {"id": "concise"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert "has the id of a shared rubric criterion" in frame_with(at, "row")["message"].iloc[0]

    # a valid edit (a second criterion, tagged) is saved as a new task set; the original is unchanged
    at.session_state[key] = {"edited_rows": {}, "deleted_rows": [], "added_rows": [
        {"id": "shows-sum", "description": "Writes 4 + 3.", "weight": 2, "check": "contains", "terms": "4 + 3",
         "tags": "axis:reasoning"}]}
    at.run()
    assert "see 8 criteria for this task" in texts(at)
    by_label(at.text_input, "Save as task set").set_value("per-task-v2")
    by_label(at.button, "Save as a new task set").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = {t.id: t for t in ws.load_task_set(home, "per-task-v2")}
    assert [c.id for c in saved["pt-1"].criteria] == ["names-pens", "shows-sum"]
    assert saved["pt-1"].criteria[1].tags == ["axis:reasoning"] and saved["pt-2"].criteria_mode == "replace"
    assert [c.id for c in ws.load_task_set(home, "per-task")[0].criteria] == ["names-pens"]


def test_preview_groups_a_tasks_own_criteria(home):
    _import_per_task(home)
    at = open_page("pages/preview.py", rubric="grade-school-math")
    at.selectbox(key="preview-task-set").set_value("per-task").run()
    sample_tiny(at, tasks=3, samples=2, context="both")
    grid = frame_with(at, "chain")
    assert {"weight:essential", "weight:important", "weight:pitfall", "tag:axis:completeness"} <= set(grid.columns)
    assert "names-pens" not in grid.columns and "answer-line" not in grid.columns
    assert "show as groups" in texts(at)
    # pt-2 replaces the rubric: its chains have no shared scores, but an essential-group value
    pt2 = grid[grid["task"] == "pt-2"]
    assert pt2["final-answer-line"].isna().all() and pt2["weight:essential"].notna().all()
    assert grid[grid["task"] == "pt-3"]["weight:essential"].isna().all()


def test_rubrics_page_drafts_every_tasks_criteria_into_a_new_set(home):
    _import_per_task(home)
    at = open_page("pages/rubrics.py", rubric="grade-school-math", **{"task-criteria-set": "per-task"})
    by_label(at.text_input, "Model").set_value("tiny-random")
    [b for b in at.button if b.label == "Draft criteria"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    outcomes = frame_with(at, "status")
    # the hand-written tasks are kept; the plain one gets a tiny-random draft (gibberish: invalid) or criteria
    assert list(outcomes["task_id"]) == ["pt-1", "pt-2", "pt-3"]
    assert list(outcomes["status"][:2]) == ["kept", "kept"] and outcomes["status"][2] in ("drafted", "invalid")
    assert "per-task-drafted" in ws.list_task_sets(home)
    assert (home / "tasks" / ".drafts").is_dir()
    # the same name again is refused, nothing written
    [b for b in at.button if b.label == "Draft criteria"][0].click().run()
    assert any("already exists" in e.value for e in at.error)
