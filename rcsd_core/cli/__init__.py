"""The `rcsd` command line: the studio's work, headless. One parser lists every subcommand.

    rcsd score | preview                          (cli/chains.py)
    rcsd signal | guidance | draft | lint | calibrate   (cli/design.py)
    rcsd ablate                                   (cli/ablate.py)
    rcsd train | status | eval                    (cli/rounds.py)
    rcsd import | export                          (cli/formats.py)
    rcsd agreement                                (cli/reviews.py)
    rcsd app                                      (cli/app.py)

`rcsd <command> --help` gives each one's arguments. Bad input exits with code 2 and one line on
stderr naming the file, line and field; no output file is written then. Each handler reads its
namespace and calls one function of the package; shared argument helpers are in cli/args.py.
"""

from __future__ import annotations

import argparse
import sys

from rcsd_core.cli import ablate, app, chains, design, formats, reviews, rounds
from rcsd_core.errors import InputError

SUBCOMMANDS = (chains, design, ablate, rounds, reviews, formats, app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rcsd", description="Rubric-conditioned self-distillation studio.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except InputError as exc:
        print(f"rcsd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rcsd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
