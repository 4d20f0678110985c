"""Grouped-query attention over a static cache: which paths copy the keys and values, and how long they take.

With a padding mask, transformers' "sdpa" attention repeats every key/value head for its query
heads (`repeat_kv`) except in an eager decode step on transformers >= 5.2x; under torch.compile
(dynamo) it always repeats. rcsd's `grouped_attention` (modeling/attention.py) folds the query heads of a group
into the query axis instead. This script runs one attention call of each path on the shapes of a
real model (default: the embedded SmolLM2, 9 query / 3 key-value heads) and counts, with a
TorchDispatchMode, the bytes every aten operation allocates; the cache itself is the yardstick.

    python bench/grouped_attention.py                       # 16 rows, 128 cache columns, decode and prefill
    python bench/grouped_attention.py --rows 64 --columns 512 --heads 16 --kv-heads 8 --head-dim 128
    python bench/grouped_attention.py --dtype bfloat16

Paths: `hf_sdpa` (transformers' own, eager), `hf_sdpa_traced` (its branch under dynamo),
`sdpa_enable_gqa` (torch SDPA with enable_gqa=True and the mask), `folded` (query heads folded into
the query axis: what `grouped` does on CUDA), `matmul` (Q·Kᵀ, a float32 softmax, ·V with the groups
folded: what `grouped` does on a CPU for calls this small), `grouped` (the attention function every
rcsd forward uses, as it runs on this machine).
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.integrations import sdpa_attention

from rcsd_core.modeling.attention import folded_attention, grouped_attention, matmul_attention


class Allocations(TorchDispatchMode):
    """Bytes of the tensors aten operations return, and the largest one, while active."""

    def __init__(self):
        super().__init__()
        self.bytes = self.largest = 0
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.numel():
                size = t.numel() * t.element_size()
                if t.untyped_storage().data_ptr() not in {a.untyped_storage().data_ptr() for a in args
                                                          if isinstance(a, torch.Tensor)}:   # not a view
                    self.bytes += size
                    self.largest = max(self.largest, size)
                    name = func.__name__.split(".")[0]
                    self.ops[name] = self.ops.get(name, 0) + size
        return out


class Module(torch.nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups, self.is_causal, self.training = groups, True, False


def paths(groups: int):
    module = Module(groups)

    def hf(q, k, v, m):
        return sdpa_attention.sdpa_attention_forward(module, q, k, v, m)[0]

    def hf_traced(q, k, v, m):   # the branch transformers takes while dynamo traces (compile, CUDA-graph recipes)
        with mock.patch.object(sdpa_attention, "is_torchdynamo_compiling", lambda: True):
            return sdpa_attention.sdpa_attention_forward(module, q, k, v, m)[0]

    def enable_gqa(q, k, v, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True).transpose(1, 2)

    def grouped(q, k, v, m):
        return grouped_attention(module, q, k, v, m)[0]

    def folded(q, k, v, m):
        return folded_attention(q, k, v, m).transpose(1, 2)

    def matmul(q, k, v, m):
        return matmul_attention(q, k, v, m).transpose(1, 2)

    return {"hf_sdpa": hf, "hf_sdpa_traced": hf_traced, "sdpa_enable_gqa": enable_gqa, "folded": folded,
            "matmul": matmul, "grouped": grouped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--columns", type=int, default=128, help="cache length L")
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--prefill", type=int, default=64, help="query length of the prefill case")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    torch.set_default_dtype(getattr(torch, args.dtype))
    torch.set_num_threads(args.threads)
    B, H, Hkv, L, D = args.rows, args.heads, args.kv_heads, args.columns, args.head_dim
    key, value = torch.randn(B, Hkv, L, D), torch.randn(B, Hkv, L, D)
    cache_bytes = key.numel() * key.element_size()
    print(f"B={B} H={H} Hkv={Hkv} L={L} D={D}; one layer's keys: {cache_bytes / 2**20:.2f} MiB; "
          f"{args.dtype}; torch {torch.__version__}, {args.threads} threads")
    for T in (1, args.prefill):
        query = torch.randn(B, H, T, D)
        mask = torch.rand(B, 1, T, L) > 0.2
        mask[..., 0] = True
        reference = None
        print(f"\n{'decode' if T == 1 else 'prefill'} (T={T})")
        print(f"{'path':<18}{'allocated / keys':>18}{'largest / keys':>16}{'us/call':>10}  max |diff|")
        for name, fn in paths(H // Hkv).items():
            with Allocations() as seen:
                out = fn(query, key, value, mask)
            reference = out if reference is None else reference
            start = time.perf_counter()
            for _ in range(args.repeats):
                fn(query, key, value, mask)
            us = (time.perf_counter() - start) / args.repeats * 1e6
            largest_ops = dict(sorted(seen.ops.items(), key=lambda kv: -kv[1])[:3])
            print(f"{name:<18}{seen.bytes / cache_bytes:>18.2f}{seen.largest / cache_bytes:>16.2f}{us:>10.0f}  "
                  f"{(out - reference).abs().max().item():.1e}   {largest_ops}")


if __name__ == "__main__":
    main()
