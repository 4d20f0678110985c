"""Long studio actions (sampling a preview, measuring signal) as background jobs of the server process.

    job = background.start(root, "preview", "Sampling 8 chains", actions.sample_preview, root, rubric_name=...)
    job = background.latest(root, "preview")     # after a reload too: the server keeps its jobs
    job.fraction, job.eta_s, job.status          # running | done | failed | cancelled
    job.cancel()                                 # stops at the next progress report (between batches)

The work runs in a thread of the Streamlit server, so it shares the one model cache
(`state.cached_model`) instead of loading the model again in another process, and a page that is
reloaded or opened in another tab finds the job by its workspace and kind and re-attaches. The
work function takes a `progress(done, total)` keyword; each call updates the job and is where a
cancel request takes effect (JobCancelled is raised inside the work, which leaves nothing half-
written: chain sets and reports are saved atomically after the last chain). One job per
workspace and kind at a time, and one doing model work per server (others wait, "queued"). Jobs
live as long as the server: a restart forgets them.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from rcsd_core.errors import InputError
from rcsd_core.studio.jobs import format_seconds  # noqa: F401  (pages show durations with it)
from rcsd_core.studio.state import show_error

ACTIVE = ("queued", "running")


class JobCancelled(Exception):
    """Raised inside a job's work at its next progress report after cancel()."""


@dataclass
class Job:
    kind: str
    label: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    status: str = "queued"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int) -> None:
        """The work's progress report; raises JobCancelled once cancel() was asked."""
        if self._cancel.is_set():
            raise JobCancelled
        self.done, self.total = int(done), int(total)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set() and self.status in ACTIVE

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first unit is done."""
        if not self.done or not self.total or self.status != "running":
            return None
        return self.elapsed_s / self.done * (self.total - self.done)

    def describe(self) -> str:
        """One line for a progress bar: done/total, elapsed and ETA."""
        if self.cancelling:
            return f"{self.label}: cancelling…"
        if self.status == "queued":
            return f"{self.label}: waiting for the studio's other job to finish"
        count = f"{self.done}/{self.total}" if self.total else "starting"
        eta = f" · about {format_seconds(self.eta_s)} left" if self.eta_s is not None else ""
        return f"{self.label}: {count} · {format_seconds(self.elapsed_s)} so far{eta}"


@st.cache_resource(show_spinner=False)
def _registry() -> tuple[threading.Lock, dict[tuple[str, str], Job]]:
    """The server's jobs, newest per (workspace, kind); one registry per server process."""
    return threading.Lock(), {}


@st.cache_resource(show_spinner=False)
def _model_work() -> threading.Lock:
    """Held by the job doing model work: one at a time per server, so jobs do not split the CPU
    cores between them and each one's seed gives the chains it would give alone (sampling seeds
    torch's global generator)."""
    return threading.Lock()


def latest(root: str | Path, kind: str) -> Job | None:
    """The newest job of `kind` in this workspace (running or finished), or None."""
    lock, jobs = _registry()
    with lock:
        return jobs.get((str(root), kind))


def start(root: str | Path, kind: str, label: str, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
    """Run `work(*args, progress=job.progress, **kwargs)` in a thread; InputError when one is running."""
    lock, jobs = _registry()
    with lock:
        running = jobs.get((str(root), kind))
        if running is not None and running.status in ACTIVE:
            raise InputError(f"{running.label} is still running; cancel it or wait for it to finish")
        job = Job(kind=kind, label=label)
        jobs[(str(root), kind)] = job

    def run() -> None:
        try:
            with _model_work():
                if job._cancel.is_set():
                    raise JobCancelled
                job.status = "running"
                job.started = time.monotonic()
                job.result = work(*args, progress=job.progress, **kwargs)
            job.status = "done"
        except JobCancelled:
            job.status = "cancelled"
        except InputError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # shown on the page as one line; the server log has the traceback
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            import logging
            logging.getLogger("rcsd.studio").exception("%s failed", label)
        finally:
            job.finished = time.monotonic()

    threading.Thread(target=run, name=f"rcsd-{kind}-{job.id}", daemon=True).start()
    return job


def forget(root: str | Path, kind: str, job: Job) -> None:
    """Drop a finished job once its result has been taken (a later page run shows nothing)."""
    lock, jobs = _registry()
    with lock:
        if jobs.get((str(root), kind)) is job and job.status not in ACTIVE:
            del jobs[(str(root), kind)]


def show(root: str | Path, kind: str) -> Job | None:
    """Draw a running job's progress bar, ETA and Cancel button, redrawn every second; returns a
    finished job (done, failed or cancelled) for the page to take its result, None otherwise.

    When the job ends the whole page reruns once, so what it produced appears without a click.
    """
    job = latest(root, kind)
    if job is None:
        return None
    if job.status not in ACTIVE:
        return job

    def poll() -> None:
        current = latest(root, kind)
        if current is not job or job.status not in ACTIVE:
            st.rerun()
        st.progress(job.fraction, text=job.describe())
        if st.button("Cancel", key=f"cancel-{job.id}", disabled=job.cancelling):
            job.cancel()
            st.rerun(scope="fragment")

    st.fragment(run_every=1)(poll)()
    return None


def outcome(root: str | Path, kind: str, what: str) -> Job | None:
    """show() for a page section: the job when it finished well (taken: a later run shows nothing);
    a cancelled or failed one is said in one line and taken too; None while nothing finished."""
    finished = show(root, kind)
    if finished is None:
        return None
    forget(root, kind, finished)
    if finished.status == "done":
        return finished
    if finished.status == "cancelled":
        st.info(f"{what} cancelled: nothing was saved.")
    else:
        show_error(f"{what} failed: {finished.error}")
    return None


def started_by_button(root: str | Path, kind: str, button: str, label: str, work: Callable[..., Any], *args: Any,
                      what: str | None = None) -> Job | None:
    """A page section's button that starts `work(*args)` as job `kind` (a refusal said in one line),
    then outcome(): the job when it finished well, else None. `what` names it in the outcome's
    messages (default: `label`)."""
    if st.button(button, key=kind):
        try:
            start(root, kind, label, work, *args)
        except InputError as exc:
            show_error(exc)
    return outcome(root, kind, what or label)
