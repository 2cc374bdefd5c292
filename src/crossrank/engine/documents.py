"""Turning what callers pass (strings, dicts, bytes) into the texts the model reads."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, KeysView, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from crossrank.errors import InputError

Document = str | Mapping[str, Any]
DEFAULT_FIELDS = ("title", "text")


def clean_text(value: Any, what: str) -> str:
    """A str the tokenizer accepts, or an InputError that says which input was wrong.

    bytes must be valid UTF-8; lone surrogates (what ``surrogateescape`` makes of invalid
    UTF-8) become U+FFFD rather than crashing the Rust tokenizer.
    """
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{what} is not valid UTF-8 (byte {exc.start})") from exc
    if value is None:
        raise InputError(f"{what} is None; expected a string")
    raise InputError(f"{what} must be a string, got {type(value).__name__}")


def field_names(on: Any, what: str = "on") -> list[str]:
    """``on`` as a list of field names, each once, in order: one name alone is that field (not its
    characters); a name given twice is read once (``["text"] * 20000`` is one text). Any ordered
    iterable will do (a list, a tuple, ``dict.keys()``); a set has no order, so documents would read
    differently from run to run, and is refused."""
    names = [on] if isinstance(on, str) else on
    unordered = isinstance(names, AbstractSet) and not isinstance(names, KeysView)
    if unordered or isinstance(names, (Mapping, bytes)) or not isinstance(names, Iterable):
        raise InputError(f"{what} must be a field name or a list of field names, got {type(on).__name__}")
    names = list(names)
    if not all(isinstance(f, str) for f in names):
        raise InputError(f"{what} must hold field names (strings), got {names[:5]!r}")
    return list(dict.fromkeys(names))


def field_text(value: Any, what: str) -> str | None:
    """The text of one field value, or None when it is missing: None or NaN (pandas' and Parquet's
    missing value, not the word "nan"). A list (an Elasticsearch array field) gives its items one a
    line; bytes are read as UTF-8; anything else as ``str()``. The same rule for the engine's documents
    and the retrieval index, so a document reads the same at every stage."""
    if isinstance(value, (str, bytes, bytearray)):
        return clean_text(value, what)
    if value is None or (isinstance(value, numbers.Real) and value != value):  # NumPy's NaNs too
        return None
    try:
        if isinstance(value, (list, tuple)):
            items = [field_text(v, what) for v in value]
            return "\n".join(t for t in items if t is not None)
        return clean_text(str(value), what)
    except RecursionError:  # a structure nested past Python's stack
        raise InputError(f"{what} is nested too deeply to read as text") from None


def document_text(doc: Any, on: list[str] | None, what: str) -> str:
    """The text of one document: a string as is, a dict's ``on`` fields joined by newlines (a list
    field's items one a line, as search engines store multi-valued fields). ``on`` comes from
    :func:`field_names`, read once per call over many documents, not once per document."""
    if isinstance(doc, Mapping):
        fields = on or [f for f in DEFAULT_FIELDS if f in doc]
        if not fields:
            raise InputError(
                f"{what} is a dict without 'text' or 'title'; say which fields to read with on=[...] "
                f"(it has {sorted(map(str, doc))[:10]})"
            )
        parts = [t for f in fields if (t := field_text(doc.get(f), f"{what}[{f!r}]")) is not None]
        if not parts:
            raise InputError(f"{what} has none of the fields {fields}")
        return "\n".join(parts)
    return clean_text(doc, what)


def as_items(items: Any, what: str = "documents") -> Sequence[Any]:
    """A list or tuple as it is; any other iterable — a generator, a 1-D numpy array or pandas Series,
    ``dict.values()`` — read once into a list (what a RAG service has at hand; they were refused). A
    string, bytes or a mapping is one item, not a list of them, and is refused."""
    if isinstance(items, (str, bytes, Mapping)):
        raise InputError(f"{what} must be a list, got one {type(items).__name__}")
    if isinstance(items, Sequence):
        return items
    if hasattr(items, "columns") and hasattr(items, "iterrows"):  # iterating a DataFrame gives its column names
        raise InputError(f"{what} is a DataFrame: pass one column (df['text']) or its rows (df.to_dict('records'))")
    try:
        return list(items)
    except TypeError:
        raise InputError(f"{what} must be a list (or another iterable), got {type(items).__name__}") from None


def document_texts(documents: Any, on: Sequence[str] | None = None) -> list[str]:
    documents = as_items(documents)
    fields = field_names(on) if on else None  # once, not per document
    return [document_text(d, fields, f"document {i}") for i, d in enumerate(documents)]


def query_text(query: Any) -> str:
    text = clean_text(query, "query")
    if not text.strip():
        raise InputError("query is empty")
    return text
