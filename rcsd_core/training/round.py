"""One distillation round: the student learns from itself reading the rubric (DESIGN §1).

    python -m rcsd_core.training --run-dir runs/<id> [--resume]       # one process (CPU or one GPU)
    torchrun --nproc_per_node 2 -m rcsd_core.training --run-dir D      # data-parallel (gloo on CPU)
    accelerate launch --num_processes 8 -m rcsd_core.training --run-dir D   # several GPUs (DDP)
    rcsd train --config round.yaml --runs-root runs                 # create the run dir, then train

Each step of an `rcsd` / `opsd` round:
  1. take `prompts_per_step` train prompts (a seeded order, cycling over epochs), split across ranks;
  2. sample `samples_per_prompt` chains per prompt from the student (LoRA model, task prompt only);
  3. score them with the rubric's checks (logged per criterion as `criterion/<id>`);
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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import RoundConfig
from rcsd_core.contracts.messages import encode_messages
from rcsd_core.errors import InputError
from rcsd_core.files import append_jsonl, atomic_write_text, read_jsonl, write_jsonl
from rcsd_core.modeling.batching import pack_batch
from rcsd_core.modeling.contexts import analysis_messages, student_prompt_ids, teacher_prompt_ids
from rcsd_core.modeling.divergence import chain_divergence, completion_hidden, teacher_hidden
from rcsd_core.modeling.generation import Sample, sample_chains
from rcsd_core.modeling.losses import lm_head_chunked_divergence
from rcsd_core.scoring.scores import score_samples
from rcsd_core.scoring.stats import mean_or_none
from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.contracts.tasks import Task, load_tasks

log = logging.getLogger("rcsd.train")
STATE_FILE = "training_state.pt"
CHECKPOINT_FILE = "checkpoint.json"
HASH_DIR = "rank-hashes"


# ---------------------------------------------------------------------------- schedules and seeds


def lr_factor(step: int, config: RoundConfig) -> float:
    """Multiplier of the learning rate at 1-based step `step`: linear warmup, then the schedule."""
    warmup = config.warmup_steps
    if warmup and step <= warmup:
        return step / warmup
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, config.steps - warmup - 1)
    progress = min(1.0, max(0.0, (step - warmup - 1) / span))
    floor = config.min_lr_ratio
    if config.lr_schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (seed, step, rank, ...), stable across runs and processes."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0] % (2**31 - 1))


def step_tasks(train: list[Task], config: RoundConfig, step: int) -> list[Task]:
    """The prompts of a 1-based step: a seeded permutation per epoch, consumed in order."""
    n = len(train)
    out = []
    for j in range(config.prompts_per_step):
        i = (step - 1) * config.prompts_per_step + j
        epoch, index = divmod(i, n)
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        out.append(train[int(order[index])])
    return out


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---------------------------------------------------------------------------- the round


class Round:
    """A distillation round over one run directory: setup, train, save_checkpoint, cleanup."""

    def __init__(self, run_dir: str | Path, *, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.stop_requested = False
        self._handlers: dict = {}
        self._log_handler: logging.Handler | None = None

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        from accelerate import Accelerator

        from rcsd_core.modeling.models import attach_lora, enable_checkpointing, load_model, resolve_device

        self.config = config = runs.load_run_config(self.run_dir)
        on_cpu = resolve_device(config.device).type == "cpu"
        self.accelerator = Accelerator(cpu=on_cpu)
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self._setup_logging()
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.prompts_per_step % self.world:
            raise InputError(f"prompts_per_step ({config.prompts_per_step}) must be divisible by the number of "
                             f"processes ({self.world})", field="prompts_per_step")
        if config.divergence == "topk_forward_kl" and config.clip_mode == "entry" and config.method != "rejection_sft":
            log.warning("clip_mode 'entry' reproduces the official code; measured here it pushed the student "
                        "away from the teacher (DESIGN §1, §4)")

        self.rubric = rubric_from_data(config.rubric)
        self.train_tasks = load_tasks(config.tasks, split="train")
        eval_tasks = load_tasks(config.tasks, split="eval")
        self.eval_tasks = eval_tasks[:config.eval_tasks] if config.eval_tasks else eval_tasks
        if not self.eval_tasks:
            log.warning("no eval tasks (split 'eval'): the round runs without evaluation")

        self.device = self.accelerator.device
        self.model, self.tokenizer = load_model(config.model, device=str(self.device), dtype=config.dtype,
                                                seed=config.seed)
        if config.gradient_checkpointing:
            enable_checkpointing(self.model)
        torch.manual_seed(config.seed)  # the LoRA A matrices: identical on every rank
        self.model = attach_lora(self.model, rank=config.lora_rank, alpha=config.lora_alpha,
                                 targets=config.lora_targets, dropout=config.lora_dropout)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda done: lr_factor(done + 1, config))
        self.ema = {n: p.detach().clone() for n, p in self.named_params} if config.teacher == "ema" else None
        self.analysis: dict[str, str] = {}
        self.step = 0
        if self.resume:
            self._load_checkpoint()
        # DDP averages the LoRA gradients across ranks; one process keeps the plain model.
        self.train_model = self.accelerator.prepare_model(self.model) if self.world > 1 else self.model
        self.lm_head = self.model.get_output_embeddings().weight
        self._install_signal_handlers()

    def _setup_logging(self) -> None:
        log.setLevel(logging.INFO)
        log.propagate = False
        if not self.is_main:
            log.setLevel(logging.WARNING)
        fmt = logging.Formatter("%(asctime)s %(levelname)s " + (f"[rank {self.rank}] " if self.world > 1 else "")
                                + "%(message)s", "%Y-%m-%d %H:%M:%S")
        if not any(isinstance(h, logging.StreamHandler) and getattr(h, "_rcsd", False) for h in log.handlers):
            stream = logging.StreamHandler(sys.stderr)
            stream._rcsd = True
            stream.setFormatter(fmt)
            log.addHandler(stream)
        # Also write log.txt, unless stderr already goes there (launch_round redirects it).
        path = self.run_dir / runs.LOG_FILE
        if self.is_main and not _same_file(sys.stderr, path):
            self._log_handler = logging.FileHandler(path, encoding="utf-8")
            self._log_handler.setFormatter(fmt)
            log.addHandler(self._log_handler)

    def _install_signal_handlers(self) -> None:
        def request(signum, frame):
            if self.stop_requested:  # a second signal: stop now, the last checkpoint stays
                raise KeyboardInterrupt
            self.stop_requested = True
            log.warning("received %s: stopping after this step (send it again to stop at once)",
                        signal.Signals(signum).name)

        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._handlers[sig] = signal.signal(sig, request)
        except ValueError:  # not the main thread (e.g. called from a worker thread): rely on the STOP file
            self._handlers = {}

    def cleanup(self) -> None:
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    # ------------------------------------------------------------------ teacher

    @contextlib.contextmanager
    def teacher_weights(self):
        """The teacher's weights for the duration of the block (always under no_grad)."""
        kind = self.config.teacher
        with torch.no_grad():
            if kind == "frozen":
                with self.model.disable_adapter():
                    yield
            elif kind == "live":
                yield
            else:  # ema: swap the average in, and the current weights back afterwards
                current = [p.detach().clone() for _, p in self.named_params]
                for n, p in self.named_params:
                    p.copy_(self.ema[n])
                try:
                    yield
                finally:
                    for (_, p), saved in zip(self.named_params, current):
                        p.copy_(saved)

    def update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.config.ema_decay
        with torch.no_grad():
            for n, p in self.named_params:
                self.ema[n].mul_(decay).add_(p.detach(), alpha=1 - decay)

    def teacher_prompt(self, task: Task) -> list[int]:
        config = self.config
        analysis = self.analysis.get(task.id) if config.teacher_analysis else None
        return teacher_prompt_ids(self.tokenizer, task, self.rubric, config.teacher_layout(), analysis=analysis)

    def ensure_analysis(self, tasks: list[Task]) -> None:
        """teacher_analysis: the frozen teacher's short note on what the rubric asks of each prompt (cached)."""
        if not self.config.teacher_analysis:
            return
        todo = list({t.id: t for t in tasks if t.id not in self.analysis}.values())
        if not todo:
            return
        prompts = [encode_messages(self.tokenizer, analysis_messages(t.prompt, self.rubric)) for t in todo]
        self.model.eval()
        with self.model.disable_adapter():
            notes, _ = sample_chains(self.model, self.tokenizer, prompts, n=1, max_new_tokens=96, temperature=0,
                                     batch_size=self.config.sampling_batch_size)
        for s in notes:
            self.analysis[todo[s.prompt_index].id] = s.text.strip()

    # ------------------------------------------------------------------ sampling

    def sample(self, tasks: list[Task], *, n: int, seed: int) -> list[Sample]:
        prompts = [student_prompt_ids(self.tokenizer, t) for t in tasks]
        self.model.eval()
        samples, _ = sample_chains(self.model, self.tokenizer, prompts, n=n, max_new_tokens=self.config.max_new_tokens,
                                   temperature=self.config.temperature, top_p=self.config.top_p, seed=seed,
                                   batch_size=self.config.sampling_batch_size)
        return samples

    # ------------------------------------------------------------------ losses

    def distill(self, tasks: list[Task], samples: list[Sample]) -> dict:
        """Teacher and student forwards on the chains, divergence backward; returns stats (this rank)."""
        config = self.config
        teacher_prompts = {t.id: self.teacher_prompt(t) for t in tasks}
        n_tokens = sum(s.n_tokens for s in samples)
        params = config.divergence_params()
        loss_sum = div_sum = 0.0
        t_teacher = t_student = 0.0
        micro = config.micro_batch_size
        starts = list(range(0, len(samples), micro))
        self.model.train()
        for i, start in enumerate(starts):
            part = samples[start:start + micro]
            completions = [s.completion_ids for s in part]
            t0 = time.perf_counter()
            with self.teacher_weights():  # (B, C, H); the rubric prefix the prompts share runs once
                ht = teacher_hidden(self.model, [teacher_prompts[tasks[s.prompt_index].id] for s in part],
                                    completions, self.tokenizer.pad_token_id)
            t1 = time.perf_counter()
            s_batch = pack_batch([s.prompt_ids for s in part], completions, self.tokenizer.pad_token_id).to(self.device)
            sync = contextlib.nullcontext() if i == len(starts) - 1 else self.accelerator.no_sync(self.train_model)
            with sync:
                hs = completion_hidden(self.train_model, s_batch)  # (B, C, H), grad to the LoRA weights
                part_tokens = int(s_batch.mask.sum())
                loss = lm_head_chunked_divergence(config.divergence, hs, ht, self.lm_head, s_batch.mask,
                                                  config.chunk_size, tokens=s_batch.tokens, **params)
                (loss * (part_tokens / n_tokens)).backward()
            loss_sum += float(loss.detach()) * part_tokens
            if config.divergence == "sampled_token":  # its loss is not a divergence: log the reverse KL
                with torch.no_grad():
                    div = lm_head_chunked_divergence("reverse_kl", hs.detach(), ht, self.lm_head, s_batch.mask,
                                                     config.chunk_size)
                div_sum += float(div) * part_tokens
            else:
                div_sum += float(loss.detach()) * part_tokens
            t_teacher += t1 - t0
            t_student += time.perf_counter() - t1
        return {"loss_sum": loss_sum, "div_sum": div_sum, "tokens": n_tokens,
                "teacher_s": t_teacher, "student_s": t_student}

    def rejection_sft(self, tasks: list[Task], samples: list[Sample], records: list[dict]) -> dict:
        """Cross-entropy on the best-scoring chain of each prompt (ties: the first sampled)."""
        config = self.config
        best: dict[int, int] = {}
        for i, (s, r) in enumerate(zip(samples, records)):
            score = r["total"] if r["total"] is not None else -math.inf
            j = best.get(s.prompt_index)
            if j is None or score > (records[j]["total"] if records[j]["total"] is not None else -math.inf):
                best[s.prompt_index] = i
        for i in best.values():
            records[i]["chosen"] = True
        chosen = [samples[i] for i in sorted(best.values())]
        n_tokens = sum(s.n_tokens for s in chosen)
        loss_sum = 0.0
        t0 = time.perf_counter()
        self.model.train()
        starts = list(range(0, len(chosen), config.micro_batch_size))
        for k, start in enumerate(starts):
            part = chosen[start:start + config.micro_batch_size]
            batch = pack_batch([s.prompt_ids for s in part], [s.completion_ids for s in part],
                               self.tokenizer.pad_token_id).to(self.device)
            sync = contextlib.nullcontext() if k == len(starts) - 1 else self.accelerator.no_sync(self.train_model)
            with sync:
                hidden = completion_hidden(self.train_model, batch)  # (B, C, H)
                rows = batch.mask.reshape(-1).nonzero().squeeze(-1)
                h = hidden.reshape(-1, hidden.shape[-1])[rows]  # (N, H)
                targets = batch.tokens.reshape(-1)[rows]
                part_sum = h.new_zeros((), dtype=torch.float32)
                for c in range(0, h.shape[0], config.chunk_size):  # (chunk, V) logits at a time
                    logits = F.linear(h[c:c + config.chunk_size], self.lm_head).float()
                    part_sum = part_sum + F.cross_entropy(logits, targets[c:c + config.chunk_size], reduction="sum")
                (part_sum / n_tokens).backward()
            loss_sum += float(part_sum.detach())
        return {"loss_sum": loss_sum, "div_sum": None, "tokens": n_tokens, "teacher_s": 0.0,
                "student_s": time.perf_counter() - t0}

    # ------------------------------------------------------------------ one step

    def train_step(self, step: int) -> tuple[dict, list[dict]]:
        config = self.config
        start = time.perf_counter()
        mine = step_tasks(self.train_tasks, config, step)[self.rank::self.world]
        self.ensure_analysis(mine)
        t0 = time.perf_counter()
        samples = self.sample(mine, n=config.samples_per_prompt, seed=derive_seed(config.seed, step, self.rank))
        sampling_s = time.perf_counter() - t0
        records = score_samples(self.rubric, mine, samples, step=step, kind="train")
        for r in records:
            r["id"] = f"{step}:{r['id']}"

        self.optimizer.zero_grad(set_to_none=True)
        if config.method == "rejection_sft":
            stats = self.rejection_sft(mine, samples, records)
        else:
            stats = self.distill(mine, samples)
        t0 = time.perf_counter()
        grad_norm = None
        if config.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.update_ema()
        optimizer_s = time.perf_counter() - t0

        stats.update(sampling_s=sampling_s, optimizer_s=optimizer_s,
                     sampled_tokens=sum(s.n_tokens for s in samples))
        gathered = self.gather({"stats": stats, "records": records})
        all_records = [r for g in gathered for r in g["records"]]
        all_stats = [g["stats"] for g in gathered]
        tokens = sum(s["tokens"] for s in all_stats)
        seconds = time.perf_counter() - start
        metrics = {
            "step": step,
            "train/loss": sum(s["loss_sum"] for s in all_stats) / max(1, tokens),
        }
        if config.method != "rejection_sft":
            metrics["train/divergence"] = sum(s["div_sum"] for s in all_stats) / max(1, tokens)
        for c in self.rubric.criteria:
            metrics[f"criterion/{c.id}"] = mean_or_none(r["scores"].get(c.id) for r in all_records)
        metrics["train/total"] = mean_or_none(r["total"] for r in all_records)
        metrics.update({
            "train/completion_tokens": tokens,
            "train/mean_chain_tokens": mean_or_none(r["n_tokens"] for r in all_records),
            "train/tokens_per_s": tokens / seconds if seconds > 0 else None,
            "train/grad_norm": grad_norm,
            "lr": lr,
            "memory/peak_gib": round(max(peak_memory_gib(self.device), 0.0), 3),
            "time/sampling_s": round(max(s["sampling_s"] for s in all_stats), 3),
            "time/teacher_s": round(max(s["teacher_s"] for s in all_stats), 3),
            "time/student_s": round(max(s["student_s"] for s in all_stats), 3),
            "time/optimizer_s": round(max(s["optimizer_s"] for s in all_stats), 3),
            "time/step_s": round(seconds, 3),
        })
        return metrics, all_records

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, step: int) -> tuple[dict, list[dict]]:
        """Sample the eval split in student context (fixed seed), score, and the held-out divergence."""
        config = self.config
        t0 = time.perf_counter()
        mine = self.eval_tasks[self.rank::self.world]
        div_sum, div_tokens, records = 0.0, 0, []
        if mine:
            self.ensure_analysis(mine)
            samples = self.sample(mine, n=config.eval_samples, seed=derive_seed(config.eval_seed, self.rank))
            records = score_samples(self.rubric, mine, samples, step=step, kind="eval")
            for r in records:
                r["id"] = f"eval{step}:{r['id']}"
            name = config.divergence if config.divergence != "sampled_token" else "reverse_kl"
            params = config.divergence_params() if name == config.divergence else {}
            teacher = {t.id: self.teacher_prompt(t) for t in mine}
            self.model.eval()
            div_sum, div_tokens = chain_divergence(
                self.model, self.tokenizer, samples, [teacher[mine[s.prompt_index].id] for s in samples],
                name=name, params=params, micro_batch_size=config.micro_batch_size, chunk_size=config.chunk_size,
                teacher_context=self.teacher_weights)
        gathered = self.gather({"records": records, "div": (div_sum, div_tokens)})
        all_records = [r for g in gathered for r in g["records"]]
        total_div = sum(g["div"][0] for g in gathered)
        total_tokens = sum(g["div"][1] for g in gathered)
        metrics = {"eval/total": mean_or_none(r["total"] for r in all_records)}
        for c in self.rubric.criteria:
            metrics[f"eval/criterion/{c.id}"] = mean_or_none(r["scores"].get(c.id) for r in all_records)
        metrics["eval/divergence"] = total_div / total_tokens if total_tokens else None
        metrics["eval/mean_chain_tokens"] = mean_or_none(r["n_tokens"] for r in all_records)
        metrics["time/eval_s"] = round(time.perf_counter() - t0, 3)
        return metrics, all_records

    # ------------------------------------------------------------------ distributed helpers

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def any_rank(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(value, "sum").item() > 0)

    def should_stop(self) -> bool:
        flag = self.stop_requested or (self.is_main and (self.run_dir / runs.STOP_FILE).exists())
        return self.any_rank(flag)

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, *, final: bool = False) -> None:
        """adapter/ (peft format) + training_state.pt + checkpoint.json, swapped in atomically."""
        if self.is_main:
            staging = self.run_dir / ".adapter.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            self.model.save_pretrained(str(staging))
            state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "ema": self.ema, "analysis": self.analysis,
                     "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
            torch.save(state, staging / STATE_FILE)
            atomic_write_text(staging / CHECKPOINT_FILE, json.dumps(
                {"step": self.step, "steps": self.config.steps, "final": final, "saved": runs.now(),
                 "method": self.config.method, "model": self.config.model}, indent=1) + "\n")
            target = self.run_dir / runs.ADAPTER_DIR
            old = self.run_dir / ".adapter.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
            log.info("checkpoint at step %d -> %s", self.step, target)
        self.accelerator.wait_for_everyone()

    def _load_checkpoint(self) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        adapter = self.run_dir / runs.ADAPTER_DIR
        if not (adapter / CHECKPOINT_FILE).is_file():
            log.warning("no checkpoint to resume from: starting the round from step 1")
            self._truncate_logs(-1)
            return
        meta = json.loads((adapter / CHECKPOINT_FILE).read_text())
        result = set_peft_model_state_dict(self.model, load_file(str(adapter / "adapter_model.safetensors")))
        if getattr(result, "unexpected_keys", None):
            raise RuntimeError(f"checkpoint does not fit the model: {result.unexpected_keys[:3]}")
        state = torch.load(adapter / STATE_FILE, map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema = {n: t.to(self.device) for n, t in state["ema"].items()}
        self.analysis = state.get("analysis") or {}
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.step = int(meta["step"])
        self._truncate_logs(self.step)
        log.info("resuming after step %d of %d", self.step, self.config.steps)

    def _truncate_logs(self, step: int) -> None:
        """Drop metric and sample lines written after the checkpoint, so no step appears twice."""
        if not self.is_main:
            return
        for name in (runs.METRICS_FILE, runs.SAMPLES_FILE):
            path = self.run_dir / name
            if path.exists():
                kept = [r for r in read_jsonl(path, tolerate_partial_tail=True) if r.get("step", 0) <= step]
                write_jsonl(path, kept)

    def write_rank_hash(self) -> None:
        """Debug/test: a hash of this rank's LoRA weights (RCSD_RANK_HASHES=1)."""
        digest = hashlib.sha256()
        for n, p in sorted(self.named_params, key=lambda x: x[0]):
            digest.update(n.encode())
            digest.update(p.detach().float().cpu().numpy().tobytes())
        atomic_write_text(self.run_dir / HASH_DIR / f"rank-{self.rank}.txt", digest.hexdigest() + "\n")

    # ------------------------------------------------------------------ the loop

    def train(self) -> dict:
        config = self.config
        if self.is_main:
            runs.write_status(self.run_dir, "running", pid=os.getpid(), step=self.step, steps=config.steps,
                              error=None, started=runs.now(), processes=self.world, device=str(self.device))
            log.info("round %s: %s, %s teacher, %s, %d steps x %d prompts x %d samples x %d tokens, %d process(es) "
                     "on %s", self.run_dir.name, config.method, config.teacher, config.divergence, config.steps,
                     config.prompts_per_step, config.samples_per_prompt, config.max_new_tokens, self.world,
                     self.device)
        self.accelerator.wait_for_everyone()
        if self.step == 0 and self.eval_tasks:
            metrics, records = self.evaluate(0)
            self.write_step({"step": 0, **metrics}, records)
        final = {}
        stopped = False
        while self.step < config.steps:
            step = self.step + 1
            metrics, records = self.train_step(step)
            self.step = step
            last = step == config.steps
            stopping = not last and self.should_stop()
            if self.eval_tasks and not stopping and (last or (config.eval_every and step % config.eval_every == 0)):
                eval_metrics, eval_records = self.evaluate(step)
                metrics.update(eval_metrics)
                records += eval_records
            self.write_step(metrics, records)
            final = metrics
            if last or stopping or (config.checkpoint_every and step % config.checkpoint_every == 0):
                self.save_checkpoint(final=last)
            if stopping:
                stopped = True
                if self.is_main:  # a stop request is answered once
                    (self.run_dir / runs.STOP_FILE).unlink(missing_ok=True)
                break
        if os.environ.get("RCSD_RANK_HASHES") == "1":
            self.write_rank_hash()
        status = "stopped" if stopped else "done"
        if self.is_main:
            runs.write_status(self.run_dir, status, step=self.step, finished=runs.now())
            log.info("round %s at step %d/%d", status, self.step, config.steps)
        self.accelerator.wait_for_everyone()
        return {"status": status, "step": self.step, "steps": config.steps, "metrics": final}

    def write_step(self, metrics: dict, records: list[dict]) -> None:
        if not self.is_main:
            return
        _append_many(self.run_dir / runs.SAMPLES_FILE, records)
        append_jsonl(self.run_dir / runs.METRICS_FILE, metrics)
        runs.write_status(self.run_dir, "running", step=self.step)
        log.info(_format_metrics(metrics))


def _append_many(path: Path, records: list[dict]) -> None:
    """Append records as JSON lines in one write, flushed."""
    if not records:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def _format_metrics(m: dict) -> str:
    keys = ["train/loss", "train/divergence", "train/total", "eval/total", "eval/divergence", "train/tokens_per_s",
            "time/step_s"]
    parts = [f"step {m['step']}"]
    for k in keys:
        if m.get(k) is not None:
            parts.append(f"{k.split('/', 1)[1] if k.startswith('train/') else k}={m[k]:.4g}")
    return " ".join(parts)


def _same_file(stream, path: Path) -> bool:
    try:
        return path.exists() and os.path.samestat(os.fstat(stream.fileno()), path.stat())
    except (OSError, ValueError, AttributeError):
        return False


# ---------------------------------------------------------------------------- entry points


def train_round(run_dir: str | Path, *, resume: bool = False) -> dict:
    """Run (or resume) the round of a run directory to its end or a stop; returns a summary.

    A failure sets status `failed` with the error (traceback in log.txt) and re-raises.
    """
    round_ = Round(run_dir, resume=resume)
    try:
        round_.setup()
        return round_.train()
    except BaseException as exc:
        is_main = getattr(round_, "is_main", True)
        if is_main:
            message = exc.describe() if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, KeyboardInterrupt):
                message = "interrupted by a second stop signal; resume continues from the last checkpoint"
            log.error("round failed: %s\n%s", message, traceback.format_exc())
            _write_failure(Path(run_dir), message, getattr(round_, "step", 0))
        raise
    finally:
        round_.cleanup()


def _write_failure(run_dir: Path, message: str, step: int) -> None:
    if not (run_dir / runs.CONFIG_FILE).exists():
        return
    # log.txt gets the traceback even when logging had not been set up yet
    if not any(isinstance(h, logging.FileHandler) for h in log.handlers) and \
            not _same_file(sys.stderr, run_dir / runs.LOG_FILE):
        with open(run_dir / runs.LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"round failed: {message}\n{traceback.format_exc()}\n")
    runs.write_status(run_dir, "failed", error=message, step=step, pid=os.getpid(), finished=runs.now())
