"""Export a run's model for serving: the base with the run's LoRA adapter merged, as a plain folder.

    export_merged_model("runs/r1", "exported/r1")      # then AutoModelForCausalLM.from_pretrained("exported/r1")
    rcsd export-model --run-dir runs/r1 --out exported/r1 [--dtype model|float32|bfloat16|float16]

The base model named in the run's frozen config is loaded in float32, the adapter (`<run>/adapter/`,
peft format) is applied and merged there (`merge_and_unload`: W + scale·B·A, computed in fp32 so
the sum loses nothing to rounding), and only then the merged weights are cast to the model's
dtype: `--dtype model` (the default) is the dtype the base checkpoint declares in its config
(float32 for tiny-random and the embedded SmolLM2, whose cache is dequantised to fp32). The
folder — safetensors weights, config, generation config, the tokenizer, and `rcsd-export.json`
naming the run, base, checkpoint step and dtype — is written into a staging folder beside the
target and renamed into place, so a failed export leaves nothing; an existing target is refused.
A run without an adapter (never trained, or stopped before its first checkpoint) is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from rcsd_core.contracts import runs
from rcsd_core.errors import InputError
from rcsd_core.modeling.models import TINY_RANDOM, load_adapter, load_model, model_source, resolve_dtype

EXPORT_INFO = "rcsd-export.json"


def declared_dtype(model_name: str) -> torch.dtype:
    """The dtype a base checkpoint declares (config `dtype` / `torch_dtype`), float32 when it names none."""
    if model_name == TINY_RANDOM:
        return torch.float32
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_source(model_name))
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(declared, str):
        declared = getattr(torch, declared, None)
    return declared if isinstance(declared, torch.dtype) else torch.float32


def check_export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Refuse, before any model loads, a run without an adapter or a target that exists."""
    run_dir = Path(run_dir)
    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise InputError("not a run directory (no config.yaml)", source=run_dir, field="--run-dir")
    adapter = run_dir / runs.ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise InputError("the run has no adapter to export (it has not saved a checkpoint yet)", source=run_dir,
                         field="adapter")
    if Path(out_dir).exists():
        raise InputError("already exists; choose a new folder", source=out_dir, field="--out")
    return adapter


def export_merged_model(run_dir: str | Path, out_dir: str | Path, *, dtype: str = "model",
                        device: str = "cpu") -> Path:
    run_dir, out = Path(run_dir), Path(out_dir)
    adapter = check_export(run_dir, out)
    config = runs.load_run_config(run_dir)
    target = declared_dtype(config.model) if dtype == "model" else resolve_dtype(dtype)
    model, tokenizer = load_model(config.model, device=device, dtype="float32", seed=config.seed)
    merged = _dense(load_adapter(model, adapter).merge_and_unload()).to(target)
    merged.config.dtype = target
    meta = _checkpoint_meta(adapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / EXPORT_INFO).write_text(json.dumps({
            "run": run_dir.name, "base_model": config.model, "method": config.method,
            "step": meta.get("step"), "dtype": str(target).removeprefix("torch."), "merged_in": "float32",
        }, indent=1) + "\n", encoding="utf-8")
        os.rename(staging, out)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=out, field="--out") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _dense(model):
    """The model as a plain dense one. A base read from GGUF (the embedded model's cache) keeps a
    `quantization_config` naming the GGUF file although its weights are dequantised fp32 tensors, and
    transformers refuses to save such a model: copy the weights into one built from the config
    without it, as `modeling.models.embedded_model_dir` does when it converts the GGUF."""
    quant = getattr(model.config, "quantization_config", None)
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    if quant is None or str(getattr(method, "value", method)) != "gguf":
        return model
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict({k: v for k, v in model.config.to_dict().items()
                                               if k != "quantization_config"})
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict())
    fresh.generation_config = model.generation_config
    return fresh.eval()


def _checkpoint_meta(adapter: Path) -> dict:
    try:
        return json.loads((adapter / "checkpoint.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
