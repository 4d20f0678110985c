"""Memory the divergence over the lm_head takes while it runs, by `chunk_size`: the transient that a
round's student phase adds at its loss, measured on this CPU for a real shape's head.

    python bench/loss_memory.py qwen3-1.7b                        # chunk sizes 1024, 512, 256
    python bench/loss_memory.py qwen3-1.7b --vocab 151936         # a real Qwen3 tokenizer's vocabulary
    python bench/loss_memory.py smollm2 --rows 512 --chunks 256 64   # check the script quickly

The shapes' heads are those the GPU benchmark builds: their hidden size, the embedded tokenizer's
49,152 entries (what the anchor uses too); `--vocab` sets another.

`lm_head_chunked_divergence` (the round's loss: top-20 forward KL, per-entry clip, as
`bench/round_throughput.py` runs it) over `--rows` completion positions of random bf16 hidden
states, forward and backward. What is counted: the bytes of every tensor storage an aten operation
creates inside the call, added when it is made and taken off when it is freed (a
TorchDispatchMode with a finalizer per storage), and the highest sum. That is the allocator's view
of the call's own tensors, not the process's resident memory. On a GPU the same operations run,
so the part that grows with the chunk should carry over (two chunk sizes' difference is per row;
what does not grow with the chunk, e.g. the (N, H) gradient, is fixed). Prints one JSON line per
chunk size; `--out` appends them to a results file.
"""

from __future__ import annotations

import argparse
import os
import sys
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from lean_adapters import device_name, report  # noqa: E402
from rcsd_core.modeling.losses import lm_head_chunked_divergence  # noqa: E402

V = 49_152    # the embedded tokenizer's: the vocabulary of bench/round_throughput.py's shapes and the anchor's
HIDDEN = {"smollm2": 576, "qwen3-0.6b": 1_024, "qwen3-1.7b": 2_048}


class LiveBytes(TorchDispatchMode):
    """The highest sum of the storages created inside the block and alive at one time."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.alive: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        given = {x.untyped_storage().data_ptr() for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in given:
                self._track(tensor.untyped_storage())     # in-place results and views of inputs are not new
        return out

    def _track(self, storage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.alive:
            return
        self.alive.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._freed, key, size)

    def _freed(self, key: int, size: int) -> None:
        self.live -= size
        self.alive.discard(key)


def transient_bytes(vocab: int, hidden: int, rows: int, chunk: int) -> int:
    """Peak bytes the loss's forward and backward create over `rows` positions (inputs not counted)."""
    generator = torch.Generator().manual_seed(0)
    hs = torch.randn(1, rows, hidden, generator=generator).bfloat16().requires_grad_()
    ht = torch.randn(1, rows, hidden, generator=generator).bfloat16()
    head = (torch.randn(vocab, hidden, generator=generator) * 0.02).bfloat16()
    mask = torch.ones(1, rows, dtype=torch.bool)
    tokens = torch.randint(0, vocab, (1, rows), generator=generator)
    with LiveBytes() as live:
        loss = lm_head_chunked_divergence("topk_forward_kl", hs, ht, head, mask, chunk, tokens=tokens, k=20,
                                          clip_mode="entry", temperature=1.2, clip=0.05)
        loss.backward()
    return live.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shape", choices=sorted(HIDDEN))
    parser.add_argument("--vocab", type=int, default=V, help=f"vocabulary size (default {V:,})")
    parser.add_argument("--rows", type=int, default=2048, help="completion positions (at least the largest chunk)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 512, 256])
    parser.add_argument("--out", type=Path, help="also append the lines to this JSONL file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    vocab, hidden = args.vocab, HIDDEN[args.shape]
    for chunk in args.chunks:
        load = os.getloadavg()[0]
        peak = transient_bytes(vocab, hidden, args.rows, chunk)
        report({"bench": "loss_memory", "shape": args.shape, "vocab": vocab, "hidden": hidden, "rows": args.rows,
                "chunk_size": chunk, "transient_mib": round(peak / 2**20), "device": device_name("cpu", 2)},
               load, None, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
