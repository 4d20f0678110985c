"""The student's forward and backward with its decoder layers eager and under torch.compile, one process.

    python bench/compiled_layers.py embedded --repeats 3          # this CPU: the cpu-demo student pass
    python bench/compiled_layers.py tiny --repeats 2              # check the script
    python bench/compiled_layers.py smollm2 --prompts 8 --chains 8 --new-tokens 256 --checkpointing
                                                                  # on a GPU: a gpu-lora micro-batch, as it trains

The micro-batch is the one a `cpu-demo` step trains on: 4 arithmetic prompts × 4 chains of
`--new-tokens` random tokens, packed one row per prompt (`batching.pack_chains`), through the
model with a LoRA r16 adapter on every linear, in train mode, bf16 compute
(`models.compute_precision`), and a backward from the final hidden states. First eager
(`--repeats` timed passes after one warm-up), then through compiled decoder layers as a round with
`student_compile` runs them (`modeling.compiled.CompiledLayers`, inductor; the line in
bench/results/compiled_layers.jsonl from `f19a2be` compiled each layer with `nn.Module.compile`):
the first pass (compilation included), one more with chains
`--new-tokens - 5` long (another shape, as the next step's chains have), then the timed passes.
`--checkpointing` recomputes each layer's activations in the backward, as the `gpu-lora` preset
trains. The line also gives the operations of one eager pass, forward and backward
(`modeling.operations.OperationCount`): on a GPU each is at least one kernel launched from Python,
so a pass of ~10,000 of them costs host time whatever the model's size.
Prints one JSON line; `--out` appends it to a results file.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from lean_adapters import device_name, model_of, report  # noqa: E402
from rcsd_core.contracts.messages import encode_messages  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.modeling.batching import pack_chains  # noqa: E402
from rcsd_core.modeling.compiled import CompiledLayers  # noqa: E402
from rcsd_core.modeling.contexts import student_messages  # noqa: E402
from rcsd_core.modeling.divergence import completion_hidden  # noqa: E402
from rcsd_core.modeling.models import compute_precision, enable_checkpointing, lean_training  # noqa: E402
from rcsd_core.modeling.operations import OperationCount  # noqa: E402


def student_batch(tokenizer, prompts: int, chains: int, new_tokens: int, seed: int = 0):
    """One row per prompt with its chains after it: `chains` completions of random token ids."""
    tasks = load_tasks(ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl")
    ids = [encode_messages(tokenizer, student_messages(tasks[i].prompt)) for i in range(prompts)]
    rng = random.Random(seed)
    completions = [[rng.randrange(1000, 20000) for _ in range(new_tokens)] for _ in range(prompts * chains)]
    return pack_chains([p for p in ids for _ in range(chains)], completions, tokenizer.pad_token_id)


def forward_backward(model, batch) -> float:
    """Seconds of one student forward (bf16 compute) and its backward, as a round runs them."""
    start = time.perf_counter()
    with lean_training(model):
        with compute_precision(model):
            hidden = completion_hidden(model, batch)
        hidden.float().square().mean().backward()
    if hidden.device.type == "cuda":
        torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=["embedded", "tiny", "smollm2", "qwen3-0.6b", "qwen3-1.7b"])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--chains", type=int, default=4, help="chains per prompt")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpointing", action="store_true", help="recompute activations in the backward "
                                                                      "(the gpu-lora preset's gradient_checkpointing)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (ignored on a GPU)")
    parser.add_argument("--out", type=Path, help="also append the line to this JSONL file")
    parser.add_argument("--commit", help="the commit measured, where the working tree has no .git (a device copy)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rcsd-compiled-") as scratch:
        model, tokenizer = model_of(args.shape, device, Path(scratch))
    model.train()
    if args.checkpointing:
        enable_checkpointing(model)
    batch = student_batch(tokenizer, args.prompts, args.chains, args.new_tokens)
    other = student_batch(tokenizer, args.prompts, args.chains, args.new_tokens - 5, seed=1)
    forward_backward(model, batch)                                               # warm-up
    eager = [round(forward_backward(model, batch), 3) for _ in range(args.repeats)]
    with OperationCount() as ops:                                                # not timed
        forward_backward(model, batch)
    with CompiledLayers(model).active():
        first = round(forward_backward(model, batch), 1)
        another_shape = round(forward_backward(model, other), 1)
        compiled = [round(forward_backward(model, batch), 3) for _ in range(args.repeats)]
    line = {"bench": "compiled_layers", "shape": args.shape, "device": device_name(device, args.threads),
            "positions": int(batch.ids.numel()), "checkpointing": args.checkpointing,
            "eager_operations": ops.count, "eager_s": eager, "compiled_first_pass_s": first,
            "compiled_another_shape_s": another_shape, "compiled_s": compiled,
            "speedup": round(min(eager) / min(compiled), 2)}
    return report(line, load, args.commit, args.out)


if __name__ == "__main__":
    sys.exit(main())
