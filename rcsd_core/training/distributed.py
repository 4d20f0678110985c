"""What the ranks of a data-parallel round say to each other: gathered objects, an all-reduced
flag, the stop request, and which backward averages the gradients.

One process (world 1) takes the short path everywhere and never touches torch.distributed, so a
CPU or one-GPU round needs no process group. Under `torchrun` / `accelerate launch` the
Accelerator has set one up (gloo on CPU, nccl on GPUs); see docs/scale-out.md.

    python -m rcsd_core.training --run-dir D                                    # world 1
    torchrun --standalone --nproc_per_node 2 -m rcsd_core.training --run-dir D  # two gloo ranks
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
from pathlib import Path

import torch

from rcsd_core.contracts import runs
from rcsd_core.files import atomic_write_text

log = logging.getLogger("rcsd.train")
HASH_DIR = "rank-hashes"


def gather(accelerator, obj) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def any_rank(accelerator, flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (a (1,) tensor summed across ranks)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, "sum").item() > 0)


def gradient_sync(accelerator, train_model, *, last: bool):
    """The context of one micro-batch's backward: DDP all-reduces the gradients only on the last one
    (earlier micro-batches accumulate locally under no_sync); a plain model needs nothing."""
    return contextlib.nullcontext() if last else accelerator.no_sync(train_model)


def write_rank_hash(run_dir: str | Path, rank: int, named_params) -> None:
    """Debug/test (RCSD_RANK_HASHES=1): a hash of this rank's LoRA weights in <run>/rank-hashes/rank-<r>.txt.

    Ranks that averaged their gradients every step end with equal hashes (tests/test_distributed.py).
    """
    digest = hashlib.sha256()
    for n, p in sorted(named_params, key=lambda x: x[0]):
        digest.update(n.encode())
        digest.update(p.detach().float().cpu().numpy().tobytes())
    atomic_write_text(Path(run_dir) / HASH_DIR / f"rank-{rank}.txt", digest.hexdigest() + "\n")


class RoundInterrupted(Exception):
    """A stop request reached a one-process round inside a step: that step is dropped, never half-kept."""


class StopRequest:
    """SIGTERM/SIGINT or a STOP file in the run directory: end the round.

    With several processes the ranks finish the current step together (`should_stop` after each
    step). A single process is stopped within seconds: `interrupt_point()`, called between sampling
    batches and micro-batches, raises RoundInterrupted, the unfinished step is dropped, and the last
    completed step is checkpointed. A second signal ends the process at once — except while a
    checkpoint is being written (`saving`), which it lets finish first. Only the main thread can
    install handlers; elsewhere (a worker thread) the STOP file is the only way in.
    """

    def __init__(self, run_dir: str | Path, *, within_step: bool = False):
        self.run_dir = Path(run_dir)
        self.within_step = within_step
        self.requested = False
        self.saving = False
        self._handlers: dict = {}

    def install(self) -> None:
        def request(signum, frame):
            name = signal.Signals(signum).name
            if self.requested and self.saving:
                log.warning("received %s again: the checkpoint being written finishes first", name)
            elif self.requested:  # a second signal: stop now, the last checkpoint stays
                raise KeyboardInterrupt
            else:
                self.requested = True
                when = "within this step" if self.within_step else "after this step"
                log.warning("received %s: stopping %s (send it again to stop at once)", name, when)

        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._handlers[sig] = signal.signal(sig, request)
        except ValueError:  # not the main thread (e.g. called from a worker thread): rely on the STOP file
            self._handlers = {}

    def restore(self) -> None:
        """Put back the handlers that were there before install()."""
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}

    def should_stop(self, accelerator) -> bool:
        """Whether any rank saw a signal, or rank 0 a STOP file: every rank gets the same answer."""
        flag = self.requested or (accelerator.is_main_process and (self.run_dir / runs.STOP_FILE).exists())
        return any_rank(accelerator, flag)

    def interrupt_point(self) -> None:
        """Inside a step of a one-process round: raise RoundInterrupted when a stop was asked for."""
        if self.within_step and (self.requested or (self.run_dir / runs.STOP_FILE).exists()):
            self.requested = True
            raise RoundInterrupted

    def answer(self, accelerator) -> None:
        """A stop request is answered once: the STOP file goes (rank 0)."""
        if accelerator.is_main_process:
            (self.run_dir / runs.STOP_FILE).unlink(missing_ok=True)
