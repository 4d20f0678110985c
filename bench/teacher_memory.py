"""Memory a teacher micro-batch's forward takes while it runs (`divergence.teacher_hidden`), on a benchmark
shape, counted on this CPU: what the GPU preset's teacher phase adds on top of the weights.

    python bench/teacher_memory.py qwen3-0.6b                   # the GPU preset's micro-batch: 8 tasks x 8 chains x 256
    python bench/teacher_memory.py smollm2 --tasks 2 --chains 2 --tokens 16    # check the script quickly

A random-init model of the shape (`bench/round_throughput.py`'s: the embedded tokenizer, bf16), the
teacher prompts of the first `--tasks` arithmetic tasks under the sample rubric as the `gpu-lora`
preset lays them out (its two worked examples, as turns), `--chains` chains of `--tokens` random
tokens each; one `teacher_hidden` call under no_grad, its rubric prefix run inside the call.
Counted as `bench/loss_memory.py` counts: every tensor storage the call's operations create, while
alive, and the highest sum. Prints one JSON line; `--out` appends it to a results file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from lean_adapters import device_name, report  # noqa: E402
from loss_memory import LiveBytes  # noqa: E402
from round_throughput import build_shape  # noqa: E402
from rcsd_core.contracts.config import preset_config  # noqa: E402
from rcsd_core.contracts.rubric import load_rubric  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.modeling.contexts import teacher_prompt_ids  # noqa: E402
from rcsd_core.modeling.divergence import teacher_hidden  # noqa: E402
from rcsd_core.modeling.generation import shared_prefix_length  # noqa: E402
from rcsd_core.modeling.models import load_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=["smollm2", "qwen3-0.6b", "qwen3-1.7b"])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--chains", type=int, default=8, help="chains per task")
    parser.add_argument("--tokens", type=int, default=256, help="completion tokens per chain")
    parser.add_argument("--out", type=Path, help="also append the line to this JSONL file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="rcsd-teacher-memory-") as scratch:
        model, tokenizer = load_model(str(build_shape(args.shape, Path(scratch), torch.bfloat16)), device="cpu",
                                      dtype="bfloat16")
    model.eval()
    layout = preset_config("gpu-lora").teacher_layout()          # the preset's worked examples, as turns
    rubric = load_rubric(ROOT / "sample_rubrics" / "arithmetic.yaml")
    tasks = load_tasks(ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl")[:args.tasks]
    per_task = [teacher_prompt_ids(tokenizer, t, rubric, layout) for t in tasks]
    prompts = [p for p in per_task for _ in range(args.chains)]
    generator = torch.Generator().manual_seed(0)
    completions = torch.randint(100, 40_000, (len(prompts), args.tokens), generator=generator).tolist()
    load = os.getloadavg()[0]
    with torch.no_grad(), LiveBytes() as live:
        teacher_hidden(model, prompts, completions, tokenizer.pad_token_id)
    report({"bench": "teacher_memory", "shape": args.shape, "tasks": args.tasks, "chains_per_task": args.chains,
            "tokens": args.tokens, "prompt_tokens": max(len(p) for p in prompts),
            "shared_prefix": shared_prefix_length(prompts), "transient_mib": round(live.peak / 2**20),
            "device": device_name("cpu", 2)}, load, None, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
