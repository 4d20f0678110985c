"""Packed linears: a bf16 model's frozen weights reordered once for oneDNN, for no-grad passes on a CPU.

    packed = PackedLinears(model)        # a packed copy of every frozen bf16 nn.Linear weight
    with torch.no_grad(), packed.active():
        model(...)                       # each of those linears runs one packed oneDNN product
    y = linear(x, pack(w), bias)         # the same product for one weight
    y = linear_add(h, pack(b), out)      # out + h·bᵀ in one call (the lean adapter's second product)

Why: torch's bf16 `F.linear` on a CPU hands its weight to oneDNN in plain layout on every call, and
oneDNN reorders it into its blocked layout each time. A packed weight is already in that layout.
On this 2-core CPU (AVX-512 BF16, torch 2.13), timed alone, 16 rows times SmolLM2's MLP weight
(576 × 1536) took 73 µs through `F.linear` and 48 µs packed, and its output head (576 × 49152)
2.8 ms against 1.9 ms; the result is the same to the bit (the same kernel runs after the reorder).
A sampling call of the embedded model with its LoRA adapter, 16 chains × 64 tokens: 3.15 → 2.79 s,
the same chains (`python bench/lean_adapters.py embedded --chains 16 --new-tokens 64`). For a
thousand rows (a training forward) the gain is under 10%, and the backward needs the plain
weight, so only no-grad passes use it.

`supported(weight)`: a CPU tensor in bfloat16, in a torch built with oneDNN (x86 wheels are) on a
CPU whose bf16 products oneDNN runs, and one small packed product, tried once per process, equal
to `F.linear`'s. Nothing else is packed, so on a GPU, in float32 or on another CPU `PackedLinears`
is empty and `active()` changes nothing. A linear whose weight requires grad (a trained one) is
left alone.

The copies are the weights as they were when packed: right for rcsd, which never changes a base
weight (the adapter stays unmerged); after changing one in place, pack again. They cost the
weights' size again in memory (270 MB for SmolLM2-135M), for as long as the owner keeps them.
Tests: tests/test_packing.py.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

ROWS_HINT = 16     # rows oneDNN lays the packed weight out for; any number of rows gives the same result


def supported(weight: torch.Tensor) -> bool:
    """Whether `weight` can be packed: bfloat16 on a CPU where oneDNN's packed bf16 product works."""
    return weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and packed_products_work()


@functools.cache
def packed_products_work() -> bool:
    """torch has oneDNN's packed linear, this CPU runs its bf16 products, and one small packed
    product (with the sum) equals torch's own; tried once per process."""
    mkldnn = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_linear_pointwise")
            and hasattr(mkldnn, "_is_mkldnn_bf16_supported") and mkldnn._is_mkldnn_bf16_supported()):
        return False
    generator = torch.Generator().manual_seed(0)
    x, w, out = (torch.randn(*shape, generator=generator).to(torch.bfloat16) for shape in ((3, 8), (5, 8), (3, 5)))
    try:
        packed = pack(w)
        return torch.equal(linear(x, packed), F.linear(x, w)) and \
            torch.equal(linear_add(x, packed, out), torch.addmm(out, x, w.t()))
    except RuntimeError:                        # an op this build or CPU does not run
        return False


def pack(weight: torch.Tensor, rows: int = ROWS_HINT) -> torch.Tensor:
    """A packed (oneDNN-layout) copy of a (out, in) weight, for `linear` and `linear_add`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x·Wᵀ + bias, W packed; x (..., in) in the weight's dtype -> (..., out)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [None], "")


def linear_add(x: torch.Tensor, packed: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """other + x·Wᵀ, W packed, the sum inside the product (one rounding); other (..., out)."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, packed, None, "add")


class PackedLinears:
    """Packed copies of a model's frozen bf16 linears; `active()` runs them packed inside a block."""

    def __init__(self, model: nn.Module):
        self.linears = [(m, pack(m.weight)) for m in model.modules()
                        if type(m) is nn.Linear and not m.weight.requires_grad and supported(m.weight)]

    def __len__(self) -> int:
        return len(self.linears)

    def active(self) -> contextlib.AbstractContextManager:
        """Inside the block each packed linear runs from its packed copy; its own forward is back after it."""
        return replaced_forwards([(module, _packed_forward(packed, module.bias)) for module, packed in self.linears])


@contextlib.contextmanager
def replaced_forwards(replacements: list[tuple[nn.Module, object]]):
    """Each module runs the given forward inside the block (an instance attribute over its class's),
    and its own forward again after it, even after an error."""
    for module, forward in replacements:
        module.forward = forward
    try:
        yield
    finally:
        for module, _ in replacements:
            module.__dict__.pop("forward", None)


def _packed_forward(packed: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return linear(x, packed, bias)
    return forward
