"""`rcsd app`: launch the studio (Streamlit) on localhost.

    rcsd app [--port 8501] [--address 127.0.0.1]

The studio runs without Streamlit's file watcher: it would walk the whole app folder — the
virtual environment's thousands of folders, runs and workspaces included — on every inotify
overflow, and kept most of a core busy beside a running round. Pages are not edited in production.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from rcsd_core.errors import InputError

APP = Path(__file__).resolve().parents[2] / "app.py"
MAX_UPLOAD_MB = 10   # = rcsd_core.studio.workspace.MAX_UPLOAD_BYTES (tests/test_cli.py checks they agree)


def register(sub) -> None:
    p = sub.add_parser("app", help="launch the studio (Streamlit) on localhost")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1")
    p.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    if not APP.is_file():
        raise InputError(f"the studio's app.py is not next to the package ({APP}); install with pip install -e .")
    return serve(app_command(args.address, args.port), env=os.environ.copy())


def serve(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run the server as a child and pass it SIGTERM, SIGINT and SIGHUP: stopping `rcsd app` (a service
    manager's SIGTERM, Ctrl-C) stops Streamlit too instead of leaving it running; its exit code."""
    child = subprocess.Popen(command, env=env)
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, frame: child.send_signal(signum)) for sig in forwarded}
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:   # a handler installed before ours; the child got the signal too
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()


def app_command(address: str, port: int) -> list[str]:
    """The Streamlit command line of the studio (cli/studio_server.py: Streamlit with the pages routed through
    app.py from the first visit): headless, no file watcher, no usage statistics, and the
    safety settings of .streamlit/config.toml given explicitly (Streamlit reads that file only from the
    working directory, and `rcsd app` may be started anywhere)."""
    return [sys.executable, "-m", "rcsd_core.cli.studio_server", "run", str(APP), "--server.address", address, "--server.port",
            str(port), "--server.headless", "true", "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "none",
            "--server.enableXsrfProtection", "true", "--server.maxUploadSize", str(MAX_UPLOAD_MB)]
