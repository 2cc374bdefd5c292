"""Row files: JSONL and Parquet in, the same format out (chosen by the file's suffix)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from crossrank.engine.documents import clean_text
from crossrank.errors import InputError, MissingDependencyError
from crossrank.jsonl import dumps, read_objects

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown format {path.suffix!r}; use .jsonl or .parquet")
    return fmt


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("Parquet files", "retrieval", "pyarrow") from exc
    return pa, pq


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSONL or Parquet file as dicts; a line that is not a JSON object is an InputError."""
    if not path.is_file():
        raise InputError(f"{path} is a directory, not a file" if path.is_dir() else f"{path} not found")
    if file_format(path) == "parquet":
        _, pq = _pyarrow()
        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    return read_objects(path, errors="surrogateescape")


def _utf8(value: Any) -> Any:
    """Parquet strings must be valid UTF-8: invalid input bytes (kept as surrogates) become U+FFFD."""
    if isinstance(value, str):
        return clean_text(value, "value")
    if isinstance(value, dict):
        return {k: _utf8(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    return value


def check_rows(rows: list[dict[str, Any]], *, parquet: bool) -> None:
    """Every value can be staged as JSON, and (for Parquet output) every column has one type; else an
    InputError naming the column, before any scoring."""
    for n, row in enumerate(rows):
        for key, value in row.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise InputError(f"row {n}: column {key!r} holds a {type(value).__name__}, which batch scoring "
                                 "cannot carry through; cast it to a string or number") from None
    if parquet:
        pa, _ = _pyarrow()
        for key in dict.fromkeys(k for row in rows for k in row):
            if isinstance(key, str) and clean_text(key, "column") != key:  # undecodable input bytes
                raise InputError(f"column name {key!r} is not valid UTF-8, which Parquet cannot store; "
                                 "rename it or write JSONL")
            try:
                pa.array([_utf8(row.get(key)) for row in rows])
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise InputError(f"column {key!r} cannot be stored in Parquet ({exc}): its values mix types "
                                 "across rows or do not fit 64 bits; write JSONL or make the column one type "
                                 "(e.g. strings)") from None


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write atomically (temp file + rename): a reader never sees half a file, a crash leaves none."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if file_format(path) == "parquet":
            pa, pq = _pyarrow()
            # from_pylist takes its columns from the first row; rows with other fields must not lose them.
            columns = list(dict.fromkeys(k for row in rows for k in row))
            pq.write_table(pa.Table.from_pylist([{k: _utf8(row.get(k)) for k in columns} for row in rows]), tmp)
        else:
            with tmp.open("w", encoding="utf-8", errors="surrogateescape") as fh:
                for row in rows:
                    fh.write(dumps(row, errors="surrogateescape") + "\n")
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: no half-written temp file left behind, and one line that says so
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}; free space (a job needs about its input "
                         "plus twice its output) and run again to resume") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
