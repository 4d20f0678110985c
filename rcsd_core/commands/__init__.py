"""CLI glue for the subcommands beyond score/preview/app, one module per area.

Each module defines `register(subparsers)` that adds its subcommands with `set_defaults(func=...)`;
list it in REGISTRARS. The handlers take the argparse namespace and call into the package.
"""

REGISTRARS: list = []
