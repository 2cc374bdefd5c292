"""``crossrank`` command line. Heavy imports happen inside commands so ``--help`` is instant."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from crossrank.cli import comma_list, exit_on_sigterm
from crossrank.engine.documents import clean_text
from crossrank.errors import CrossrankError, InputError
from crossrank.jsonl import dumps, loads

app = typer.Typer(help="crossrank: cross-encoder reranking, exact and fast.", no_args_is_help=True,
                  add_completion=False)


def _fail(exc: CrossrankError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _read_stdin_documents() -> list:
    """One document a line: a JSON object (or JSON string) as such, anything else as its text.

    In JSONL input (some line is a JSON object), a line that opens an object but does not parse is an
    error naming it, not a document scored as raw JSON; in plain text, "{curly} braces" is just text.
    """
    docs: list = []
    broken: tuple[int, json.JSONDecodeError] | None = None
    for n, line in enumerate(sys.stdin, 1):
        line = line.rstrip("\r\n")
        if n == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark from Windows editors
        if not line.strip():
            continue
        if line.lstrip().startswith(("{", '"')):
            try:
                docs.append(loads(line))
                continue
            except json.JSONDecodeError as exc:
                if broken is None and line.lstrip().startswith("{"):
                    broken = (n, exc)
        docs.append(line)
    if broken is not None and any(isinstance(d, dict) for d in docs):
        line_no, error = broken
        raise InputError(f"stdin line {line_no}: not a JSON object ({error.msg}, column {error.colno})")
    return docs


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(help="the query")],
    documents: Annotated[list[str] | None, typer.Argument(help="documents; read from stdin if none")] = None,
    model: Annotated[str | None, typer.Option(help="hub id, local dir, ONNX export or built-in name")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="return at most this many")] = None,
    on: Annotated[str | None, typer.Option(help="comma-separated fields of JSON documents")] = None,
    backend: Annotated[str, typer.Option(help="auto, onnx or torch")] = "auto",
    quantize: Annotated[str | None, typer.Option(help="int8 for the quantized ONNX graph")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Rank documents for QUERY, best first (documents as arguments, or stdin: lines or JSONL)."""
    from crossrank import CrossEncoder

    try:
        docs: list = list(documents) if documents else _read_stdin_documents()
        ce = CrossEncoder(model, backend=backend, quantize=quantize)
        # a bar on a terminal, for lists long enough to take a while (gone when they are scored)
        ranked = ce.rank(query, docs, top_k=top_k, on=comma_list(on), progress=sys.stderr.isatty() and len(docs) > 64)
    except CrossrankError as exc:
        _fail(exc)
    if as_json:
        typer.echo(dumps({"model": ce.model_name, "results": [
            {"index": r.index, "score": r.score, "document": r.document} for r in ranked]}))
        return
    for rank, r in enumerate(ranked, 1):
        text = clean_text(r.document, "document") if isinstance(r.document, str) else dumps(r.document)
        typer.echo(f"{rank:>3}  {r.score:9.4f}  [{r.index}]  {text[:100]}")


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="hub id, local checkpoint dir or built-in name")],
    out: Annotated[Path, typer.Option(help="directory to write the export to")],
    quantize: Annotated[str | None, typer.Option(help="int8 adds model_int8.onnx")] = None,
) -> None:
    """Export a Hugging Face checkpoint to crossrank's optimized ONNX format."""
    from crossrank.engine.export import export as do_export
    from crossrank.engine.export import export_destination
    from crossrank.engine.model import resolve

    if quantize not in (None, "int8"):
        typer.echo("error: --quantize takes only int8", err=True)
        raise typer.Exit(2)
    try:
        result = do_export(resolve(model), export_destination(out), quantize=quantize)
    except CrossrankError as exc:
        _fail(exc)
    typer.echo(f"exported {model} to {result.path}")


@app.command()
def bench(
    model: Annotated[str | None, typer.Option(help="checkpoint to benchmark (default: built-in MiniLM-L6)")] = None,
    repeats: Annotated[int, typer.Option(help="timed runs per point")] = 10,
    peer: Annotated[bool, typer.Option(help="also run sentence-transformers")] = True,
    corpus: Annotated[Path | None, typer.Option(help="JSONL corpus to cut texts from (default: Cranfield's "
                                                     "abstracts in ../shared/data when present)")] = None,
) -> None:
    """Latency of 1/10/100 titles and passages: sentence-transformers vs crossrank's backends."""
    from crossrank.bench.latency import run

    try:
        run(model, repeats=repeats, include_peer=peer, corpus=corpus, echo=typer.echo)
    except CrossrankError as exc:
        _fail(exc)


def _register_commands() -> None:
    """Commands that live in their own modules (one per layer) add themselves here."""
    from crossrank.cli import batch, evaluate, retrieval, serve, train

    retrieval.register(app)
    serve.register(app)
    batch.register(app)
    evaluate.register(app)
    train.register(app)


_register_commands()


class _Notes(logging.Handler):
    """crossrank's own log lines on stderr, one plain line each, from INFO up: a first use's export to
    ONNX (tens of seconds that would otherwise pass in silence), a fallback, a skipped optimization.
    Python's last resort prints only warnings. Silent once the application configures logging (``serve``
    does), whose handlers print them instead."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            # sys.stderr at the time of the record: a live Rich progress bar replaces it, and prints the
            # line above the bar instead of after it
            sys.stderr.write(self.format(record) + "\n")


def main() -> None:
    # SIGTERM (a supervisor, `kill`) unwinds like Ctrl-C: batch workers are stopped, scratch files removed.
    # `serve` replaces it with uvicorn's or Ray Serve's graceful shutdown.
    exit_on_sigterm()
    notes = logging.getLogger("crossrank")
    if not any(isinstance(h, _Notes) for h in notes.handlers):  # main() run again in one process
        notes.addHandler(_Notes())
    notes.setLevel(logging.INFO)
    try:
        app()
    except BrokenPipeError:  # `crossrank search ... | head -1`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        raise SystemExit(1) from None
    except OSError as exc:
        # What the operating system refused, wherever it surfaced: a file that cannot be read, a directory
        # where a file belongs, a full disk or stdout. One line, not a traceback.
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
