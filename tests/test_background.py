"""Background jobs of the studio: progress with an ETA, cancel, one per kind, re-attached after a reload."""

from __future__ import annotations

import threading
import time

import pytest
from test_pages import by_label, home, open_page, texts  # noqa: F401  (home is a fixture)

from rcsd_core.errors import InputError
from rcsd_core.studio import actions, background
from rcsd_core.studio import workspace as ws


def _wait(job, timeout: float = 30.0):
    deadline = time.time() + timeout
    while job.status in background.ACTIVE:
        assert time.time() < deadline
        time.sleep(0.02)
    return job


def test_progress_eta_result_and_one_job_per_kind(tmp_path):
    gate = threading.Event()

    def work(n, *, progress):
        progress(1, n)
        gate.wait(10)
        for i in range(2, n + 1):
            progress(i, n)
        return "made"

    job = background.start(tmp_path, "preview", "Sampling 4 chains", work, 4)
    deadline = time.time() + 10
    while job.done < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert (job.done, job.total, job.fraction) == (1, 4, 0.25)
    assert job.eta_s is not None and job.eta_s == pytest.approx(3 * job.elapsed_s, rel=0.5)
    assert "1/4" in job.describe() and "left" in job.describe()
    with pytest.raises(InputError, match="still running"):
        background.start(tmp_path, "preview", "again", work, 4)
    assert background.latest(tmp_path, "preview") is job      # what a reloaded page finds
    gate.set()
    assert _wait(job).status == "done" and job.result == "made" and job.eta_s is None
    background.forget(tmp_path, "preview", job)
    assert background.latest(tmp_path, "preview") is None


def test_cancel_stops_the_work_at_its_next_progress_report(tmp_path):
    reached = []

    def work(*, progress):
        for i in range(1, 1000):
            progress(i, 1000)
            reached.append(i)
            time.sleep(0.01)

    job = background.start(tmp_path, "signal", "Measuring signal", work)
    time.sleep(0.1)
    job.cancel()
    assert _wait(job).status == "cancelled"
    assert len(reached) < 999


def test_a_failing_job_reports_one_line(tmp_path):
    def work(*, progress):
        raise InputError("task set 'x' is empty")

    job = _wait(background.start(tmp_path, "preview", "Sampling", work))
    assert job.status == "failed" and job.error == "task set 'x' is empty"


def test_preview_page_shows_progress_reattaches_and_cancels(home, monkeypatch):
    started = threading.Event()

    def slow_sample(root, *, progress, **settings):
        for i in range(1, 10_000):
            progress(i, 10_000)
            started.set()
            time.sleep(0.01)
        raise AssertionError("cancel did not stop the work")

    monkeypatch.setattr(actions, "sample_preview", slow_sample)
    at = open_page("pages/preview.py", rubric="grade-school-math")
    by_label(at.button, "Sample chains").click().run()
    assert started.wait(10)
    at.run()
    (bar,) = at.get("progress")
    assert "Sampling 16 chains" in bar.proto.text   # 4 tasks × 2 samples × 2 contexts and "/10000" in bar.proto.text
    # a reload (a new session) re-attaches to the same job, and its Cancel stops it
    again = open_page("pages/preview.py", rubric="grade-school-math")
    assert again.get("progress"), "the running job is shown after a reload"
    by_label(again.button, "Cancel").click().run()
    job = _wait(background.latest(ws.workspace_root(), "preview"))
    assert job.status == "cancelled"
    again.run()
    assert "Sampling cancelled: nothing was saved." in texts(again)
    assert ws.list_chain_sets(home) == []


def test_model_work_runs_one_job_at_a_time(tmp_path):
    gate, order = threading.Event(), []

    def first(*, progress):
        order.append("first starts")
        gate.wait(10)
        order.append("first ends")

    def second(*, progress):
        order.append("second starts")

    a = background.start(tmp_path, "preview", "Sampling", first)
    deadline = time.time() + 10
    while a.status != "running" and time.time() < deadline:
        time.sleep(0.01)
    b = background.start(tmp_path, "signal", "Measuring signal", second)
    time.sleep(0.2)
    assert b.status == "queued" and "waiting for the studio's other job" in b.describe()
    gate.set()
    _wait(a), _wait(b)
    assert order == ["first starts", "first ends", "second starts"] and b.status == "done"
