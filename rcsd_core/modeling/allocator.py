"""The C allocator of a process that runs a round on the CPU.

A CPU step frees and allocates the same large blocks many times: the divergence's float32 logit
chunks (128 × 49,152 floats, 25 MB each), the teacher's attention scores, the student's
activations. By default glibc hands such blocks back to the system when they are freed and the
next allocation faults each 4 KiB page in again, zeroed by the kernel. On the `cpu-demo` step that
was 40–155 thousand page faults and 0.07–0.25 s of system time a step; with the settings below,
~10 thousand and ~0.03 s. One `lm_head_chunked_divergence` over 256 positions faults ~41 thousand
times a call without them and almost never with them (tests/test_allocator.py).

    from rcsd_core.modeling.allocator import keep_freed_memory
    keep_freed_memory()      # once, before the round allocates; False where it does not apply

glibc's `mallopt` is the tool made for this (jemalloc or tcmalloc would need preloading before
Python starts); the freed memory stays in the process for its next allocation, so a round's
resident size stays near its peak instead of falling back between phases.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20    # blocks up to 32 MiB come from the heap and are reused: every block a cpu-demo
                             # step frees again (25 MB logit chunks, 27 MB float32 attention weights)
TRIM_THRESHOLD = 1 << 30     # free memory at the heap's top kept up to 1 GiB (glibc: 128 KiB, raised to twice
                             # the largest freed block it has seen)
TOP_PAD = 64 << 20           # the heap grows 64 MiB at a time


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep and reuse freed blocks of up to 32 MiB; True where it took effect
    (Linux with glibc), False elsewhere (nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
