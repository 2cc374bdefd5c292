"""The typer app: each command calls the library and formats its answer, nothing more."""
