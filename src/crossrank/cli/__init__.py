"""The typer app: each command calls the library and formats its answer, nothing more."""

from __future__ import annotations


def comma_list(value: str | None) -> list[str] | None:
    """``"title, text"`` -> ``["title", "text"]``: the one way every command reads a comma-separated option."""
    return [f.strip() for f in value.split(",") if f.strip()] if value else None
