"""Round throughput beside the TRL SDFT anchor, on the anchor's exact workload.

    python bench/round_throughput.py smollm2 qwen3-0.6b qwen3-1.7b --steps 5 --anchor-dir .device/bench
    python bench/round_throughput.py qwen3-1.7b --variant micro_batch_size=64 --variant sampler_compile=true
    python bench/round_throughput.py smollm2 --only-variants --variant sampler_compile=true   # that lever alone
    python bench/round_throughput.py smollm2 qwen3-0.6b --variant sampler_step=fused   # the fused decode step
    python bench/round_throughput.py tiny --steps 2 --variant micro_batch_size=2   # CPU smoke run of the script

For each shape it builds a random-init model of that shape with the embedded tokenizer (saved to
a scratch folder so the round loads it like any local model), runs the project's round on the
anchor's workload — 8 prompts x 8 samples x 256 completion tokens per step, LoRA r=16 on all
linear layers, top-20 forward KL (per-entry clip, the paper's released setting), frozen-base
teacher, bf16 on GPU — and reads back from metrics.jsonl the steady-state completion tokens
trained per second (steps after the first `--warmup`, default 1), the peak memory and the seconds per
phase (their mean over those steps, and each step's own under "per_step", the warm-up included; a
round with `student_compile` compiles in its first two steps: `--warmup 2`), and on a GPU
each phase's own peak (`phase_peaks_gib`: what it found allocated plus what it added). With
`--anchor-dir` it then runs `anchor_trl_sdft.py <shape>` from that folder in the same call (copy
`../shared/bench` there; its README says which wheels TRL needs) and appends one JSON line per
shape and variant to bench/results/round_throughput.jsonl:

    {"shape", "device", "tokens_per_s", "peak_gib", "anchor_tokens_per_s", "anchor_peak_gib",
     "phases": {...}, "variant": {...}, "commit", ...}

Each `--variant key=value[,key=value]` runs one more round on the same model with those config
overrides (a lever measured beside the preset, and beside the anchor run once per shape).

`--profile-step N` runs step N of the preset's round (not the variants') under torch.profiler and
prints, to stderr, the operations that took the most device time (CPU time on a CPU), each phase
(sampling, teacher, student) a row of its own: where a step's time goes, for a call that cannot
be repeated.

On CPU the workload shrinks (2 prompts x 2 samples x 16 tokens) so the script can be checked
here; only GPU lines are comparable with the anchor.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config  # noqa: E402

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.contracts.config import preset_config  # noqa: E402
from rcsd_core.files import append_jsonl, write_jsonl  # noqa: E402
from rcsd_core.modeling.models import load_tokenizer  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402

V = 49152  # the embedded tokenizer's vocabulary, as in the anchor
SHAPES = {
    "tiny": dict(cls=LlamaConfig, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
    "smollm2": dict(cls=LlamaConfig, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64, rms_norm_eps=1e-5,
                    rope_theta=100000.0, max_position_embeddings=8192),
    "qwen3-0.6b": dict(cls=Qwen3Config, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "qwen3-1.7b": dict(cls=Qwen3Config, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128),
}
PHASES = ("sampling", "teacher", "student", "optimizer")


def build_shape(shape: str, folder: Path, dtype: torch.dtype) -> Path:
    """Save a random-init model of `shape` with the embedded tokenizer into folder/shape."""
    spec = dict(SHAPES[shape])
    cls = spec.pop("cls")
    tokenizer = load_tokenizer("tiny-random")
    config = cls(vocab_size=V, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **spec)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    target = folder / shape
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def train_only_tasks(folder: Path) -> Path:
    """The arithmetic sample tasks without their eval split: the anchor evaluates nothing, so the
    round's before/after evaluations would only add wall time that the tokens/s figure leaves out."""
    tasks = load_tasks(ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl", split="train")
    return write_jsonl(folder / "arithmetic.train.jsonl", [t.model_dump(exclude_none=True) for t in tasks])


def round_config(model_dir: Path, tasks: Path, *, steps: int, gpu: bool, **overrides):
    """The anchor's workload as a round config: 8 x 8 x 256 on GPU (bf16), 2 x 2 x 16 on CPU. Speed and
    memory settings (gradient checkpointing, micro-batch, sampler) are the preset's unless overridden."""
    prompts, samples, tokens = (8, 8, 256) if gpu else (2, 2, 16)
    return preset_config(
        "gpu-lora" if gpu else "cpu-demo", model=str(model_dir), steps=steps, prompts_per_step=prompts,
        samples_per_prompt=samples, max_new_tokens=tokens, divergence="topk_forward_kl", k=20, clip_mode="entry",
        teacher="frozen", lora_rank=16, lora_alpha=32, lora_targets="all-linear", learning_rate=1e-5, warmup_steps=0,
        sampling_batch_size=prompts * samples, eval_every=0, eval_tasks=8,
        eval_samples=1, checkpoint_every=0, device="cuda" if gpu else "cpu",
        dtype="bfloat16" if gpu else "float32",
        rubric=str(ROOT / "sample_rubrics" / "arithmetic.yaml"),
        tasks=str(tasks), **overrides)


def run_round(shape: str, model_dir: Path, runs_root: Path, *, steps: int, gpu: bool, run_id: str,
              warmup: int = 1, profiled: int | None = None, **overrides) -> dict:
    """The project's round on the anchor's workload; returns the figures read from metrics.jsonl (a
    `profiled` step is left out of the steady figures: the profiler slows it)."""
    config = round_config(model_dir, train_only_tasks(runs_root), steps=steps, gpu=gpu, **overrides)
    run_dir = runs.create_run(config, runs_root, run_id=run_id)
    from rcsd_core.training.round import train_round

    free_gpu(gpu)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    result = train_round(run_dir)
    if result["status"] != "done":
        raise RuntimeError(f"{shape}: round ended {result['status']}: {runs.tail_log(run_dir, 20)}")
    metrics = runs.read_metrics(run_dir).dropna(subset=["train/loss"])
    steady = metrics[(metrics["step"] > warmup) & (metrics["step"] != profiled)] if len(metrics) > warmup + 1 \
        else metrics
    return {"tokens_per_s": round(float(steady["train/completion_tokens"].sum() / steady["time/step_s"].sum()), 1),
            "peak_gib": round(float(metrics["memory/peak_gib"].max()), 2),
            "phase_peaks_gib": {p: round(float(metrics[f"memory/{p}_peak_gib"].max()), 2)   # on a GPU
                                for p in ("sampling", "teacher", "student") if f"memory/{p}_peak_gib" in metrics},
            "phases": {p: round(float(steady[f"time/{p}_s"].mean()), 3) for p in PHASES},
            "step_s": round(float(steady["time/step_s"].mean()), 3),
            "per_step": {p: [round(float(x), 3) for x in metrics[f"time/{p}_s"]] for p in ("step", *PHASES)},
            "gradient_checkpointing": config.gradient_checkpointing, "micro_batch_size": config.micro_batch_size,
            "sampler_compile": config.sampler_compile, "sampler_step": config.sampler_step,
            "student_compile": config.student_compile, "warmup_steps": warmup}


@contextlib.contextmanager
def profiled_step(step: int | None, gpu: bool):
    """Inside the block, train step `step` of a round runs under torch.profiler, each phase labelled,
    and its table (top 30 operations by self device time) goes to stderr; None: nothing."""
    if step is None:
        yield
        return
    from torch.profiler import ProfilerActivity, profile, record_function

    from rcsd_core.training.metrics import PhasePeaks
    from rcsd_core.training.round import Round

    train_step, phase = Round.train_step, PhasePeaks.phase

    def labelled(self, name):
        stack = contextlib.ExitStack()
        stack.enter_context(phase(self, name))
        stack.enter_context(record_function(f"phase:{name}"))
        return stack

    def step_under_profile(self, number):
        if number != step:
            return train_step(self, number)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
        with profile(activities=activities) as prof:
            out = train_step(self, number)
        key = "self_device_time_total" if gpu else "self_cpu_time_total"
        print(f"profile of step {number}:\n" + prof.key_averages().table(sort_by=key, row_limit=30),
              file=sys.stderr, flush=True)
        return out

    Round.train_step, PhasePeaks.phase = step_under_profile, labelled
    try:
        yield
    finally:
        Round.train_step, PhasePeaks.phase = train_step, phase


def free_gpu(gpu: bool) -> None:
    """Hand the last round's memory back, so the next round's peak (or the anchor's process) starts clean."""
    gc.collect()
    if gpu:
        torch.cuda.empty_cache()


def parse_settings(text: str) -> dict:
    """"key=value,key=value" -> config overrides, values read as YAML (true, 64, static)."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected key=value[,key=value...], got {text!r}")
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def run_anchor(anchor_dir: Path, shape: str) -> dict | None:
    """Run the TRL anchor script for one shape and return its JSON line."""
    out = subprocess.run([sys.executable, str(anchor_dir / "anchor_trl_sdft.py"), shape],
                         capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"anchor failed for {shape}:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shapes", nargs="+", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per round (the first is warm-up)")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the steady figures (default 1; "
                                                              "2 for student_compile, which compiles in two)")
    parser.add_argument("--anchor-dir", type=Path, help="folder holding anchor_trl_sdft.py and smollm2_tok/")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "round_throughput.jsonl")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute activations in the backward, as the anchor (TRL's default) does "
                             "(default: the preset's)")
    parser.add_argument("--micro-batch-size", type=int, help="chains per forward/backward (default: the preset's)")
    parser.add_argument("--variant", type=parse_settings, action="append", default=[],
                        help="key=value[,key=value] config overrides for one more round on the same model, "
                             "e.g. micro_batch_size=64 or sampler_compile=true (repeatable; each gets its line)")
    parser.add_argument("--only-variants", action="store_true",
                        help="run the --variant rounds without the preset's own round (measured in an earlier "
                             "command of the same call)")
    parser.add_argument("--commit", help="the commit measured, where the working tree has no .git (a device copy)")
    parser.add_argument("--profile-step", type=int, help="profile this step of the preset's round (table to stderr)")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if gpu else "cpu"
    commit = args.commit or subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    base = {k: v for k, v in (("gradient_checkpointing", args.gradient_checkpointing),
                              ("micro_batch_size", args.micro_batch_size)) if v is not None}
    if args.only_variants and not args.variant:
        parser.error("--only-variants needs at least one --variant")
    for variant in args.variant:    # a wrong key or value stops here, before any model is built
        round_config(ROOT, ROOT, steps=args.steps, gpu=gpu, **{**base, **variant})
    with tempfile.TemporaryDirectory(prefix="rcsd-throughput-") as scratch:
        scratch = Path(scratch)
        for shape in args.shapes:
            model_dir = build_shape(shape, scratch / "models", torch.bfloat16 if gpu else torch.float32)
            lines = []
            variants = args.variant if args.only_variants else [{}] + args.variant
            for i, variant in enumerate(variants):
                profiled = args.profile_step if variant == {} else None
                with profiled_step(profiled, gpu):
                    ours = run_round(shape, model_dir, scratch / "runs", steps=args.steps, gpu=gpu,
                                     run_id=f"throughput-{shape}-{i}", warmup=args.warmup, profiled=profiled,
                                     **{**base, **variant})
                lines.append({"shape": shape, "device": device, **ours, "variant": variant, "steps": args.steps,
                              "commit": commit})
                print("round (anchor still to run):", json.dumps(lines[-1]), file=sys.stderr, flush=True)
            free_gpu(gpu)
            anchor = run_anchor(args.anchor_dir, shape) if args.anchor_dir else None
            for line in lines:
                line.update(anchor_tokens_per_s=anchor.get("steady_tokens_per_s") if anchor else None,
                            anchor_peak_gib=anchor.get("peak_gpu_GiB") if anchor else None)
                if anchor and anchor.get("steady_tokens_per_s"):
                    line["speedup"] = round(line["tokens_per_s"] / anchor["steady_tokens_per_s"], 2)
                print(json.dumps(line), flush=True)
                if gpu:
                    append_jsonl(args.out, line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
