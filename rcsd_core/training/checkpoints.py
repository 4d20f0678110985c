"""A round's checkpoint in its run directory: save, recover after an interrupted save, load.

    <run>/adapter/
        adapter_model.safetensors, adapter_config.json   the LoRA adapter, peft format (load_adapter reads it)
        training_state.pt     optimizer, scheduler, teacher (EMA, analysis notes), RNG states
        checkpoint.json       step, steps, final, saved, method, model; written last: a directory
                              holding it is complete

A save writes everything into <run>/.adapter.tmp, then swaps it in with two renames:
adapter/ → .adapter.old, .adapter.tmp → adapter/. A crash between them leaves no adapter/ but
two complete checkpoints; `recover_checkpoint` (run on resume) puts the newest complete one back
as adapter/. The training state loads weights-only (tensors and plain containers): a file holding
any other pickled object is refused with an InputError, never executed (DESIGN §6).

    save_checkpoint(run_dir, model, state, meta)      # rank 0
    recover_checkpoint(run_dir)                       # rank 0, before every rank loads
    loaded = load_checkpoint(run_dir, model, device)  # (meta, state), or None without a checkpoint
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import torch

from rcsd_core.contracts import runs
from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text

log = logging.getLogger("rcsd.train")

STATE_FILE = "training_state.pt"
CHECKPOINT_FILE = "checkpoint.json"
WEIGHTS_FILE = "adapter_model.safetensors"
STAGING_DIR = ".adapter.tmp"
OLD_DIR = ".adapter.old"


# ---------------------------------------------------------------------------- save


def save_checkpoint(run_dir: str | Path, model, state: dict, meta: dict) -> Path:
    """Write the adapter, the training state and checkpoint.json, then swap them in as adapter/."""
    run_dir = Path(run_dir)
    staging = run_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    torch.save(state, staging / STATE_FILE)
    atomic_write_text(staging / CHECKPOINT_FILE, json.dumps(meta, indent=1) + "\n")  # last: marks it complete
    target = run_dir / runs.ADAPTER_DIR
    old = run_dir / OLD_DIR
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    # A crash here leaves .adapter.old and .adapter.tmp, both complete: recover_checkpoint takes the newer.
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def rng_state() -> dict:
    """The RNG states a resumed round needs to continue the straight one (CPU, and CUDA when present)."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


# ---------------------------------------------------------------------------- recover and load


def checkpoint_step(folder: Path) -> int | None:
    """The step of a complete checkpoint folder; None when it is missing or incomplete."""
    if not all((folder / name).is_file() for name in (WEIGHTS_FILE, STATE_FILE, CHECKPOINT_FILE)):
        return None
    try:
        return int(json.loads((folder / CHECKPOINT_FILE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recover_checkpoint(run_dir: str | Path) -> int | None:
    """Make adapter/ the newest complete checkpoint among adapter/, .adapter.tmp and .adapter.old.

    Needed after a save was interrupted between its two renames. Returns the step of adapter/
    afterwards, or None when there is no complete checkpoint. On a tie adapter/ stays. The other
    two folders are removed once adapter/ holds the newest.
    """
    run_dir = Path(run_dir)
    target = run_dir / runs.ADAPTER_DIR
    found = [(step, folder) for folder in (target, run_dir / STAGING_DIR, run_dir / OLD_DIR)
             if (step := checkpoint_step(folder)) is not None]
    if not found:
        return None
    step, best = max(found, key=lambda item: item[0])  # max keeps the first of equals: adapter/
    if best != target:
        # adapter/ is missing, incomplete or older; `best` stays whole until the rename, so a crash
        # in here leaves it to be found again.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(best, target)
        log.warning("recovered the checkpoint of step %d from %s (a save had been interrupted)", step, best.name)
    for leftover in (run_dir / STAGING_DIR, run_dir / OLD_DIR):  # older, equal or incomplete: adapter/ holds it
        shutil.rmtree(leftover, ignore_errors=True)
    return step


def load_checkpoint(run_dir: str | Path, model, device) -> tuple[dict, dict] | None:
    """Load adapter/ into the peft model; return (checkpoint.json, training state), or None if absent."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = Path(run_dir) / runs.ADAPTER_DIR
    if not (adapter / CHECKPOINT_FILE).is_file():
        return None
    meta = json.loads((adapter / CHECKPOINT_FILE).read_text())
    result = set_peft_model_state_dict(model, load_file(str(adapter / WEIGHTS_FILE)))
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"checkpoint does not fit the model: {result.unexpected_keys[:3]}")
    return meta, load_training_state(adapter / STATE_FILE, device)


def load_training_state(path: Path, device) -> dict:
    """training_state.pt, weights-only: tensors and plain containers load, any other object is refused."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError("refusing to load: the training state holds objects other than tensors and plain "
                         "containers (it is loaded weights-only, never unpickled); was it written by rcsd? "
                         f"({str(exc).splitlines()[0][:200]})", source=path) from exc
