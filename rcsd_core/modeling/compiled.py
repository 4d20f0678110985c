"""Decoder layers under torch.compile for the student's passes; their own forward everywhere else.

    layers = CompiledLayers(model)       # compiles nothing yet
    with layers.active():                # the student's forward *and* its backward
        hidden = completion_hidden(model, batch)
        loss.backward()

Why: on a GPU a training pass is launched from Python one operation at a time. The student's
forward and backward of a `gpu-lora` micro-batch (LoRA on every linear, bf16 compute, activations
recomputed in the backward) runs ~9,700 operations on a SmolLM2 shape and ~10,700 on Qwen3-0.6B,
whatever the number of tokens (`python bench/compiled_layers.py smollm2 --prompts 2 --chains 2
--new-tokens 16 --checkpointing`, counted on this CPU). Inductor fuses a layer's elementwise
operations and runs its backward as one compiled graph. On this 2-core CPU that made such a small pass
1.60× faster on the SmolLM2 shape (0.42 → 0.26 s) and 1.34× on Qwen3-0.6B (1.01 → 0.76 s), after
15–23 s of compiling for the first shape and 16–18 s for the second (then lengths are dynamic;
bench/results/compiled_layers.jsonl); the `cpu-demo` pass gained 1.16×. A `cpu-demo` round does not
earn that back; a GPU round of 200 steps might. Not yet timed on a GPU.

Only inside `active()`: the sampler captures the modules' decode step as a CUDA graph and the
teacher runs over a prefix cache, neither of which this is for. The backward must run inside the
block too: with recomputed activations, the layer's forward runs again in the backward, and it must
be the same (compiled) forward that saved the tensors. The compiled forwards are made on the first
`active()` and kept, so later steps reuse what was compiled.

The layers share one compiled graph: on the 30-layer SmolLM2 shape dynamo made 2 (the first shape, then
one with dynamic lengths) for three shapes of passes, and a later pass took 0.22 s against eager's 0.35–0.40 s.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from rcsd_core.modeling.adapters import base_model

BACKEND = "inductor"     # torch.compile's backend (a test runs the traced graphs as they are)


class CompiledLayers:
    """The decoder layers of a transformers model, compiled while `active()`."""

    def __init__(self, model: torch.nn.Module):
        self.layers = list(base_model(model).model.layers)
        self._compiled: list | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Each layer runs its compiled forward inside the block; outside, what it ran before."""
        if self._compiled is None:
            self._compiled = [torch.compile(layer.forward, backend=BACKEND) for layer in self.layers]
        before = [layer.__dict__.get("forward") for layer in self.layers]   # an instance forward (a hook's), or None
        for layer, forward in zip(self.layers, self._compiled):
            layer.forward = forward
        try:
            yield
        finally:
            for layer, forward in zip(self.layers, before):
                if forward is None:
                    del layer.forward
                else:
                    layer.forward = forward
