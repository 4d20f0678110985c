"""Counting the operations a block of torch code runs: the proxy for a GPU decode step's cost.

    with OperationCount() as ops:
        decoder.step()
    ops.count            # aten operations that compute something; views and metadata left out
    ops.names            # how many of each: Counter({"mm.default": 121, ...})

Replayed as a CUDA graph, a decode step costs about its number of small kernels (on an H100, 2,681
operations took 9.4 ms a step and 1,841 took 6.9 ms: `bench/lean_adapters.py`), so counting them on a
CPU copy of a model says what a change does to the GPU step before a GPU is at hand.
"""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode

NOT_COMPUTING = ("_unsafe_view.default", "detach.default")   # views that aten does not mark as views


class OperationCount(TorchDispatchMode):
    """Counts the aten operations run inside the block, views and metadata left out."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.names: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.__name__ not in NOT_COMPUTING:
            self.count += 1
            self.names[func.__name__] += 1
        return func(*args, **(kwargs or {}))
