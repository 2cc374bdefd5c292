"""JSON Lines, read one way everywhere: blank lines skipped, every other line a JSON object, errors that
name the file and line. Used by batch scoring, evaluation and training (corpora and query files).
:func:`dumps` is the one way to write JSON that holds user text (files and terminal output)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from crossrank.errors import InputError


def loads(text: str) -> Any:
    """``json.loads``, where JSON nested past what Python's parser handles (it recurses once per level)
    is a ``JSONDecodeError`` like any other malformed line, not a ``RecursionError`` traceback."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", text, 0) from None


def read_objects(path: Path, *, errors: str = "replace", required: str | None = None) -> list[dict[str, Any]]:
    """Every object of a JSONL file; ``errors`` is the UTF-8 decoding policy, ``required`` a key each must have.

    ``surrogateescape`` keeps undecodable bytes round-trippable (batch scoring writes rows back);
    ``replace`` turns them into U+FFFD (reading a corpus to search it).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} not found")
    rows = []
    with path.open(encoding="utf-8-sig", errors=errors) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{n}: each line must be a JSON object")
            if required is not None and required not in row:
                raise InputError(f"{path}:{n}: each line must be an object with a {required!r}")
            rows.append(row)
    return rows


def as_text(value: Any) -> str:
    """``default=`` for values JSON cannot hold: bytes as the UTF-8 text they carry (what every stage read
    them as), anything else as ``str()`` — not ``"b'...'"``, which would change the document on reload."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities (Python's JSON reader and Parquet floats allow them) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(obj: Any, *, errors: str = "strict", **kwargs: Any) -> str:
    """``json.dumps`` that writes standard JSON, with UTF-8 text kept readable unless it cannot be.

    NaN and infinities are written as null: Python would write a bare ``NaN``, which JavaScript's
    ``JSON.parse`` and most other readers refuse. Text from JSON input may hold lone surrogates (a
    ``"\\ud800"`` escape, or what ``surrogateescape`` made of an invalid byte); written raw they crash the
    file or terminal. A value whose text does not encode under ``errors`` is written with ASCII escapes
    instead: still valid JSON, still exactly the string that was read.
    """
    kwargs["allow_nan"] = False
    try:
        text = json.dumps(obj, ensure_ascii=False, **kwargs)
    except ValueError as exc:  # a non-finite float somewhere (rare: the common case pays no copy)
        if "float" not in str(exc):  # e.g. a circular reference: not ours to mend
            raise
        obj = finite(obj)
        text = json.dumps(obj, ensure_ascii=False, **kwargs)
    if not text.isascii():
        try:
            text.encode("utf-8", errors)
        except UnicodeEncodeError:
            return json.dumps(obj, ensure_ascii=True, **kwargs)
    return text
