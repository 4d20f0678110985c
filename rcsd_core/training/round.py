"""One distillation round: the student learns from itself reading the rubric (DESIGN §1).

    python -m rcsd_core.training --run-dir runs/<id> [--resume]       # one process (CPU or one GPU)
    torchrun --nproc_per_node 2 -m rcsd_core.training --run-dir D      # data-parallel (gloo on CPU)
    accelerate launch --num_processes 8 -m rcsd_core.training --run-dir D   # several GPUs (DDP)
    rcsd train --config round.yaml --runs-root runs                 # create the run dir, then train

    from rcsd_core.training.round import train_round
    train_round("runs/r1")                                          # the same, from Python

Each step of an `rcsd` / `opsd` round:
  1. take `prompts_per_step` train prompts (a seeded order, cycling over epochs), split across ranks;
  2. sample `samples_per_prompt` chains per prompt from the student (LoRA model, task prompt only);
  3. score them with the rubric's checks (logged per criterion as `criterion/<id>`; a task's own
     criteria — `contracts.tasks.rubric_for_task` — by group as `group/<weight:class|tag:…>`);
  4. run the teacher — the same model given the rubric (rcsd) or the reference (opsd) as a system
     message — on [teacher prompt + the student's own completion], without grad; `frozen` disables
     the adapter, `live` uses it as it is, `ema` swaps in an exponential average of it;
  5. run the student on [student prompt + completion] and take the divergence over completion
     positions only (the eos token included), `chunk_size` positions at a time from the final
     hidden states (losses.lm_head_chunked_divergence), so full-vocabulary logits never exist for
     the whole batch;
  6. AdamW over the LoRA parameters, gradient clipping, warmup + cosine/linear/constant schedule.
`rejection_sft` instead keeps the best-scoring chain per prompt and takes cross-entropy on it.

Every `eval_every` steps (and before step 1, and at the end) the eval split is sampled in student
context with a fixed seed: `eval/total`, `eval/criterion/<id>`, and `eval/divergence` (student →
teacher on those held-out chains). Files (rank 0 only): see rcsd_core.contracts.runs.

Control: SIGTERM/SIGINT or a STOP file end the round after the current step with a checkpoint
and status `stopped`; `--resume` continues from the last checkpoint (adapter + optimizer,
scheduler, EMA and RNG state): sampling seeds derive from (seed, step, rank), so a resumed round
repeats no step, loses none, and reproduces the straight run. A crash writes status `failed`
with the error, and the traceback goes to log.txt.

Scale-out: accelerate's Accelerator (cpu=True without CUDA) sets up the processes; the LoRA model
is wrapped in DDP so gradients are averaged across ranks; every rank trains on its share of the
step's prompts and ends with identical weights. With RCSD_RANK_HASHES=1 each rank writes a hash
of its LoRA weights to <run>/rank-hashes/ (the two-process test compares them).

The parts, in this folder: `schedule` (lr factor, step prompts, seeds), `teacher` (kinds, EMA,
prompts), `objectives` (distillation and rejection-SFT steps), `checkpoints`, `metrics` (the
writer and the step summaries), `distributed` (gather, any-rank, stop requests). `Round` wires
them in torchtune's manner: setup (a list of `_setup_*` steps), train, save_checkpoint, cleanup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from functools import partial
from pathlib import Path

import torch

from rcsd_core.contracts import runs
from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks, task_criteria
from rcsd_core.errors import InputError
from rcsd_core.modeling.allocator import keep_freed_memory
from rcsd_core.modeling.contexts import student_prompt_ids
from rcsd_core.modeling.divergence import chain_divergence
from rcsd_core.modeling.models import compute_precision
from rcsd_core.training import checkpoints
from rcsd_core.training.distributed import RoundInterrupted, StopRequest, gather, gradient_sync, write_rank_hash
from rcsd_core.training.metrics import (MetricsWriter, PhasePeaks, close_logging, eval_metrics, same_file,
                                       setup_logging, train_metrics)
from rcsd_core.training.objectives import StepModels, distill_step, rejection_sft_step
from rcsd_core.training.reviewed import ReviewedChains, accepted_samples, load_reviewed
from rcsd_core.training.rollouts import Rollouts
from rcsd_core.training.schedule import derive_seed, lr_factor, step_tasks
from rcsd_core.training.teacher import Teacher
from rcsd_core.files import read_jsonl
from rcsd_core.scoring.watch import held_out_metrics, watch_alert

__all__ = ["Round", "train_round", "lr_factor", "derive_seed", "step_tasks"]

log = logging.getLogger("rcsd.train")


class Round:
    """A distillation round over one run directory: setup, train, save_checkpoint, cleanup."""

    def __init__(self, run_dir: str | Path, *, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.step = 0
        self.checkpoint_step = 0  # the step of the newest checkpoint on disk (0: none)
        self.stop = StopRequest(self.run_dir)
        self._log_handler: logging.Handler | None = None

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """The steps in order: the LoRA init is seeded after the model loads, a checkpoint loads into
        the plain model before DDP wraps it, and signals are taken last (cleanup gives them back)."""
        self._setup_accelerator()
        self._setup_logging()
        self._setup_checks()
        self._setup_data()
        self._setup_model()
        self._setup_optimizer()
        self._setup_teacher()
        self._setup_resume()
        self._setup_data_parallel()
        self._setup_signals()

    def _setup_accelerator(self) -> None:
        from accelerate import Accelerator

        from rcsd_core.modeling.models import resolve_device

        self.config = runs.load_run_config(self.run_dir)
        self.accelerator = Accelerator(cpu=resolve_device(self.config.device).type == "cpu")
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device

    def _setup_logging(self) -> None:
        # stderr on every rank; log.txt on rank 0 unless stderr already goes there (launch_round)
        self._log_handler = setup_logging(self.run_dir, rank=self.rank, world=self.world, is_main=self.is_main)
        self.writer = MetricsWriter(self.run_dir, enabled=self.is_main)

    def _setup_checks(self) -> None:
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.device.type == "cpu":
            keep_freed_memory()     # a CPU step reuses its large blocks instead of faulting them in again
        if config.prompts_per_step % self.world:
            raise InputError(f"prompts_per_step ({config.prompts_per_step}) must be divisible by the number of "
                             f"processes ({self.world})", field="prompts_per_step")
        if config.divergence == "topk_forward_kl" and config.clip_mode == "entry" and config.method != "rejection_sft":
            log.warning("clip_mode 'entry' reproduces the official code; measured here it pushed the student "
                        "away from the teacher (DESIGN §1, §4)")

    def _setup_data(self) -> None:
        config = self.config
        self.rubric = rubric_from_data(config.rubric)
        self.criterion_ids = [c.id for c in self.rubric.criteria]
        self.train_tasks = load_tasks(config.tasks, split="train")
        eval_tasks = load_tasks(config.tasks, split="eval")
        # tasks with their own criteria: refused now if they cannot combine with the rubric; their
        # criteria are logged by group (group/<name>), the shared ones by id
        check_task_rubrics(self.rubric, self.train_tasks + eval_tasks, source=config.tasks)
        self.own_criteria = {k: v for k, v in task_criteria(self.rubric, self.train_tasks + eval_tasks).items() if v}
        self.eval_tasks = eval_tasks[:config.eval_tasks] if config.eval_tasks else eval_tasks
        if not self.eval_tasks:
            log.warning("no eval tasks (split 'eval'): the round runs without evaluation")
        self.reviewed = load_reviewed(config.reviewed_chains) if config.reviewed_chains else ReviewedChains()
        if config.reviewed_chains:
            log.info("reviewed chains: %d rejected (never targets), %d accepted", len(self.reviewed.rejected),
                     sum(len(v) for v in self.reviewed.accepted.values()))

    def _setup_model(self) -> None:
        from rcsd_core.modeling.models import attach_lora, enable_checkpointing, load_model

        config = self.config
        self.model, self.tokenizer = load_model(config.model, device=str(self.device), dtype=config.dtype,
                                                seed=config.seed)
        if config.gradient_checkpointing:
            enable_checkpointing(self.model)
        torch.manual_seed(config.seed)  # the LoRA A matrices: identical on every rank
        self.model = attach_lora(self.model, rank=config.lora_rank, alpha=config.lora_alpha,
                                 targets=config.lora_targets, dropout=config.lora_dropout)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.peaks = PhasePeaks(self.device)

    def _setup_optimizer(self) -> None:
        config = self.config
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        # LambdaLR counts steps done from 0; lr_factor takes the 1-based step about to be taken
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda done: lr_factor(done + 1, config))

    def _setup_teacher(self) -> None:
        self.teacher = Teacher(self.model, self.tokenizer, self.rubric, self.config)
        check_context(self.model, self.config, [self.teacher.prompt(t) for t in self.train_tasks + self.eval_tasks])
        self.rollouts = Rollouts(self.model, self.tokenizer, self.rubric, self.config, self.teacher,
                                 interrupt=self.stop.interrupt_point)

    def _setup_resume(self) -> None:
        """--resume: the newest complete checkpoint's adapter, optimizer, scheduler, teacher and RNG state."""
        if not self.resume:
            return
        if self.is_main:  # a save interrupted between its renames left the checkpoint beside adapter/
            checkpoints.recover_checkpoint(self.run_dir)
        self.accelerator.wait_for_everyone()
        loaded = checkpoints.load_checkpoint(self.run_dir, self.model, self.device)
        if loaded is None:
            log.warning("no checkpoint to resume from: starting the round from step 1")
            self.writer.truncate(-1)
            return
        meta, state = loaded
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.teacher.load_state_dict(state, self.device)
        checkpoints.restore_rng(state)
        self.step = self.checkpoint_step = int(meta["step"])
        self.writer.truncate(self.step)  # metric and sample lines after the checkpoint: that step reruns
        log.info("resuming after step %d of %d", self.step, self.config.steps)

    def _setup_data_parallel(self) -> None:
        # DDP averages the LoRA gradients across ranks; one process keeps the plain model.
        train_model = self.accelerator.prepare_model(self.model) if self.world > 1 else self.model
        self.step_models = StepModels.of(self.model, train_model, self.tokenizer.pad_token_id, self.device,
                                         sync=lambda last: gradient_sync(self.accelerator, train_model, last=last),
                                         compile_layers=self.config.student_compile)

    def _setup_signals(self) -> None:
        # one process stops inside a step; several finish the step together (their collectives pair up)
        self.stop.within_step = self.world == 1
        self.stop.install()

    def cleanup(self) -> None:
        self.stop.restore()
        close_logging(self._log_handler)
        self._log_handler = None

    # ------------------------------------------------------------------ the loop

    def train(self) -> dict:
        config = self.config
        self.writer.start(config, step=self.step, processes=self.world, device=self.device)
        self.accelerator.wait_for_everyone()
        try:
            final, stopping = self._run_steps()
        except RoundInterrupted:  # one process, stopped inside a step: drop it, keep what was completed
            final, stopping = {}, True
            self.optimizer.zero_grad(set_to_none=True)
            log.warning("stop requested during step %d: that step is dropped", self.step + 1)
            if self.step > self.checkpoint_step:
                self.save_checkpoint()
            self.stop.answer(self.accelerator)
        if os.environ.get("RCSD_RANK_HASHES") == "1":
            write_rank_hash(self.run_dir, self.rank, self.teacher.named_params)
        status = "stopped" if stopping else "done"
        self.writer.finish(status, step=self.step, steps=config.steps, checkpoint=self.checkpoint_step or None)
        self.accelerator.wait_for_everyone()
        return {"status": status, "step": self.step, "steps": config.steps, "metrics": final}

    def _run_steps(self) -> tuple[dict, bool]:
        """The evaluation before step 1, then steps to the end or a stop; (last metrics, stopped)."""
        config = self.config
        if self.step == 0 and self.eval_tasks:
            metrics, records = self.evaluate(0)
            self.writer.write(self.watch({"step": 0, **metrics}), records)
        final, stopping = {}, False
        while self.step < config.steps and not stopping:
            step = self.step + 1
            metrics, records = self.train_step(step)
            self.step = step
            last = step == config.steps
            stopping = not last and self.stop.should_stop(self.accelerator)
            if self.eval_tasks and not stopping and (last or (config.eval_every and step % config.eval_every == 0)):
                held_out, held_out_records = self.evaluate(step)
                metrics.update(held_out)
                records += held_out_records
                metrics = self.watch(metrics)
            self.writer.write(metrics, records)
            final = metrics
            if last or stopping or (config.checkpoint_every and step % config.checkpoint_every == 0):
                self.save_checkpoint(final=last)
            if stopping:
                self.stop.answer(self.accelerator)
        return final, stopping

    def train_step(self, step: int) -> tuple[dict, list[dict]]:
        """Sample, score, one objective, one optimizer step; the step's metrics and chains (all ranks)."""
        config = self.config
        start = time.perf_counter()
        mine = step_tasks(self.train_tasks, config, step)[self.rank::self.world]
        self.teacher.ensure_analysis(mine)
        t0 = time.perf_counter()
        with self.peaks.phase("sampling"):
            samples = self.rollouts.sample(mine, n=config.samples_per_prompt,
                                           seed=derive_seed(config.seed, step, self.rank))
        sampling_s = time.perf_counter() - t0
        records = self.rollouts.score(mine, samples, step=step, kind="train", prefix=f"{step}:")

        self.optimizer.zero_grad(set_to_none=True)
        if config.method == "rejection_sft":
            extra = (accepted_samples(self.reviewed, mine, self.tokenizer, partial(student_prompt_ids, self.tokenizer))
                     if config.reviewed_use == "sft" else [])
            with self.peaks.phase("student"):
                stats = rejection_sft_step(self.step_models, samples, records, config,
                                           between=self.stop.interrupt_point, rejected=self.reviewed.rejected,
                                           extra=extra)
            stats.pop("targets")
        else:
            stats = distill_step(self.step_models, self.teacher, self.rollouts.teacher_prompts(mine, samples), samples, config,
                                 between=self.stop.interrupt_point, phase=self.peaks.phase)
        t0 = time.perf_counter()
        grad_norm = None
        if config.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.teacher.update()
        stats.update(sampling_s=sampling_s, optimizer_s=time.perf_counter() - t0,
                     sampled_tokens=sum(s.n_tokens for s in samples))

        gathered = gather(self.accelerator, {"stats": stats, "records": records})
        all_records = [r for g in gathered for r in g["records"]]
        metrics = train_metrics(step, [g["stats"] for g in gathered], all_records, self.criterion_ids,
                                own=self.own_criteria, method=config.method, grad_norm=grad_norm, lr=lr,
                                seconds=time.perf_counter() - start, peak_gib=self.peaks.round_gib(),
                                phase_peaks=self.peaks.take())
        return metrics, all_records

    def evaluate(self, step: int) -> tuple[dict, list[dict]]:
        """Sample the eval split in student context (fixed seed), score, and the held-out divergence."""
        config = self.config
        t0 = time.perf_counter()
        mine = self.eval_tasks[self.rank::self.world]
        div_sum, div_tokens, records = 0.0, 0, []
        if mine:
            self.teacher.ensure_analysis(mine)
            log.info("evaluating %d prompts x %d chains at step %d", len(mine), config.eval_samples, step)
            samples = self.rollouts.sample(mine, n=config.eval_samples, seed=derive_seed(config.eval_seed, self.rank),
                                  report=True)
            records = self.rollouts.score(mine, samples, step=step, kind="eval", prefix=f"eval{step}:")
            # sampled_token's loss is no divergence: held-out chains report the reverse KL instead
            name = config.divergence if config.divergence != "sampled_token" else "reverse_kl"
            self.model.eval()
            with compute_precision(self.model):
                div_sum, div_tokens = chain_divergence(
                    self.model, self.tokenizer, samples, self.rollouts.teacher_prompts(mine, samples), name=name,
                    params=config.divergence_params() if name == config.divergence else {},
                    micro_batch_size=config.micro_batch_size, chunk_size=config.chunk_size,
                    teacher_context=self.teacher.weights, prefixes=self.teacher.prefixes)
        gathered = gather(self.accelerator, {"records": records, "div": (div_sum, div_tokens)})
        all_records = [r for g in gathered for r in g["records"]]
        metrics = eval_metrics(all_records, self.criterion_ids, own=self.own_criteria, div_sum=sum(g["div"][0] for g in gathered),
                               div_tokens=sum(g["div"][1] for g in gathered), seconds=time.perf_counter() - t0)
        metrics.update(held_out_metrics(self.rubric, all_records, seed=config.eval_seed))
        return metrics, all_records

    def watch(self, metrics: dict) -> dict:
        """The held-out watch after an evaluation (rank 0): an alert in the metrics line (`watch/alert`),
        status.json (`alert`) and log.txt when the trained total rose while a held-out criterion fell."""
        held = [c.id for c in self.rubric.held_out_criteria]
        if not held or not self.is_main:
            return metrics
        path = self.run_dir / runs.METRICS_FILE
        history = read_jsonl(path, tolerate_partial_tail=True) if path.exists() else []
        alert = watch_alert([*history, metrics], held)
        if alert:
            log.warning("held-out watch: %s", alert)
            runs.write_status(self.run_dir, "running", alert=alert)
            metrics = {**metrics, "watch/alert": alert}
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, *, final: bool = False) -> None:
        """adapter/ (peft format) + training_state.pt + checkpoint.json, swapped in atomically (rank 0)."""
        self.stop.saving = True  # a second signal now waits for the checkpoint
        if self.is_main:
            config = self.config
            state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), **self.teacher.state_dict(), **checkpoints.rng_state()}
            meta = {"step": self.step, "steps": config.steps, "final": final, "saved": runs.now(),
                    "method": config.method, "model": config.model}
            target = checkpoints.save_checkpoint(self.run_dir, self.model, state, meta)
            log.info("checkpoint at step %d -> %s", self.step, target)
        self.accelerator.wait_for_everyone()
        self.checkpoint_step = self.step
        self.stop.saving = False


# ---------------------------------------------------------------------------- checks


def check_context(model, config, teacher_prompts: list[list[int]]) -> None:
    """Refuse a round whose longest teacher prompt plus `max_new_tokens` exceeds the model's context.

    Checked once the model is loaded, before any sampling, so such a round fails in seconds with the
    numbers, not minutes later with a traceback. (The teacher prompt is the longer context: rubric,
    worked examples and the task; a teacher analysis note adds up to ANALYSIS_TOKENS more.)
    """
    from rcsd_core.training.teacher import ANALYSIS_TOKENS

    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not limit or not teacher_prompts:
        return
    longest = max(len(p) for p in teacher_prompts) + (ANALYSIS_TOKENS if config.teacher_analysis else 0)
    if longest + config.max_new_tokens > limit:
        raise InputError(f"the longest teacher prompt ({longest} tokens) plus max_new_tokens "
                         f"({config.max_new_tokens}) exceeds the model's context of {limit} tokens; "
                         f"lower max_new_tokens to at most {max(limit - longest, 0)}", field="max_new_tokens")


# ---------------------------------------------------------------------------- entry point


def train_round(run_dir: str | Path, *, resume: bool = False) -> dict:
    """Run (or resume) the round of a run directory to its end or a stop; returns a summary.

    A failure sets status `failed` with the error (traceback in log.txt) and re-raises.
    """
    # Rank 0 owns the run directory for the whole round (torchrun and accelerate set RANK). Another
    # process holding it raises RunLocked here, before anything is written: its status stays its own.
    owner = runs.RunLock(run_dir, purpose="round") if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
    with owner:
        return _run_round(run_dir, resume=resume)


def _run_round(run_dir: str | Path, *, resume: bool) -> dict:
    round_ = Round(run_dir, resume=resume)
    try:
        round_.setup()
        return round_.train()
    except BaseException as exc:
        if getattr(round_, "is_main", True):
            message = exc.describe() if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, KeyboardInterrupt):
                saved = checkpoints.checkpoint_step(Path(run_dir) / runs.ADAPTER_DIR)
                message = ("interrupted by a second stop signal; " +
                           (f"resume continues after the checkpoint of step {saved}" if saved else
                            "no checkpoint was saved, so resume starts from step 1"))
            log.error("round failed: %s\n%s", message, traceback.format_exc())
            _write_failure(Path(run_dir), message, round_.step)
        raise
    finally:
        round_.cleanup()


def _write_failure(run_dir: Path, message: str, step: int) -> None:
    if not (run_dir / runs.CONFIG_FILE).exists():
        return
    # log.txt gets the traceback even when logging had not been set up yet
    if not any(isinstance(h, logging.FileHandler) for h in log.handlers) and \
            not same_file(sys.stderr, run_dir / runs.LOG_FILE):
        with open(run_dir / runs.LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"round failed: {message}\n{traceback.format_exc()}\n")
    runs.write_status(run_dir, "failed", error=message, step=step, pid=os.getpid(), finished=runs.now())
