"""How close `rcsd export-model`'s merged folder is to the adapter model it came from.

    python bench/export_model_tolerance.py --model smollm2-135m-instruct --out bench/results/export_model_tolerance.json

Builds a run directory for `--model` with a LoRA adapter (rank 16, all linear layers) whose B
matrices are random (N(0, --std²); a trained adapter's are learned, a fresh one's are zero and
would change nothing), exports it twice (`--dtype float32` and `bfloat16`, each merged in fp32)
and compares next-token logits on the first `--prompts` arithmetic sample prompts: the adapter
model (base + unmerged LoRA, fp32) against each export, and — the floor a bf16 model can reach —
against the same unmerged adapter model run in bf16. Reports the largest absolute logit
difference, the largest logit, and how often the argmax token agrees.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.contracts.config import config_from_data, resolve_paths  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.files import atomic_write_text, strict_json  # noqa: E402
from rcsd_core.modeling.models import attach_lora, load_adapter, load_model, randomize_adapter  # noqa: E402
from rcsd_core.training.export import export_merged_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--std", type=float, default=0.02, help="std of the random LoRA B entries")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="export-tolerance-"))
    config = config_from_data({"model": args.model, "rubric": "sample_rubrics/arithmetic.yaml",
                               "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 1,
                               "prompts_per_step": 1, "samples_per_prompt": 1, "max_new_tokens": 8, "seed": 0,
                               "device": "cpu"})
    run_dir = runs.create_run(resolve_paths(config), tmp / "runs", run_id="r")
    base, tokenizer = load_model(args.model, device="cpu", dtype="float32")
    lora = attach_lora(base, rank=16, alpha=32)
    randomize_adapter(lora, std=args.std)
    lora.save_pretrained(str(run_dir / runs.ADAPTER_DIR))

    started = time.perf_counter()
    exported = {d: export_merged_model(run_dir, tmp / d, dtype=d) for d in ("float32", "bfloat16")}
    export_s = (time.perf_counter() - started) / 2

    from transformers import AutoModelForCausalLM

    base, _ = load_model(args.model, device="cpu", dtype="float32")
    adapted = load_adapter(base, run_dir / runs.ADAPTER_DIR).eval()
    models = {d: AutoModelForCausalLM.from_pretrained(path, dtype="auto").eval() for d, path in exported.items()}
    # the floor for bf16: the same adapter model, unmerged, run in bf16
    base16, _ = load_model(args.model, device="cpu", dtype="bfloat16")
    models["bfloat16_unmerged"] = load_adapter(base16, run_dir / runs.ADAPTER_DIR).eval()
    rows = {d: {"max_abs_diff": 0.0, "argmax_agree": 0, "positions": 0} for d in models}
    max_logit = 0.0
    adapter_effect = 0.0
    for task in load_tasks(ROOT / "sample_rubrics/arithmetic.tasks.jsonl")[: args.prompts]:
        ids = torch.tensor([tokenizer.encode(task.prompt)])
        with torch.no_grad():
            ref = adapted(input_ids=ids).logits.float()
            with adapted.disable_adapter():
                adapter_effect = max(adapter_effect, (adapted(input_ids=ids).logits.float() - ref).abs().max().item())
            max_logit = max(max_logit, ref.abs().max().item())
            for d, model in models.items():
                got = model(input_ids=ids).logits.float()
                rows[d]["max_abs_diff"] = max(rows[d]["max_abs_diff"], (got - ref).abs().max().item())
                rows[d]["argmax_agree"] += int((got.argmax(-1) == ref.argmax(-1)).sum())
                rows[d]["positions"] += ids.shape[1]
    result = {"model": args.model, "lora_b_std": args.std, "prompts": args.prompts, "max_abs_logit": max_logit,
              "adapter_effect_max_abs": adapter_effect, "export_seconds": round(export_s, 2),
              **{(d if d.endswith("unmerged") else f"{d}_export"): {**r, "argmax_agree_share": r["argmax_agree"] / r["positions"]}
                 for d, r in rows.items()}}
    text = json.dumps(strict_json(result), indent=1)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
