"""Turning what callers pass (strings, dicts, bytes) into the texts the model reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def document_text(doc: Any, on: Sequence[str] | None, what: str) -> str:
    """The text of one document: a string as is, a dict's ``on`` fields joined by newlines (a list
    field's items one a line, as search engines store multi-valued fields)."""
    if isinstance(doc, Mapping):
        fields = [on] if isinstance(on, str) else list(on) if on else [f for f in DEFAULT_FIELDS if f in doc]
        fields = list(dict.fromkeys(fields))  # a field named twice is read once: ["text"] * 20000 is one text
        if not fields:
            raise InputError(
                f"{what} is a dict without 'text' or 'title'; say which fields to read with on=[...] "
                f"(it has {sorted(map(str, doc))[:10]})"
            )
        parts = []
        for f in fields:
            if f not in doc or doc[f] is None:
                continue
            value = doc[f]
            if isinstance(value, (list, tuple)):  # e.g. an Elasticsearch array field: its items, one a line
                value = "\n".join(v if isinstance(v, str) else str(v) for v in value if v is not None)
            parts.append(clean_text(value if isinstance(value, (str, bytes)) else str(value), f"{what}[{f!r}]"))
        if not parts:
            raise InputError(f"{what} has none of the fields {fields}")
        return "\n".join(parts)
    return clean_text(doc, what)


def document_texts(documents: Any, on: Sequence[str] | None = None) -> list[str]:
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Sequence):
        raise InputError(f"documents must be a list of strings or dicts, got {type(documents).__name__}")
    return [document_text(d, on, f"document {i}") for i, d in enumerate(documents)]


def query_text(query: Any) -> str:
    text = clean_text(query, "query")
    if not text.strip():
        raise InputError("query is empty")
    return text
