"""Benchmarks that run a peer and crossrank side by side in one process and print ratios."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def count(value: str) -> int:
    """An argparse type for sizes and counts: a whole number of at least 1 (0 documents or 0 clients
    would divide by zero or measure nothing, and print a row as if they had)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return number


def run_script(main: Callable[[], None]) -> None:
    """Run a benchmark script's ``main`` as the CLI runs a command: SIGTERM unwinds it, and a crossrank
    error (a model that cannot be loaded, bad input) ends it with its one-line message and exit code 2."""
    from crossrank.cli import exit_on_sigterm
    from crossrank.errors import CrossrankError

    exit_on_sigterm()  # a killed benchmark stops what it started (a server.py run left its server orphaned)
    try:
        main()
    except CrossrankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
