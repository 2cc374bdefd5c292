"""Checks for the numbers and output paths callers pass as options, in one place.

An option of the wrong type or out of range must fail where it is given, with its name, as an
``InputError``; not later as a ``TypeError`` from deep inside a loop, and not silently (a NaN weight
or threshold compares false with everything and quietly reorders or empties a ranking).
"""

from __future__ import annotations

import math
import numbers
import os
import socket
from pathlib import Path

from crossrank.errors import InputError


def integer(value: object, name: str, *, minimum: int = 0) -> int:
    """``value`` as an int if it is a whole number (Python or NumPy, not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r:.80}")
    return int(value)


def number(value: object, name: str, *, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None) -> float:
    """``value`` as a float if it is a finite real (not a bool) within the bounds: ``minimum`` and
    ``maximum`` inclusive, ``above`` exclusive."""
    try:
        x = float(value) if not isinstance(value, bool) and isinstance(value, numbers.Real) else math.nan
    except OverflowError:  # an int past float's range, e.g. 10**400
        x = math.nan
    real = math.isfinite(x)
    ok = real and (minimum is None or x >= minimum) and (above is None or x > above) \
        and (maximum is None or x <= maximum)
    if not ok:
        bounds = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else "",
                  f"<= {maximum:g}" if maximum is not None else ""]
        within = " and ".join(b for b in bounds if b)
        raise InputError(f"{name} must be a finite number{' ' + within if within else ''}, got {value!r:.80}")
    return x


def output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` made (with its parents) as a directory to write into, or an ``InputError`` saying why not:
    an existing file, a read-only or missing place. Checked before any work whose result it would hold."""
    out = Path(path).expanduser()  # `--out=~/x` reaches us unexpanded: bash expands ~ only at a word's start
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{what} {out} is a file, not a directory") from None
    except OSError as exc:
        raise InputError(f"cannot create {what} {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"{what} {out} is not writable")
    return out


def refuse_foreign(out: Path, *, ours: bool, kind: str) -> None:
    """Refuse a non-empty directory that is not an earlier output of this ``kind``: an export, an index
    or a training run writes files by name (config.json, README.md, corpus.jsonl, bm25/...), and in a
    directory of the user's own files that replaced or deleted them. What counts as ours is a file the
    command itself wrote first (its manifest, or a marker), never names alone."""
    if not ours and out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} holds files and is not {kind}; refusing to write over them (choose a new or "
                         "empty directory)")


def output_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a file this run may write: not a directory, in an existing writable directory."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise InputError(f"{what} {out} is a directory, not a file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what} {out}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{what} {out}: the directory {parent} is not writable")
    return out


def ray_address(address: str | None, *, timeout_s: float = 5.0) -> None:
    """A ``host:port`` or ``ray://host:port`` cluster address that answers a TCP connection, or an
    ``InputError``: Ray itself retries an unreachable address for minutes before it gives up. ``None``,
    ``"auto"`` and ``"local"`` are Ray's to resolve."""
    if address is None or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"Ray address {address!r} is not host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None
