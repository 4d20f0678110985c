"""Sampling throughput: one chain at a time with `model.generate` vs our batched `sample_chains`.

Both sides use the same model, the same prompts (arithmetic tasks in student context), the same
sampling settings (temperature 1, top-p 1, no top-k) and the same number of new tokens per chain:
`min_new_tokens = max_new_tokens`, so end-of-turn cannot end a chain early and both sides produce
exactly chains × new-tokens tokens. A warm-up run of each side is excluded; each side is then timed
`--repeats` times and the best run is kept (the machine is shared, so the best run is the one
least disturbed by other work). The table goes to stdout and one JSON line is appended to
bench/results/sampling_throughput.jsonl.

Run (from the repository root; ~1-2 minutes on 2 CPU cores for the embedded default):

    python bench/sampling_throughput.py                        # embedded SmolLM2-135M-Instruct
    python bench/sampling_throughput.py --model tiny-random    # quick check of the script itself
    python bench/sampling_throughput.py --chains 8 --new-tokens 64 --repeats 3 --batch-size 8

Check `uptime` first: other processes on the machine make every figure lower and noisier; the
load average at the start is recorded with the result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import torch

from rcsd_core.contracts.messages import encode_messages  # noqa: E402
from rcsd_core.modeling.contexts import student_messages
from rcsd_core.modeling.generation import sample_chains
from rcsd_core.modeling.models import DEFAULT_MODEL, load_model, resolve_device, set_cpu_threads
from rcsd_core.contracts.tasks import load_tasks

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sampling_throughput.jsonl"
TASKS = ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl"


def time_single(model, tokenizer, prompts: list[list[int]], new_tokens: int, seed: int) -> float:
    """Seconds to sample each prompt on its own with plain `model.generate` (batch of one)."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    start = time.perf_counter()
    with torch.no_grad():
        for ids in prompts:
            out = model.generate(input_ids=torch.tensor([ids], device=device), do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=None, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            assert out.shape[1] - len(ids) == new_tokens, "single: wrong number of new tokens"
    return time.perf_counter() - start


def time_batched(model, tokenizer, prompts: list[list[int]], new_tokens: int, seed: int,
                 batch_size: int) -> float:
    """Seconds for `sample_chains` to sample the same chains in batches."""
    start = time.perf_counter()
    samples, stats = sample_chains(model, tokenizer, prompts, n=1, max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, temperature=1.0, seed=seed, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    # a chain may still contain end-of-turn after min_new_tokens only if max > min; here they are equal
    assert all(len(s.completion_ids) == new_tokens or s.finished for s in samples), "batched: short chain"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads for both sides (default: the idle cores, "
                                                    "as `rcsd preview` does)")
    parser.add_argument("--no-record", action="store_true", help="do not append to the results file")
    args = parser.parse_args()

    load_avg = os.getloadavg()
    set_cpu_threads(args.threads, resolve_device(args.device))
    model, tokenizer = load_model(args.model, device=args.device)
    device = next(model.parameters()).device
    tasks = load_tasks(TASKS)[: args.chains]
    prompts = [encode_messages(tokenizer, student_messages(t.prompt)) for t in tasks]
    tokens = args.chains * args.new_tokens

    # warm-up (allocator, kernels, lazy init), not timed
    time_single(model, tokenizer, prompts[:1], 4, args.seed)
    time_batched(model, tokenizer, prompts, 4, args.seed, args.batch_size)

    single = min(time_single(model, tokenizer, prompts, args.new_tokens, args.seed) for _ in range(args.repeats))
    batched = min(time_batched(model, tokenizer, prompts, args.new_tokens, args.seed, args.batch_size)
                  for _ in range(args.repeats))
    single_tps, batched_tps = tokens / single, tokens / batched

    print(f"model {args.model} on {device} ({os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}), load average {load_avg[0]:.2f}")
    print(f"{args.chains} chains x {args.new_tokens} new tokens, best of {args.repeats}")
    print(f"{'method':<34}{'seconds':>9}{'tokens/s':>10}")
    print(f"{'model.generate, one chain a time':<34}{single:>9.2f}{single_tps:>10.1f}")
    print(f"{f'sample_chains, batch {args.batch_size}':<34}{batched:>9.2f}{batched_tps:>10.1f}")
    print(f"ratio batched / single: {batched_tps / single_tps:.2f}x")

    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        record = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "model": args.model,
                  "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
                  else platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "load_avg_1m": round(load_avg[0], 2),
                  "chains": args.chains, "new_tokens": args.new_tokens, "batch_size": args.batch_size,
                  "repeats": args.repeats, "single_tokens_per_s": round(single_tps, 2),
                  "batched_tokens_per_s": round(batched_tps, 2), "ratio": round(batched_tps / single_tps, 3)}
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
