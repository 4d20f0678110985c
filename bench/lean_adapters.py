"""The sampler with the adapter run lean beside peft's own LoRA forward, same model, same seeds; on a CPU in bf16
also lean with every product from oneDNN-packed weights (`modeling/packing.py`), and the sampler's default
there, a Llama's decode step written out over fused packed products (`modeling/llama_step.py`); elsewhere
(a GPU) that step over plain fused products, the "fused" side (`Sampler(fused_step=True)`).

    python bench/lean_adapters.py smollm2 --chains 64 --new-tokens 256      # on a GPU: CUDA graphs, bf16
    python bench/lean_adapters.py embedded --chains 16 --new-tokens 64      # this CPU: embedded model, bf16
    python bench/lean_adapters.py tiny --chains 4 --new-tokens 8            # check the script

The model carries a LoRA r16 adapter on all linear layers with random B (so it moves the logits),
float32 as a round trains it, on a bf16 base. For each side: the operations one eager decode step
runs (`modeling.operations.OperationCount`, views left out; on a GPU each is a kernel in the captured
graph), then `--repeats` timed sampling calls taken in turn (temperature 1, min_new_tokens = new
tokens, so every chain has the full length), best kept; and the largest log-prob difference between
peft's and the lean side's chains for the same seed, over the tokens they share before they part
(the packed and llama sides' chains are compared with the lean side's whole). Prints one
JSON line; `--out` appends it to a results file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from rcsd_core.contracts.messages import encode_messages  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.files import append_jsonl  # noqa: E402
from rcsd_core.modeling.adapters import DecodingAdapters  # noqa: E402
from rcsd_core.modeling.attention import attention_implementation  # noqa: E402
from rcsd_core.modeling.contexts import student_messages  # noqa: E402
from rcsd_core.modeling.models import attach_lora, load_model, randomize_adapter  # noqa: E402
from rcsd_core.modeling.operations import OperationCount  # noqa: E402
from rcsd_core.modeling.llama_step import LlamaStep  # noqa: E402
from rcsd_core.modeling.llama_step import supported as llama_step_supported  # noqa: E402
from rcsd_core.modeling.packing import PackedLinears, supported  # noqa: E402
from rcsd_core.modeling.sampler import Decoder, Sampler, Shape  # noqa: E402


def model_of(shape: str, device: str, folder: Path):
    """(peft model with a random-B LoRA r16 adapter, tokenizer) for a bench shape or the embedded model."""
    if shape == "embedded":
        model, tokenizer = load_model("smollm2-135m-instruct", device=device, dtype="bfloat16")
    else:
        from round_throughput import build_shape

        model, tokenizer = load_model(str(build_shape(shape, folder, torch.bfloat16)), device=device,
                                      dtype="bfloat16")
    model = attach_lora(model, rank=16, alpha=32, targets="all-linear").eval()
    randomize_adapter(model, std=0.02)
    return model, tokenizer


def step_operations(model, tokenizer, rows: int, side: str) -> OperationCount:
    """The operations of one eager decode step of `rows` chains over a 64-column cache (`.count`, `.names`)."""
    decoder = Decoder(model, Shape(rows=rows, width=32, new_tokens=33), eos=tokenizer.eos_token_id,
                      pad=tokenizer.pad_token_id)
    lean = DecodingAdapters(model, packed=side in ("packed", "llama")) if side != "peft" else None
    if side == "llama" and llama_step_supported(model):      # else the sampler's default is the modules
        decoder.llama = LlamaStep(model)
        assert decoder.llama.bind(lean)
    if side == "fused":
        decoder.llama = LlamaStep(model, packed=False)
        assert decoder.llama.bind(lean)
    packed = PackedLinears(model).active() if side == "packed" else torch.no_grad()
    with torch.no_grad(), attention_implementation(model), packed, lean.active() if lean else torch.no_grad():
        decoder.resume()
        with OperationCount() as ops:
            decoder.step()
    return ops


def git_commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def device_name(device: str, threads: int) -> str:
    """A result line's machine: the card's name on a GPU, else the CPU and its thread count."""
    return torch.cuda.get_device_name() if device == "cuda" else f"cpu x{threads} threads"


def report(line: dict, load_start: float, commit: str | None, out: Path | None) -> int:
    """Finish a result line (load averages, torch, the commit measured), print it, append it to `out`."""
    line.update({"load_avg_start": round(load_start, 2), "load_avg_end": round(os.getloadavg()[0], 2),
                 "torch": torch.__version__, "commit": commit or git_commit()})
    print(json.dumps(line), flush=True)
    if out:
        append_jsonl(out, line)
    return 0


def agreeing_logprob_difference(x, y) -> float:
    """Largest |log-prob difference| over the tokens two chains share before they first part (after a
    different token the two chains are different texts and their log-probs are not comparable)."""
    worst = 0.0
    for a, b, la, lb in zip(x.completion_ids, y.completion_ids, x.logprobs, y.logprobs):
        if a != b:
            break
        worst = max(worst, abs(la - lb))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=["embedded", "tiny", "smollm2", "qwen3-0.6b", "qwen3-1.7b"])
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (ignored on a GPU)")
    parser.add_argument("--out", type=Path, help="also append the line to this JSONL file "
                                                 "(bench/results/lean_adapters.jsonl keeps the measured ones)")
    parser.add_argument("--commit", help="the commit measured, where the working tree has no .git (a device copy)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rcsd-lean-") as scratch:
        model, tokenizer = model_of(args.shape, device, Path(scratch))
    tasks = load_tasks(ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl")
    prompts = [encode_messages(tokenizer, student_messages(tasks[i % len(tasks)].prompt)) for i in range(args.chains)]
    sides = {"peft": Sampler(model, tokenizer, lean_adapters=False, packed=False),
             "lean": Sampler(model, tokenizer, packed=False)}
    if supported(next(model.parameters())):
        sides["packed"] = Sampler(model, tokenizer, fused_step=False)
        sides["llama"] = Sampler(model, tokenizer)
    elif llama_step_supported(model, packed=False):
        LlamaStep(model, packed=False)      # re-lays the frozen weights now, not between the other sides' captures
        sides["fused"] = Sampler(model, tokenizer, fused_step=True)     # plain fused products (a GPU)
    kw = dict(n=1, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, temperature=1.0, seed=0,
              batch_size=args.chains)
    seconds = {name: [] for name in sides}
    chains = {}
    for name, sampler in sides.items():
        chains[name], _ = sampler.sample(prompts, **kw)          # warm-up (capture on a GPU), not timed
    for _ in range(args.repeats):
        for name, sampler in sides.items():
            start = time.perf_counter()
            sampler.sample(prompts, **kw)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(round(time.perf_counter() - start, 3))
    operations = {n: step_operations(model, tokenizer, args.chains, n) for n in sides}
    same = sum(x.completion_ids == y.completion_ids for x, y in zip(chains["peft"], chains["lean"]))
    differ = max(agreeing_logprob_difference(x, y) for x, y in zip(chains["peft"], chains["lean"]))
    line = {"bench": "lean_adapters", "shape": args.shape, "device": device_name(device, args.threads),
            "chains": args.chains, "new_tokens": args.new_tokens, "seconds": seconds,
            "ms_per_decode_step": {n: round(1000 * min(s) / args.new_tokens, 2) for n, s in seconds.items()},
            "step_operations": {n: operations[n].count for n in sides},
            "same_chains": f"{same}/{len(prompts)}", "logprob_max_abs_difference": round(differ, 4)}
    for name in ("packed", "llama", "fused"):   # packed: the same products to the bit, so the same chains
        if name in chains:
            line[f"{name}_same_chains_as_lean"] = \
                f"{sum(x.completion_ids == y.completion_ids for x, y in zip(chains[name], chains['lean']))}/{len(prompts)}"
    if "fused" in chains:                    # plain fused products may round differently (cuBLAS picks by shape)
        line["fused_logprob_max_abs_difference"] = round(max(
            agreeing_logprob_difference(x, y) for x, y in zip(chains["fused"], chains["lean"])), 4)
    last = list(sides)[-1]                   # the sampler's own step here: what its operations are
    line[f"{last}_step_operations_by_name"] = dict(operations[last].names.most_common(16))
    return report(line, load, args.commit, args.out)


if __name__ == "__main__":
    sys.exit(main())
