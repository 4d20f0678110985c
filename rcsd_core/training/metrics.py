"""What a round writes as it goes: samples, one metrics line per step, the status step, log.txt.

In the manner of torchtune's disk logger: one JSON line per step, flushed as it is written, so
the studio's live chart (which skips a half-written last line) reads a running round. Only rank 0
writes; on the other ranks the writer does nothing. The summaries that turn the ranks' gathered
stats into a step's metrics (`train_metrics`, `eval_metrics`) are pure and live here too, so the
metric keys of the run-directory contract (DESIGN §2) are spelled in one file.

    writer = MetricsWriter(run_dir, enabled=accelerator.is_main_process)
    writer.start(config, step=0, processes=1, device="cpu")       # status running, the round's log line
    writer.write({"step": 3, "train/loss": 0.12, ...}, records)   # samples, metrics, status, log line
    writer.finish("done", step=3, steps=3)                        # status done|stopped
    writer.truncate(2)                                            # on resume: drop lines after step 2
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Mapping, Sequence

import torch

from rcsd_core.contracts import runs
from rcsd_core.files import append_jsonl, read_jsonl, write_jsonl
from rcsd_core.scoring.groups import group_means, group_values
from rcsd_core.scoring.stats import mean_or_none

log = logging.getLogger("rcsd.train")

# The keys the one-line log summary shows, in order; `train/` is dropped from the names.
LOG_KEYS = ("train/loss", "train/divergence", "train/total", "eval/total", "eval/divergence", "train/tokens_per_s",
            "time/step_s")


# ---------------------------------------------------------------------------- the writer


class MetricsWriter:
    """Rank 0's files of a running round: samples.jsonl, metrics.jsonl, status.json, the log lines."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled

    def start(self, config, *, step: int, processes: int, device) -> None:
        """Status `running` (pid, steps, processes, device) and the round's first log line."""
        if not self.enabled:
            return
        runs.write_status(self.run_dir, "running", pid=os.getpid(), step=step, steps=config.steps, error=None,
                          started=runs.now(), processes=processes, device=str(device))
        log.info("round %s: %s, %s teacher, %s, %d steps x %d prompts x %d samples x %d tokens, %d process(es) on %s",
                 self.run_dir.name, config.method, config.teacher, config.divergence, config.steps,
                 config.prompts_per_step, config.samples_per_prompt, config.max_new_tokens, processes, device)

    def finish(self, status: str, *, step: int, steps: int, checkpoint: int | None = None) -> None:
        """The final status (done | stopped, with the step of the newest checkpoint) and its log line."""
        if not self.enabled:
            return
        runs.write_status(self.run_dir, status, step=step, checkpoint=checkpoint, finished=runs.now())
        if status == "done":
            log.info("round done at step %d/%d", step, steps)
            return
        saved = (f"checkpoint at step {checkpoint}; resume continues from step {checkpoint + 1}" if checkpoint
                 else "no checkpoint: resume starts from step 1")
        log.info("round %s at step %d/%d (%s)", status, step, steps, saved)

    def write(self, metrics: dict, records: list[dict]) -> None:
        """One step: its chains (one flushed write), then its metrics line, then the status step."""
        if not self.enabled:
            return
        append_records(self.run_dir / runs.SAMPLES_FILE, records)
        append_jsonl(self.run_dir / runs.METRICS_FILE, metrics)
        runs.write_status(self.run_dir, "running", step=metrics["step"])
        log.info(format_metrics(metrics))

    def truncate(self, step: int) -> None:
        """Drop metric and sample lines written after `step` (-1: all), so a resumed round repeats no step."""
        if not self.enabled:
            return
        for name in (runs.METRICS_FILE, runs.SAMPLES_FILE):
            path = self.run_dir / name
            if path.exists():
                kept = [r for r in read_jsonl(path, tolerate_partial_tail=True) if r.get("step", 0) <= step]
                write_jsonl(path, kept)


def append_records(path: Path, records: list[dict]) -> None:
    """Append records as JSON lines in one write, flushed and synced (a reader sees whole steps)."""
    if not records:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def format_metrics(m: dict) -> str:
    """The log line of a step, e.g. `step 3 loss=0.0016 divergence=0.0016 total=0.09 ...`."""
    parts = [f"step {m['step']}"]
    for k in LOG_KEYS:
        if m.get(k) is not None:
            parts.append(f"{k.split('/', 1)[1] if k.startswith('train/') else k}={m[k]:.4g}")
    return " ".join(parts)


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or on CPU the process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class PhasePeaks:
    """The peak GPU memory of each phase of a step, and of the round, on CUDA (nothing on a CPU).

        peaks = PhasePeaks(device)
        with peaks.phase("sampling"): ...          # and "teacher", "student" (a micro-batch at a time)
        peaks.take()       # {"sampling": GiB, ...}: each phase's highest since the last take; cleared
        peaks.round_gib()  # the round's peak so far, every phase included (memory/peak_gib)

    A phase starts with torch's peak counter reset to what is allocated then, so its figure is its
    own high-water mark: what it found allocated plus what it added. The counter's earlier peak is
    kept first, so the round's peak stays what `peak_memory_gib` would have said without the resets.
    Why: the round's peak alone does not say which phase to shrink (on an H100, freeing the
    sampler's cache before the teacher and student passes took only 0.13 of 6.12 GiB off a
    Qwen3-0.6B round's peak)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.peaks: dict[str, float] = {}
        self.before = 0.0                        # the highest the counter reached before its last reset

    def phase(self, name: str):
        return self._phase(name) if self.cuda else contextlib.nullcontext()

    @contextlib.contextmanager
    def _phase(self, name: str):
        self.before = self.round_gib()
        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield
        finally:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak)

    def take(self) -> dict[str, float]:
        peaks, self.peaks = self.peaks, {}
        return peaks

    def round_gib(self) -> float:
        if not self.cuda:
            return peak_memory_gib(self.device)
        return max(self.before, torch.cuda.max_memory_allocated(self.device) / 2**30)


# ---------------------------------------------------------------------------- step summaries


def group_metrics(records: Sequence[dict], own: Mapping[str, Sequence] | None, prefix: str) -> dict:
    """`<prefix>group/<name>`: the mean score of the tasks' own criteria per group (weight class, tag;
    `scoring.groups`) over the chains' (chain, criterion) pairs, instead of a key per task criterion."""
    if not own:
        return {}
    values = group_values(records, lambda r: own.get(r.get("task_id"), ()))
    return {f"{prefix}group/{g}": mean for g, mean in group_means(values).items()}


def train_metrics(step: int, stats: Sequence[dict], records: Sequence[dict], criterion_ids: Sequence[str], *,
                  method: str, grad_norm: float | None, lr: float, seconds: float, peak_gib: float,
                  own: Mapping[str, Sequence] | None = None, phase_peaks: Mapping[str, float] | None = None) -> dict:
    """A train step's metrics line from every rank's stats and scored chains.

    Losses are per-token means over all ranks' chains (sums / tokens); times are the slowest rank's.
    `criterion_ids` are the shared rubric's (`criterion/<id>`, over the chains it applies to); `own`
    (task id → its own criteria, `contracts.tasks.task_criteria`) adds `group/<name>`; `phase_peaks`
    (`PhasePeaks.take()`, on a GPU) adds `memory/<phase>_peak_gib`.
    """
    tokens = sum(s["tokens"] for s in stats)
    metrics = {"step": step, "train/loss": sum(s["loss_sum"] for s in stats) / max(1, tokens)}
    if method != "rejection_sft":
        metrics["train/divergence"] = sum(s["div_sum"] for s in stats) / max(1, tokens)
    for cid in criterion_ids:
        metrics[f"criterion/{cid}"] = mean_or_none(r["scores"].get(cid) for r in records)
    metrics.update(group_metrics(records, own, ""))
    metrics["train/total"] = mean_or_none(r["total"] for r in records)
    metrics.update({
        "train/completion_tokens": tokens,
        "train/mean_chain_tokens": mean_or_none(r["n_tokens"] for r in records),
        "train/tokens_per_s": tokens / seconds if seconds > 0 else None,
        "train/grad_norm": grad_norm,
        "lr": lr,
        "memory/peak_gib": round(max(peak_gib, 0.0), 3),
    })
    metrics.update({f"memory/{phase}_peak_gib": round(gib, 3) for phase, gib in (phase_peaks or {}).items()})
    for phase in ("sampling", "teacher", "student", "optimizer"):
        metrics[f"time/{phase}_s"] = round(max(s[f"{phase}_s"] for s in stats), 3)
    metrics["time/step_s"] = round(seconds, 3)
    return metrics


def eval_metrics(records: Sequence[dict], criterion_ids: Sequence[str], *, div_sum: float, div_tokens: int,
                 seconds: float, own: Mapping[str, Sequence] | None = None) -> dict:
    """The `eval/` metrics of a held-out evaluation from all ranks' scored chains and divergence sums."""
    metrics = {"eval/total": mean_or_none(r["total"] for r in records)}
    for cid in criterion_ids:
        metrics[f"eval/criterion/{cid}"] = mean_or_none(r["scores"].get(cid) for r in records)
    metrics.update(group_metrics(records, own, "eval/"))
    metrics["eval/divergence"] = div_sum / div_tokens if div_tokens else None
    metrics["eval/mean_chain_tokens"] = mean_or_none(r["n_tokens"] for r in records)
    metrics["time/eval_s"] = round(seconds, 3)
    return metrics


# ---------------------------------------------------------------------------- log.txt


def setup_logging(run_dir: Path, *, rank: int, world: int, is_main: bool) -> logging.Handler | None:
    """The round's logger: stderr on every rank (warnings only off rank 0), and log.txt on rank 0.

    Returns the log.txt handler for close_logging, or None when stderr already goes to log.txt
    (launch_round redirects it there) or this is not rank 0.
    """
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s " + (f"[rank {rank}] " if world > 1 else "")
                            + "%(message)s", "%Y-%m-%d %H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and getattr(h, "_rcsd", False) for h in log.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream._rcsd = True
        stream.setFormatter(fmt)
        log.addHandler(stream)
    path = run_dir / runs.LOG_FILE
    if not is_main or same_file(sys.stderr, path):
        return None
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(fmt)
    log.addHandler(handler)
    return handler


def close_logging(handler: logging.Handler | None) -> None:
    if handler is not None:
        log.removeHandler(handler)
        handler.close()


def same_file(stream, path: Path) -> bool:
    """Whether `stream` (e.g. sys.stderr) already writes to `path`."""
    try:
        return path.exists() and os.path.samestat(os.fstat(stream.fileno()), path.stat())
    except (OSError, ValueError, AttributeError):
        return False
