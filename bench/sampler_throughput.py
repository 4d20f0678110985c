"""Sampler throughput: `sample_chains` (model.generate) beside the on-device `Sampler`, same chains, same seeds.

Both sides sample the same prompts (arithmetic tasks in student context) from the same model with
its LoRA adapter unmerged (r16 on all linear layers, as a round trains it; `--no-adapter` for the
bare model), temperature 1, top-p 1, in batches of `--batch-size`, with
`min_new_tokens = max_new_tokens` so end-of-turn cannot end a chain early and both sides produce
exactly chains x new-tokens tokens. One warm-up run of each side is not timed; then the two sides
take turns `--repeats` times (so a burst of load on this shared machine hits both) and the best run
of each is kept. For each dtype the sampler's log-probs are also checked against a plain forward
over [prompt + completion] of the same model (max |difference|, nats).

Run (from the repository root; a few minutes on 2 CPU cores, most of it `generate`):

    python bench/sampler_throughput.py                                  # embedded model, fp32 and bf16
    python bench/sampler_throughput.py --model tiny-random --new-tokens 8 --no-record   # check the script
    python bench/sampler_throughput.py --dtypes float32 --threads 1

Check `uptime` first: other processes make every figure lower and noisier; the load average at the
start and at the end is recorded. One JSON line per run goes to bench/results/sampler_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import torch
import transformers

from rcsd_core.contracts.messages import encode_messages
from rcsd_core.contracts.tasks import load_tasks
from rcsd_core.files import append_jsonl, strict_json, utc_now
from rcsd_core.modeling.batching import pack_batch
from rcsd_core.modeling.contexts import student_messages
from rcsd_core.modeling.generation import sample_chains
from rcsd_core.modeling.models import DEFAULT_MODEL, attach_lora, load_model
from rcsd_core.modeling.sampler import Sampler

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sampler_throughput.jsonl"
TASKS = ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl"


def time_generate(model, tokenizer, prompts, args, new_tokens: int) -> float:
    start = time.perf_counter()
    samples, _ = sample_chains(model, tokenizer, prompts, n=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               temperature=1.0, seed=args.seed, batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    assert all(s.n_tokens == new_tokens or s.finished for s in samples), "generate: short chain"
    return elapsed


def time_sampler(sampler, prompts, args, new_tokens: int) -> tuple[float, list]:
    start = time.perf_counter()
    samples, _ = sampler.sample(prompts, n=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens, temperature=1.0,
                                seed=args.seed, batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    assert all(s.n_tokens == new_tokens or s.finished for s in samples), "sampler: short chain"
    return elapsed, samples


def logprob_error(model, samples, pad_id: int) -> float:
    """Largest |sampler log-prob - plain-forward log-prob| over all completion tokens."""
    worst = 0.0
    for i in range(0, len(samples), 4):
        chunk = samples[i:i + 4]
        batch = pack_batch([s.prompt_ids for s in chunk], [s.completion_ids for s in chunk], pad_id)
        with torch.no_grad():
            logits = model(input_ids=batch.ids, attention_mask=batch.attention, position_ids=batch.positions).logits
        logp = torch.log_softmax(logits[:, batch.start:batch.start + batch.tokens.shape[1]].float(), -1)
        plain = logp.gather(-1, batch.tokens.unsqueeze(-1)).squeeze(-1)
        for row, s in enumerate(chunk):
            worst = max(worst, (plain[row, :s.n_tokens] - torch.tensor(s.logprobs)).abs().max().item())
    return worst


def measure(args, dtype: str, prompts_text: list[str]) -> dict:
    model, tokenizer = load_model(args.model, device=args.device, dtype=dtype)
    if args.adapter:
        model = attach_lora(model, rank=16, targets="all-linear").eval()
    prompts = [encode_messages(tokenizer, student_messages(t)) for t in prompts_text]
    sampler = Sampler(model, tokenizer)
    time_generate(model, tokenizer, prompts, args, 4)                 # warm-up, not timed
    time_sampler(sampler, prompts, args, 4)
    generate_s, sampler_s, samples = [], [], None
    for _ in range(args.repeats):
        generate_s.append(time_generate(model, tokenizer, prompts, args, args.new_tokens))
        seconds, samples = time_sampler(sampler, prompts, args, args.new_tokens)
        sampler_s.append(seconds)
    tokens = len(prompts) * args.new_tokens
    result = {"generate_tokens_per_s": round(tokens / min(generate_s), 2),
              "sampler_tokens_per_s": round(tokens / min(sampler_s), 2),
              "generate_seconds": [round(s, 2) for s in generate_s],
              "sampler_seconds": [round(s, 2) for s in sampler_s],
              "logprob_max_abs_error": logprob_error(model, samples, tokenizer.pad_token_id)}
    result["ratio"] = round(result["sampler_tokens_per_s"] / result["generate_tokens_per_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-adapter", dest="adapter", action="store_false", help="sample from the bare model")
    parser.add_argument("--no-record", action="store_true", help="do not append to the results file")
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    prompts_text = [t.prompt for t in load_tasks(TASKS)][: args.chains]
    results = {dtype: measure(args, dtype, prompts_text) for dtype in args.dtypes.split(",")}
    load_end = os.getloadavg()[0]

    print(f"model {args.model} ({'LoRA r16 unmerged' if args.adapter else 'no adapter'}) on {args.device}, "
          f"{os.cpu_count()} CPUs, {args.threads} threads, torch {torch.__version__}, "
          f"load average {load_start:.2f} -> {load_end:.2f}")
    print(f"{len(prompts_text)} chains x {args.new_tokens} new tokens, batch {args.batch_size}, "
          f"best of {args.repeats}")
    print(f"{'dtype':<10}{'generate tok/s':>16}{'sampler tok/s':>15}{'ratio':>8}{'logprob err':>13}")
    for dtype, r in results.items():
        print(f"{dtype:<10}{r['generate_tokens_per_s']:>16.1f}{r['sampler_tokens_per_s']:>15.1f}{r['ratio']:>7.2f}x"
              f"{r['logprob_max_abs_error']:>13.1e}")

    if not args.no_record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        record = {"date": utc_now(), "commit": commit, "model": args.model, "adapter": "lora-r16" if args.adapter
                  else None, "device": args.device, "device_name": platform.processor() or platform.machine(),
                  "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                  "transformers": transformers.__version__, "load_avg_1m_start": round(load_start, 2),
                  "load_avg_1m_end": round(load_end, 2), "chains": len(prompts_text), "new_tokens": args.new_tokens,
                  "batch_size": args.batch_size, "repeats": args.repeats, "results": results}
        append_jsonl(RESULTS, strict_json(record))
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
