"""Teacher forward on a micro-batch: the full prompts vs the shared prefix run once (train.teacher_hidden).

    python bench/teacher_forward.py [--model smollm2-135m-instruct] [--chains 8] [--tokens 64] [--repeats 3]

Teacher prompts repeat the rubric and its worked examples before every task, so the chains of a
micro-batch share most of their prompt. This times `completion_hidden` on the packed full
prompts against `teacher_hidden` (prefix once, cache repeated per chain) on the same chains —
arithmetic sample rubric, the first train tasks, random completion tokens — under no_grad on
one CPU thread, and checks both give the same hidden states at the completion positions.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.modeling.contexts import teacher_prompt_ids  # noqa: E402
from rcsd_core.modeling.generation import shared_prefix_length  # noqa: E402
from rcsd_core.modeling.models import load_model  # noqa: E402
from rcsd_core.contracts.rubric import load_rubric  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.modeling.batching import pack_batch  # noqa: E402
from rcsd_core.modeling.divergence import completion_hidden, teacher_hidden  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--chains", type=int, default=8, help="chains in the micro-batch (2 per task)")
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per chain")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_model(args.model, device="cpu")
    rubric = load_rubric(ROOT / "sample_rubrics" / "arithmetic.yaml")
    tasks = load_tasks(ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl", split="train")
    prompts = [teacher_prompt_ids(tokenizer, tasks[i // 2], rubric) for i in range(args.chains)]
    generator = torch.Generator().manual_seed(0)
    completions = torch.randint(1000, 20000, (args.chains, args.tokens), generator=generator).tolist()
    pad = tokenizer.pad_token_id
    mask = pack_batch(prompts, completions, pad).mask

    def timed(fn):
        best = float("inf")
        with torch.no_grad():
            fn()  # warm-up
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = fn()
                best = min(best, time.perf_counter() - start)
        return best, out

    full_s, full = timed(lambda: completion_hidden(model, pack_batch(prompts, completions, pad)))
    shared_s, shared = timed(lambda: teacher_hidden(model, prompts, completions, pad))
    result = {"model": args.model, "machine": platform.node(), "chains": args.chains, "completion_tokens": args.tokens,
              "prompt_tokens": [len(p) for p in prompts][:2], "shared_prefix": shared_prefix_length(prompts),
              "full_s": round(full_s, 3), "shared_s": round(shared_s, 3), "speedup": round(full_s / shared_s, 2),
              "max_abs_diff": float((full[mask] - shared[mask]).abs().max())}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
