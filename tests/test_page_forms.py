"""The studio's forms never overwrite what the user chose, and its tables stay current (AppTest).

Dependent selectors (rubric → version and task set) sit outside the forms: choosing a rubric
updates the version list and opens its remembered task set before anything is submitted, and a
task set picked after that is the one sampled. The Train page's runs table redraws while a round
is active and says "stopping…" between Stop and the round's end.
"""

from __future__ import annotations

import subprocess
import sys

from test_pages import by_label, frame_with, home, open_page, sample_tiny  # noqa: F401  (home is a fixture)

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import preset_config
from rcsd_core.studio import workspace as ws


def test_changing_rubric_updates_versions_and_task_set_before_submit(home):
    names = ws.list_rubrics(home)
    other = next(n for n in names if n != "grade-school-math")
    at = open_page("pages/preview.py", rubric="grade-school-math")
    assert at.selectbox(key="preview-task-set").value == "arithmetic"
    at.selectbox(key="preview-rubric").set_value(other).run()
    assert not at.exception, [e.value for e in at.exception]
    versions = at.selectbox(key="preview-version").options
    assert versions == [f"{v} (current)" if v == ws.current_version(home, other) else v
                        for v in [h["version"] for h in ws.rubric_versions(home, other)][::-1]]
    assert at.selectbox(key="preview-task-set").value == ws.suggested_task_set(home, other)


def test_preview_samples_the_task_set_the_user_chose(home):
    at = open_page("pages/preview.py", rubric="grade-school-math")
    at.selectbox(key="preview-rubric").set_value("grade-school-math").run()
    at.selectbox(key="preview-task-set").set_value("science").run()
    sample_tiny(at)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="preview-task-set").value == "science"     # the submit did not re-choose it
    (chain_set,) = ws.list_chain_sets(home)
    assert ws.chain_set_meta(home, chain_set["id"])["tasks"] == "science"
    first_science = ws.load_task_set(home, "science")[0].id
    assert {r["task_id"] for r in ws.load_chain_set(home, chain_set["id"])} == {first_science}
    # the rubric now remembers its task set: a new session opens on it
    assert ws.suggested_task_set(home, "grade-school-math") == "science"
    at = open_page("pages/preview.py", rubric="grade-school-math")
    assert at.selectbox(key="preview-task-set").value == "science"


def test_train_runs_table_shows_the_live_step_and_stopping(home):
    config = preset_config("cpu-demo", model="tiny-random", steps=5, rubric=str(ws.rubric_path(home, "grade-school-math")),
                           tasks=str(ws.task_set_path(home, "arithmetic")))
    run_dir = runs.create_run(config, ws.runs_root(home), run_id="live-run")
    # the round's process: a stand-in that, like a round, does not die of the first SIGTERM
    stand_in = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
                                stdout=subprocess.PIPE, text=True)
    assert stand_in.stdout.readline().strip() == "ready"
    runs.write_status(run_dir, "running", step=2, steps=5, pid=stand_in.pid)
    try:
        _stop_and_watch(home, run_dir)
    finally:
        stand_in.kill()
        stand_in.wait()


def _stop_and_watch(home, run_dir):
    at = open_page("pages/train.py")
    table = frame_with(at, "steps")
    assert list(table["status"]) == ["running"] and list(table["step"]) == [2]
    by_label(at.button, "Stop").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (run_dir / runs.STOP_FILE).exists()
    assert list(frame_with(at, "steps")["status"]) == ["stopping…"]
    assert [m.value for m in at.metric][0] == "stopping…"
    assert by_label(at.button, "Stop").disabled


def test_preview_grid_marks_flagged_chains_and_searches_text(home):
    from rcsd_core.studio.store import ReviewStore
    from test_pages import texts

    at = open_page("pages/preview.py", rubric="grade-school-math")
    sample_tiny(at, tasks=2)
    (chain_set,) = ws.list_chain_sets(home)
    first, second = ws.load_chain_set(home, chain_set["id"])
    store = ReviewStore(ws.store_path(home))
    flag = store.add_flag(first, rubric_name="grade-school-math", rubric_version="v", reason="odd", flagged_by="ana")
    store.add_review(flag, reviewer="ben", decision="reject", note="", verdicts={})
    at = open_page("pages/preview.py", rubric="grade-school-math")
    grid = frame_with(at, "review")
    assert list(grid["review"]) == ["reject", ""]
    by_label(at.text_input, "Search chains").input(second["task_id"]).run()
    assert not at.exception, [e.value for e in at.exception]
    grid = frame_with(at, "review")
    assert list(grid["task"]) == [second["task_id"]]
    assert "1 of 2 chains match" in texts(at)
    assert by_label(at.selectbox, "Chain").value == second["id"]

    at = open_page("pages/review.py")
    assert "1 rejected chain is left out" in texts(at)


def test_unsaved_rubric_edits_survive_a_visit_to_another_page(home):
    from test_pages import texts

    at = open_page("pages/rubrics.py", rubric="grade-school-math")
    by_label(at.text_area, "Description").input("Solve arithmetic word problems, showing the equation.").run()
    assert "saving creates version" in texts(at)
    at.switch_page("pages/preview.py").run()
    at.switch_page("pages/rubrics.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert by_label(at.text_area, "Description").value == "Solve arithmetic word problems, showing the equation."
    assert "saving creates version" in texts(at)
    by_label(at.button, "Discard unsaved edits").click().run()
    rubric = ws.load_rubric_version(home, "grade-school-math")
    assert by_label(at.text_area, "Description").value == rubric.description
    assert "no changes from the current version" in texts(at)


def test_signal_reuses_the_previews_chains_when_they_fit(home):
    from test_pages import settle, texts

    at = open_page("pages/preview.py", rubric="grade-school-math")
    sample_tiny(at, tasks=4, samples=1, context="both")
    (chain_set,) = ws.list_chain_sets(home)
    by_label(at.button, "Measure signal").click().run()
    settle(at)
    report = ws.latest_signal_report(home, "grade-school-math")
    assert report["reused_chains"] and report["chain_set"] == chain_set["id"]
    assert f"from chain set {chain_set['id']}" in texts(at)

    at = open_page("pages/preview.py", rubric="grade-school-math")
    sample_tiny(at, tasks=4, samples=1, context="student")       # one context only: fresh chains are needed
    by_label(at.button, "Measure signal").click().run()
    settle(at)
    assert not ws.latest_signal_report(home, "grade-school-math")["reused_chains"]


def test_train_form_follows_the_rubric_to_its_task_set_before_launch(home):
    at = open_page("pages/train.py", rubric="grade-school-math")
    assert at.selectbox(key="train-task-set").value == "arithmetic"
    at.selectbox(key="train-rubric").set_value("legal-issue-analysis").run()
    assert at.selectbox(key="train-task-set").value == ws.suggested_task_set(home, "legal-issue-analysis") == "legal"
    at.selectbox(key="train-task-set").set_value("science").run()
    assert at.selectbox(key="train-task-set").value == "science"      # the user's choice stays


def test_criteria_editor_reports_a_row_without_an_id_instead_of_dropping_it(home):
    from test_pages import texts

    at = open_page("pages/rubrics.py", rubric="grade-school-math")
    version = ws.current_version(home, "grade-school-math")
    at.session_state[f"criteria-grade-school-math-{version}"] = {
        "edited_rows": {}, "deleted_rows": [], "added_rows": [{"description": "Cites the units.", "weight": 2}]}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    problems = frame_with(at, "row")
    rows = len(ws.load_rubric_version(home, "grade-school-math").criteria) + 1
    assert list(problems["row"]) == [rows] and list(problems["field"]) == ["id"]
    assert "1 problem to fix before saving" in texts(at) and "saving creates version" not in texts(at)
