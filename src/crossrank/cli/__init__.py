"""The typer app: each command calls the library and formats its answer, nothing more."""

from __future__ import annotations

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
