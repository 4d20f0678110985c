"""CLI glue for the subcommands beyond score/preview/app, one module per area.

Each module defines `register(subparsers)` that adds its subcommands with `set_defaults(func=...)`;
list it in REGISTRARS. The handlers take the argparse namespace and call into the package.
"""

REGISTRARS: list = []

from rcsd_core.commands import design as _design  # noqa: E402  signal, guidance, draft, lint, calibrate

REGISTRARS.append(_design.register)

from rcsd_core.commands import train as _train  # noqa: E402  train, status, eval

REGISTRARS.append(_train.register)
