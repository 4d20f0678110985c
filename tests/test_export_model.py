"""`rcsd export-model`: the base with a run's adapter merged (fp32, then the model's dtype), a folder
AutoModelForCausalLM.from_pretrained loads, whose logits equal the adapter model's."""

from __future__ import annotations

import json

import pytest
import torch

from rcsd_core.cli import main
from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.modeling.models import attach_lora, load_adapter, load_model, randomize_adapter

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 1, "prompts_per_step": 2,
        "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0, "eval_every": 0, "checkpoint_every": 0,
        "threads": 1, "device": "cpu"}


def _run_with_adapter(tmp_path, model_name="tiny-random"):
    run_dir = runs.create_run(resolve_paths(config_from_data({**BASE, "model": model_name})), tmp_path / "runs",
                              run_id="r")
    model, _ = load_model(model_name, device="cpu", dtype="float32", seed=0)
    peft_model = attach_lora(model, rank=4, alpha=8)
    randomize_adapter(peft_model, std=0.05, seed=1)     # B starts at zero: give the adapter an effect to merge
    peft_model.save_pretrained(str(run_dir / runs.ADAPTER_DIR))
    return run_dir


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_export_model_logits_equal_the_adapter_models(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    run_dir = _run_with_adapter(tmp_path)
    out = tmp_path / "exported"
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(out)]) == 0
    assert json.loads((out / "rcsd-export.json").read_text())["dtype"] == "float32"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".exported")]   # no staging left
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    base, tokenizer = load_model("tiny-random", device="cpu", dtype="float32", seed=0)
    ids = torch.tensor([tokenizer.encode("Ann has 4 pens and gets 3 more.")])
    base_logits = _logits(base, ids)
    adapted = _logits(load_adapter(base, run_dir / runs.ADAPTER_DIR).eval(), ids)
    assert (adapted - base_logits).abs().max() > 1e-3                       # the adapter changes the model
    torch.testing.assert_close(_logits(exported, ids), adapted, atol=1e-5, rtol=1e-5)
    # the tokenizer travels with it
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(out).encode("Answer: 7") == tokenizer.encode("Answer: 7")
    # an existing folder is refused, untouched
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_export_model_bf16_is_the_fp32_merge_rounded(tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = _run_with_adapter(tmp_path)
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(tmp_path / "fp32")]) == 0
    bf16 = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    fp32 = AutoModelForCausalLM.from_pretrained(tmp_path / "fp32")
    assert next(bf16.parameters()).dtype == torch.bfloat16
    for (name, p16), (_, p32) in zip(bf16.state_dict().items(), fp32.state_dict().items()):
        assert torch.equal(p16, p32.to(torch.bfloat16)), name                # merged in fp32, rounded once


def test_export_model_refuses_a_run_without_an_adapter(tmp_path, capsys):
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="r")
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no adapter" in err and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_export_model_embedded_logits_within_fp32_tolerance(tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = _run_with_adapter(tmp_path, "smollm2-135m-instruct")
    out = tmp_path / "exported"
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(out)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    base, tokenizer = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    ids = torch.tensor([tokenizer.encode("Ann has 4 pens and gets 3 more. How many pens?")])
    adapted = _logits(load_adapter(base, run_dir / runs.ADAPTER_DIR).eval(), ids)
    torch.testing.assert_close(_logits(exported, ids), adapted, atol=1e-4, rtol=1e-4)
    # the same merge saved in bf16 stays within bf16 tolerance of the fp32 adapter model
    assert main(["export-model", "--run-dir", str(run_dir), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    bf16 = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto").eval()
    assert (_logits(bf16, ids) - adapted).abs().max() < 0.25 * adapted.abs().max()
