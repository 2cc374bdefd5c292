"""``crossrank batch``: offline scoring of a JSONL/Parquet file, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossrank.cli import comma_list
from crossrank.errors import CrossrankError


def batch(
    input: Annotated[Path, typer.Argument(help="JSONL or Parquet rows: {query, text} or {query, candidates}")],
    out: Annotated[Path, typer.Option("--out", help="output file (.jsonl or .parquet): every row plus scores")],
    model: Annotated[str | None, typer.Option(help="hub id, local dir, ONNX export or built-in name")] = None,
    backend: Annotated[str, typer.Option(help="auto, onnx or torch")] = "auto",
    quantize: Annotated[str | None, typer.Option(help="int8 for the quantized ONNX graph")] = None,
    on: Annotated[str | None, typer.Option(help="comma-separated fields of dict texts/candidates")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per pair (default: the model's own limit)")] = None,
    workers: Annotated[int, typer.Option(help="worker processes (or Ray actors); cores are split among them")] = 1,
    part_rows: Annotated[int, typer.Option("--part-rows", help="rows per resumable part")] = 1024,
    ray: Annotated[bool, typer.Option("--ray", help="run on Ray Data (local cluster, or --ray-address)")] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="e.g. ray://head:10001 or auto")] = None,
    restart: Annotated[bool, typer.Option(help="discard an unfinished job's parts instead of resuming")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Score every row of INPUT and write it with its scores; run again after a crash to resume."""
    from crossrank.batch import score_file
    from crossrank.cli.app import _fail

    try:
        report = score_file(input, out, model=model, backend=backend, quantize=quantize, max_length=max_length,
                            on=comma_list(on), workers=workers, part_rows=part_rows, ray=ray,
                            ray_address=ray_address, restart=restart, progress=not quiet)
    except CrossrankError as exc:
        _fail(exc)
    resumed = f", {report.parts_resumed} resumed" if report.parts_resumed else ""
    typer.echo(f"scored {report.rows} rows in {report.parts} parts{resumed} on {report.engine} "
               f"({report.workers} workers) in {report.seconds:.1f}s -> {report.output}", err=True)


def register(app: typer.Typer) -> None:
    app.command()(batch)
