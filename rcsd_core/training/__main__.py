"""Run one distillation round over a run directory: the entry point of every launcher.

    python -m rcsd_core.training --run-dir runs/<id> [--resume]            # one process (CPU or one GPU)
    torchrun --nproc_per_node 2 -m rcsd_core.training --run-dir D          # data-parallel (gloo on CPU)
    accelerate launch --num_processes 8 -m rcsd_core.training --run-dir D  # several GPUs (DDP)

Exit codes: 0 done or stopped, 1 failed, 2 bad input (one line on stderr), 130 interrupted.
This is the only place of the training layer that parses arguments.
"""

from __future__ import annotations

import argparse
import sys

from rcsd_core.errors import InputError
from rcsd_core.training.round import train_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rcsd_core.training", description="Run one distillation round.")
    parser.add_argument("--run-dir", required=True, help="a run directory made by create_run / rcsd train")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = parser.parse_args(argv)
    try:
        result = train_round(args.run_dir, resume=args.resume)
    except InputError as exc:
        print(f"rcsd train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:
        return 1
    return 0 if result["status"] in ("done", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
