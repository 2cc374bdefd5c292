"""The typer app: each command calls the library and formats its answer, nothing more."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import overload


@overload
def comma_list(value: str | None, default: Sequence[str]) -> list[str]: ...
@overload
def comma_list(value: str | None, default: None = None) -> list[str] | None: ...
def comma_list(value: str | None, default: Sequence[str] | None = None) -> list[str] | None:
    """``"title, text"`` -> ``["title", "text"]``: the one way every command reads a comma-separated option;
    ``default`` when it names nothing."""
    items = [f.strip() for f in value.split(",") if f.strip()] if value else []
    return items or (list(default) if default is not None else None)


def refuse_empty(**options: str | None) -> None:
    """An option given as an empty string is an unset ``$VARIABLE``, not "no model": refused by flag name
    (``model_name="..."`` is ``--model-name``) rather than read as the option left out."""
    from crossrank.errors import InputError

    for name, value in options.items():
        if value is not None and not value.strip():
            raise InputError(f"--{name.replace('_', '-')} is empty")


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """SIGTERM ends the process as Ctrl-C does, through ``finally`` blocks and context managers (child
    processes stopped, scratch files removed), with the shell's exit code 128 + 15."""
    signal.signal(signal.SIGTERM, _terminated)
