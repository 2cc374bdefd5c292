"""Loading a corpus (JSONL, CSV, Parquet, or records in memory) and checking it before indexing.

Every problem a user can fix (no id, a duplicate id, a field nobody has, an empty file) is an
:class:`~crossrank.errors.InputError` that names the file, the line or record and the field, so
indexing fails in the first second and not after an hour of embedding.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossrank.engine.documents import field_text
from crossrank.errors import InputError, MissingDependencyError
from crossrank.jsonl import loads

log = logging.getLogger(__name__)

#: id columns tried in order when the caller does not name one (BEIR uses ``_id``).
ID_FIELDS = ("id", "_id", "docid", "doc_id")
FORMATS = ("jsonl", "csv", "parquet")


@dataclass
class Corpus:
    """Documents with unique string ids, in a fixed order: position ``i`` is document ``i`` in every index."""

    ids: list[str]
    documents: list[dict[str, Any]]
    id_field: str = "id"
    source: str = "<memory>"
    _positions: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.ids:
            raise InputError(f"corpus {self.source} is empty: there is nothing to index")
        if len(self.ids) != len(self.documents):
            raise InputError(f"corpus {self.source}: {len(self.ids)} ids for {len(self.documents)} documents")
        positions: dict[str, int] = {}
        for i, doc_id in enumerate(self.ids):
            first = positions.setdefault(doc_id, i)
            if first != i:
                raise InputError(
                    f"corpus {self.source}: duplicate id {doc_id!r} (records {first + 1} and {i + 1})"
                )
        self._positions = positions

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, doc_id: str) -> int:
        """Where a document sits in the corpus (and in every index built from it)."""
        try:
            return self._positions[doc_id]
        except KeyError:
            raise InputError(f"corpus {self.source} has no document with id {doc_id!r}") from None

    @property
    def fields(self) -> list[str]:
        """Fields present in at least one document (the id field excluded), in first-seen order."""
        seen: dict[str, None] = {}
        for doc in self.documents:
            seen.update(dict.fromkeys(doc))
        seen.pop(self.id_field, None)
        return list(seen)

    def check_fields(self, on: Sequence[str]) -> None:
        """Fail early if a selected field exists in no document (a typo, or the wrong file).

        A document that merely lacks the fields (real collections have a few empty records) is
        indexed with an empty text and a warning, not refused.
        """
        if not on:
            raise InputError("on= names no fields")
        known = set(self.fields)
        missing = [f for f in on if f not in known]
        if missing:
            raise InputError(
                f"corpus {self.source} has no field {missing[0]!r} (fields: {', '.join(self.fields) or 'none'})"
            )
        empty = [self.ids[i] for i, doc in enumerate(self.documents) if not any(_present(doc.get(f)) for f in on)]
        if empty:
            log.warning("corpus %s: %d documents have none of the fields %s (e.g. %r); they get an empty text",
                        self.source, len(empty), list(on), empty[0])

    def texts(self, on: Sequence[str]) -> list[str]:
        """The text each stage reads: the ``on`` fields of each document, joined by newlines."""
        self.check_fields(on)
        return [join_fields(doc, on, f"document {self.ids[i]!r}") for i, doc in enumerate(self.documents)]

    def text_at(self, position: int, on: Sequence[str]) -> str:
        """One document's text for ``on`` (fields it lacks are skipped); no per-corpus check, for hot paths."""
        return join_fields(self.documents[position], on)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, id_field: str | None = None,
                     source: str = "<memory>") -> Corpus:
        """A corpus from dicts; ids are read from ``id_field`` (or the first of id, _id, docid, doc_id)."""
        ids: list[str] = []
        docs: list[dict[str, Any]] = []
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise InputError(f"corpus {source}: record {i + 1} is a {type(record).__name__}, not an object")
            if id_field is None:
                id_field = next((f for f in ID_FIELDS if f in record), None)
                if id_field is None:
                    raise InputError(
                        f"corpus {source}: record {i + 1} has no id field (tried {', '.join(ID_FIELDS)}); "
                        "name it with id_field= / --id-field"
                    )
            value = record.get(id_field)
            if not _present(value):
                raise InputError(f"corpus {source}: record {i + 1} has no {id_field!r}")
            ids.append(str(value))
            docs.append(dict(record))
        return cls(ids, docs, id_field=id_field or "id", source=source)


def join_fields(doc: Mapping[str, Any], on: Sequence[str], what: str = "") -> str:
    """A document's ``on`` fields joined by newlines, skipping missing and blank ones: what every stage reads.
    Plain ASCII strings, nearly every field, skip the checks (and the error label ``what[field]``)."""
    return "\n".join(v if type(v) is str and v.isascii() else field_text(v, f"{what}[{f!r}]") or ""
                     for f in on if _present(v := doc.get(f)))


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and value != value:  # NaN: pandas/parquet's missing value
        return False
    return not (isinstance(value, str) and not value.strip())


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    if ".jsonl" in suffixes or ".json" in suffixes or ".ndjson" in suffixes:
        return "jsonl"
    raise InputError(f"cannot tell the format of {path} from its name; expected .jsonl, .csv or .parquet")


def load_corpus(path: str | os.PathLike[str], *, id_field: str | None = None, format: str | None = None) -> Corpus:
    """Read a corpus file: JSONL (one object per line), CSV/TSV with a header, or Parquet."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"corpus file {p} is a directory" if p.is_dir() else f"corpus file {p} does not exist")
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise InputError(f"unknown corpus format {fmt!r}; expected one of {FORMATS}")
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]
    return Corpus.from_records(reader(p), id_field=id_field, source=str(p))


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    # Invalid UTF-8 becomes U+FFFD (as read_objects does for corpora): one bad byte must not stop an index.
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n} is not valid JSON ({exc.msg})") from exc
            yield record


def _read_csv(path: Path) -> Iterable[dict[str, Any]]:
    """CSV with RFC 4180 quoting, read strictly: a stray quote is an error naming its line, not a text
    that swallows every row up to the next quote.

    TSV comes in two conventions: quoted like CSV (pandas quotes a cell holding a tab, a newline or a
    quote) or not quoted at all (MS MARCO, BEIR: a passage may start with a quote it never closes). A
    TSV with quotes in it is read quoted unless that joins lines that are whole rows: a line inside one
    of its multi-line cells that, read unquoted, has one cell per column is a row a stray quote
    swallowed, and the file is read one row a line instead (said in a warning). The lines inside a real
    quoted cell are the rest of a text: short, or long when the text holds tabs. A quoted TSV whose
    multi-line cells hold exactly one tab per column on a line reads as unquoted here: save it as CSV,
    which is always read quoted.
    """
    # Python's csv refuses cells over 128 KiB by default; a long document is not an error here.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    if path.suffix.lower() != ".tsv":
        return _read_delimited(path, ",", csv.QUOTE_MINIMAL)
    with path.open("rb") as fh:
        quoted = any(b'"' in block for block in iter(lambda: fh.read(1 << 20), b""))
    if not quoted:
        return _read_delimited(path, "\t", csv.QUOTE_NONE)
    full: set[int] = set()  # lines that, read unquoted, hold one cell per column
    rows_unquoted = sum(1 for _ in _iter_delimited(path, "\t", csv.QUOTE_NONE, full=full))
    try:
        rows, inside = _quoted_layout(path)
    except InputError as exc:  # not valid quoted TSV: its quotes are text
        log.info("%s: read as unquoted TSV, one row a line: %s", path, exc)
        return _read_delimited(path, "\t", csv.QUOTE_NONE)
    swallowed = sorted(inside & full)
    if not swallowed:
        return _read_delimited(path, "\t", csv.QUOTE_MINIMAL)
    log.warning("%s: read as unquoted TSV, one row a line: read quoted, its quotes would join whole rows (line "
                "%d; %d rows instead of %d). A file that quotes its cells reads as intended saved as .csv", path,
                swallowed[0], rows, rows_unquoted)
    return _read_delimited(path, "\t", csv.QUOTE_NONE)


def _quoted_layout(path: Path) -> tuple[int, set[int]]:
    """Rows of the quoted reading of a TSV, and the lines that lie inside its multi-line cells (streamed,
    nothing kept)."""
    rows, last = 0, 0
    inside: set[int] = set()
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", strict=True)
        try:
            for n, cells in enumerate(reader):
                if reader.line_num - last > 1:  # this row spans lines: the ones after its first are inside it
                    inside.update(range(last + 2, reader.line_num + 1))
                last = reader.line_num
                rows += bool(cells) and n > 0  # the header and blank lines are not rows
        except csv.Error as exc:
            raise InputError(f"{path}:{last + 1}: not valid quoted TSV ({exc})") from None
    return rows, inside


def _read_delimited(path: Path, delimiter: str, quoting: Literal[0, 3]) -> list[dict[str, Any]]:
    return list(_iter_delimited(path, delimiter, quoting))


def _iter_delimited(path: Path, delimiter: str, quoting: Literal[0, 3],
                    full: set[int] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a delimited file. ``full``, given, collects the lines of rows with one cell per column, and
    rows with more are not refused (a survey of the file, not a reading of it)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE)
        done = 0  # the last line of the last whole row: a broken row starts after it
        try:
            if not reader.fieldnames:
                return
            done = reader.line_num
            width = len(reader.fieldnames)
            for row in reader:
                # Cells past the header are almost always an unquoted delimiter inside a text: indexing the
                # row would silently drop that part of the document. Blank ones (a trailing delimiter) are
                # harmless; missing cells are missing fields.
                extra = row.pop(None, None) or []
                wide = any(cell.strip() for cell in extra)
                if full is not None:
                    if not wide and None not in row.values():
                        full.add(reader.line_num)
                elif wide:
                    raise InputError(f"{path}:{reader.line_num}: {width + len(extra)} cells for {width} columns "
                                     f"({', '.join(reader.fieldnames)}); quote texts holding {delimiter!r}")
                done = reader.line_num
                yield row
        except csv.Error as exc:
            raise InputError(f"{path}:{done + 1}: not valid CSV from this line on ({exc}); a text that starts "
                             'with a quote must end with one, and quotes inside it are doubled ("")') from None


def _read_parquet(path: Path) -> Iterable[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("reading Parquet corpora", "retrieval", "pyarrow") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several untyped errors for bad files
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    yield from table.to_pylist()
