"""Decoding adapters: an unmerged LoRA adapter as two products in the model's dtype, for no-grad decoding.

    lean = DecodingAdapters(model)     # snapshots of each adapted linear's A and scaling·B, model dtype
    lean.refresh()                     # copy the current adapter weights in (after an optimizer step)
    with lean.active():                # every adapted linear runs base(x) + (x·Aᵀ)·(s·B)ᵀ inside the block
        model(...)

Why: peft runs a LoRA linear of a bf16 model as seven operations — the base product, then the
input cast to float32, two float32 products, the scaling, the sum and a cast back — and a decode
step runs that on every linear of every layer: on SmolLM2 1,260 of a step's ~3,000 operations,
each a kernel launch on a GPU and a dispatch on a CPU (DESIGN.md §5). Here the adapted linear is
three: the base product, x·Aᵀ, and one `addmm_` that adds (x·Aᵀ)·(s·B)ᵀ into the base output in
place (CUDA's out-of-place `addmm` would first copy the base output into a new tensor: a fourth kernel).

Why it is safe where merging is not: merging adds s·B·A into the bf16 weight, where most of a small
update is lost to rounding. Here the update stays its own product; only A and s·B are rounded to
the model's dtype (relative 2⁻⁹ of the *update*, not of the weight), and the sum is rounded once, as
peft's cast back rounds it. The float32 weights, their gradients and the optimizer state are not
touched: the snapshots are copies, refreshed in place (`refresh`), so a CUDA graph captured on them
stays valid and sees every update that a refresh brings in.

On a CPU in bfloat16 (`packed`, the default where `packing.supported`), the two products run from
oneDNN-packed copies of the snapshots, made again at each refresh, and the second adds into the
base output inside the product (`packing.linear_add`): a decode step of the embedded SmolLM2 with
16 chains spent ~8 ms of its ~41 in these products through `F.linear` and `addmm` (torch.profiler).
(A Llama's packed decode step, `llama_step`, joins the adapter into its own products; the sampler
then keeps its snapshots unpacked.) Tests: tests/test_packing.py.

For training, `trained_lean` runs each adapted linear as base(x) + (x·Aᵀ)·(s·B)ᵀ with gradients to
the float32 A and B (`models.lean_training` enters it around a student's forward and backward).

A linear keeps peft's own forward when the lean one would differ: adapters disabled or merged, more
than one active adapter, a LoRA variant (DoRA and others), a bias on B, dropout in train mode, a
base layer that is not `nn.Linear`. Tests: tests/test_adapters.py.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rcsd_core.modeling import packing


@dataclass
class Snapshot:
    """One adapted linear: its peft module, the adapter's name, the two rounded copies and the lean
    forward over them (one function for the snapshot's life, so torch.compile's guards keep holding)."""
    module: nn.Module
    name: str
    a: torch.Tensor        # (r, in) A, in the base weight's dtype
    b: torch.Tensor        # (out, r) scaling · B, in the base weight's dtype
    packed: bool = False   # also keep packed copies of a and b (packing.pack), made again at each copy_in

    def __post_init__(self) -> None:
        self.packed_a = self.packed_b = None
        self.forward = packed_lean_forward(self) if self.packed else \
            lean_forward(self.module.base_layer, self.a, self.b)

    @torch.no_grad()
    def copy_in(self) -> None:
        self.a.copy_(self.module.lora_A[self.name].weight)
        self.b.copy_(self.module.lora_B[self.name].weight * self.module.scaling[self.name])
        if self.packed:
            self.packed_a, self.packed_b = packing.pack(self.a), packing.pack(self.b)


def base_model(model: nn.Module) -> nn.Module:
    """The model under peft's wrapper, or the model itself where there is none."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lean_adapter(module: nn.Module) -> str | None:
    """The active adapter a linear can run lean, or None where peft's own forward must run it."""
    if not hasattr(module, "lora_A") or not isinstance(getattr(module, "base_layer", None), nn.Linear):
        return None
    active = list(module.active_adapters)
    if module.disable_adapters or module.merged or len(active) != 1 or active[0] not in module.lora_A:
        return None
    name = active[0]
    if name in getattr(module, "lora_variant", {}) or getattr(module, "use_dora", {}).get(name, False):
        return None
    if module.lora_B[name].bias is not None or getattr(module, "fan_in_fan_out", False):
        return None
    if module.training and not isinstance(module.lora_dropout[name], nn.Identity):
        return None
    return name


def lean_forward(base: nn.Linear, a: torch.Tensor, b: torch.Tensor):
    """forward(x) = base(x) + (x·Aᵀ)·Bᵀ, the sum inside the second product, in place into base(x)'s output."""
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = base(x, *args, **kwargs)
        rows = x.reshape(-1, x.shape[-1])
        if rows.dtype != a.dtype:
            rows = rows.to(a.dtype)
        return out.reshape(-1, out.shape[-1]).addmm_(F.linear(rows, a), b.t()).view(out.shape)
    return forward


def packed_lean_forward(snapshot: Snapshot):
    """forward(x) = base(x) + (x·Aᵀ)·Bᵀ from the snapshot's packed copies (read at each call: a refresh
    replaces them), the sum inside the second product."""
    base = snapshot.module.base_layer

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = base(x, *args, **kwargs)
        if x.dtype != snapshot.a.dtype:
            x = x.to(snapshot.a.dtype)
        return packing.linear_add(packing.linear(x, snapshot.packed_a), snapshot.packed_b, out)
    return forward


def trained_lean_forward(module: nn.Module, name: str):
    """forward(x) = base(x) + (x·Aᵀ)·(s·B)ᵀ with gradients to the float32 A and B, for training in bf16
    (`models.lean_training`): A and s·B cast to x's dtype, the sum inside the second product
    (`addmm`). peft's forward scales and adds over the whole output instead. peft's own forward runs
    wherever `lean_adapter` no longer names `name` (an adapter disabled for the teacher inside the
    block, another one made active) or extra arguments come. Tests: tests/test_adapters.py."""
    base, lora_a, lora_b = module.base_layer, module.lora_A[name], module.lora_B[name]
    own = type(module).forward.__get__(module)

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or lean_adapter(module) != name:
            return own(x, *args, **kwargs)
        out = base(x)
        h = F.linear(x, lora_a.weight.to(x.dtype))
        return torch.addmm(out.reshape(-1, out.shape[-1]), h.reshape(-1, h.shape[-1]),
                           (lora_b.weight * module.scaling[name]).to(x.dtype).t()).view(out.shape)
    return forward


def trained_lean(model: nn.Module) -> contextlib.AbstractContextManager:
    """Inside the block every adapted linear that can run lean does, with gradients (`trained_lean_forward`)."""
    return packing.replaced_forwards([(m, trained_lean_forward(m, name)) for m in model.modules()
                                      if (name := lean_adapter(m)) is not None])


class DecodingAdapters:
    """Snapshots of a model's adapters for decoding; `active()` swaps the lean forwards in for a block."""

    def __init__(self, model: nn.Module, *, packed: bool = True):
        """`packed`: run the products from oneDNN-packed copies where `packing.supported` (bf16 on a CPU)."""
        self.snapshots: list[Snapshot] = []
        for module in model.modules():
            name = lean_adapter(module)
            if name is None:
                continue
            weight = module.base_layer.weight
            A, B = module.lora_A[name].weight, module.lora_B[name].weight
            snapshot = Snapshot(module, name, torch.empty(A.shape, dtype=weight.dtype, device=weight.device),
                                torch.empty(B.shape, dtype=weight.dtype, device=weight.device),
                                packed=packed and packing.supported(weight))
            snapshot.copy_in()
            self.snapshots.append(snapshot)

    def __len__(self) -> int:
        return len(self.snapshots)

    def refresh(self) -> None:
        """Copy the adapters' current weights into the snapshots (in place: the same tensors)."""
        for snapshot in self.snapshots:
            snapshot.copy_in()

    def active(self) -> contextlib.AbstractContextManager:
        """Inside the block each snapshotted linear runs lean; peft's forward is back after it."""
        return packing.replaced_forwards([(s.module, s.forward) for s in self.snapshots])
