"""``crossrank index``, ``crossrank search`` and ``crossrank rerank-response``: the retrieval pipeline, and
the rerank of another engine's results, from the command line.

Commands only parse flags, call the library and print; ``register(app)`` adds them to the main app.
Exit codes: 0 ok, 2 for anything the user can fix (bad input, missing file, unknown model).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from crossrank.cli import comma_list, refuse_empty
from crossrank.engine.documents import DEFAULT_FIELDS
from crossrank.errors import CrossrankError, InputError
from crossrank.jsonl import dumps

if TYPE_CHECKING:
    from crossrank.retrieval.results import SearchResult

SAMPLE = "sample"


def _fail(exc: CrossrankError | str) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _weights(value: str | None) -> dict[str, float] | None:
    if not value:
        return None
    out = {}
    for part in value.split(","):
        name, _, weight = part.partition("=")
        if name.strip() in out:
            _fail(f"--weights names {name.strip()!r} twice")
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            _fail(f"--weights takes name=number pairs like bm25=1,dense=0.5; got {part!r}")
    return out


def index(
    corpus: Annotated[str, typer.Argument(help=f"JSONL, CSV or Parquet file; '{SAMPLE}' for the bundled movies")],
    out: Annotated[Path, typer.Option(help="index directory to write")],
    fields: Annotated[str, typer.Option(help="comma-separated text fields to index")] = "title,text",
    id_field: Annotated[str | None, typer.Option(help="id column (default: id, _id, docid or doc_id)")] = None,
    bm25: Annotated[bool, typer.Option(help="build the BM25 index")] = True,
    dense: Annotated[bool, typer.Option(help="build the dense index")] = True,
    dense_model: Annotated[str | None, typer.Option(help="sentence-transformers bi-encoder (default MiniLM-L6)")]
    = None,
    stopwords: Annotated[str, typer.Option(help="stopword list for BM25: en, or none")] = "en",
    stemmer: Annotated[str, typer.Option(help="Snowball stemmer language for BM25, or none")] = "english",
    ann: Annotated[bool | None, typer.Option("--ann/--exact", help="force HNSW on or off (default: by size)")]
    = None,
    dense_windows: Annotated[str, typer.Option(
        help="documents longer than the bi-encoder reads: 'auto' embeds them as up to 8 windows (best window "
             "counts) when most of the corpus is that long, N always as up to N windows, 1 cuts them")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
) -> None:
    """Index a corpus for `crossrank search` (BM25 + dense vectors), with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from crossrank.progress import Bar
    from crossrank.retrieval import BM25Config, Index, load_corpus, sample_corpus_path
    from crossrank.retrieval.dense import check_windows
    from crossrank.retrieval.index import index_destination

    path = sample_corpus_path() if corpus == SAMPLE and not Path(corpus).exists() else Path(corpus)
    try:
        if ann is not None and not dense:
            raise InputError("--ann/--exact choose how dense vectors are searched: not with --no-dense")
        index_destination(out)  # before the build: minutes of embedding must not end in "cannot write"
        docs = load_corpus(path, id_field=id_field)
        config = BM25Config(stopwords=None if stopwords == "none" else stopwords,
                            stemmer=None if stemmer == "none" else stemmer)
        console = Console(stderr=True)
        with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 console=console, transient=as_json, disable=not console.is_terminal and as_json) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task({"bm25": "BM25 index", "embed": "embedding"}[stage], total=total)
                bar.update(tasks[stage], completed=done)

            built = Index.build(docs, comma_list(fields, DEFAULT_FIELDS), bm25=config if bm25 else False,
                                dense=(dense_model or True) if dense else False, ann=ann, progress=progress,
                                dense_windows=check_windows(dense_windows))
            saved = built.save(out)
    except CrossrankError as exc:
        _fail(exc)
    summary = {"index": str(saved), "documents": len(built), "fields": built.fields, "bm25": built.bm25 is not None,
               "dense": built.dense_model, "ann": bool(built.vectors and built.vectors.ann),
               "dense_windows": built.vectors.windows if built.vectors is not None else None,
               "build_s": {k: round(v, 3) for k, v in built.build_s.items()}}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"indexed {len(built)} documents ({', '.join(built.fields)}) into {saved}")


def search(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="directory written by `crossrank index`")],
    query: Annotated[str, typer.Argument(help="the query")],
    top_k: Annotated[int, typer.Option("--top-k", help="hits to return")] = 10,
    window: Annotated[int, typer.Option(help="first-stage candidates the cross-encoder reranks")] = 25,
    model: Annotated[str | None, typer.Option(help="cross-encoder (hub id, dir, export, built-in)")] = None,
    rerank: Annotated[bool | None, typer.Option(
        help="rerank with a cross-encoder (default: only when --model, --remote or --cascade-model is given)")]
    = None,
    retrievers: Annotated[str | None, typer.Option(help="bm25,dense (default: all the index has)")] = None,
    rrf_k: Annotated[int, typer.Option(help="RRF constant k")] = 60,
    weights: Annotated[str | None, typer.Option(help="RRF weights, e.g. bm25=1,dense=0.5")] = None,
    mmr: Annotated[float | None, typer.Option(help="MMR lambda (1 = relevance only); off by default")] = None,
    min_score: Annotated[float | None, typer.Option(
        help="keep only reranked hits the model scored at least this (with --fuse: the model's own score)")] = None,
    budget_ms: Annotated[float | None, typer.Option(help="latency budget: shrink the window to fit it")] = None,
    cascade_model: Annotated[str | None, typer.Option(help="a larger cross-encoder for the survivors of --model")]
    = None,
    cascade_keep: Annotated[int, typer.Option(help="survivors of the cascade's first ranker")] = 10,
    fuse: Annotated[bool, typer.Option(help="fuse the rerank with the first stage by RRF instead of replacing it")
                    ] = False,
    remote: Annotated[str | None, typer.Option(help="URL of a remote ranker instead of the local engine")] = None,
    dialect: Annotated[str, typer.Option(help="remote API: cohere, tei or plain (crossrank's /score)")] = "cohere",
    api_key: Annotated[str | None, typer.Option(envvar="CROSSRANK_API_KEY", help="remote API key")] = None,
    timeout: Annotated[float, typer.Option(help="remote timeout, seconds")] = 2.0,
    retries: Annotated[int, typer.Option(help="remote retries")] = 1,
    on: Annotated[str | None, typer.Option(help="fields the ranker reads (default: the indexed fields)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Search an index: BM25 + dense fused by RRF (the default pipeline), optional MMR, and a cross-encoder
    rerank of the top WINDOW when a model is given."""
    from crossrank.retrieval import CascadeRanker, FusedRanker, Index, LocalRanker, RemoteRanker, build_pipeline

    try:
        refuse_empty(model=model, cascade_model=cascade_model, remote=remote)
        if remote and rerank is False:  # --remote only says where to rerank
            raise InputError("--no-rerank with --remote: drop one (--remote names the ranker to rerank with)")
        if cascade_model and (remote or not model):
            raise InputError("--cascade-model reranks the survivors of --model, a local cross-encoder: "
                             + ("not with --remote" if remote else "name the --model that prunes first"))
        idx = Index.load(index_dir)
        ranker: Any = None
        if remote:
            ranker = RemoteRanker(remote, dialect=dialect, model=model, api_key=api_key, timeout=timeout,
                                  retries=retries)
        elif rerank or (rerank is None and (model or cascade_model)):
            ranker = LocalRanker(model)  # the engine warns if this is the random-head built-in
            if cascade_model:
                ranker = CascadeRanker(ranker, LocalRanker(cascade_model), keep=cascade_keep)
        if fuse and ranker is None:
            raise InputError("--fuse fuses a rerank into the first stage: give --model or --remote to rerank with")
        if ranker is not None and window < 1:
            raise InputError(f"--window {window} reranks nothing: the model would load and never score")
        if fuse:
            ranker = FusedRanker(ranker, k=rrf_k)
        pipeline = build_pipeline(idx, retrievers=comma_list(retrievers), rrf_k=rrf_k, weights=_weights(weights),
                                  mmr_lambda=mmr, ranker=ranker, on=comma_list(on))
        result = pipeline(query, top_k=top_k, window=window, budget_ms=budget_ms, min_score=min_score)
    except CrossrankError as exc:
        _fail(exc)
    if as_json:
        typer.echo(dumps(result.to_dict(), default=str))
    else:
        _print_result(result, idx.fields)
        if ranker is None and rerank is None:
            typer.echo(f"no rerank ({result.method}): the default pipeline. No reranker crossrank can ship has yet "
                       "beaten the BM25 + dense hybrid on held-out collections (docs/quality.md); pass --model "
                       "with a trained cross-encoder to rerank the top --window.", err=True)


def rerank_response(
    query: Annotated[str, typer.Argument(help="the query the engine answered")],
    response: Annotated[Path | None, typer.Argument(
        metavar="[RESPONSE]", help="the engine's JSON response (default: stdin)")] = None,
    model: Annotated[str | None, typer.Option(help="cross-encoder (hub id, dir, export, built-in)")] = None,
    on: Annotated[str, typer.Option(help="comma-separated fields the ranker reads (dotted paths work)")]
    = "title,text",
    window: Annotated[int, typer.Option(help="hits reranked; those past them keep the engine's order")] = 100,
    backend: Annotated[str, typer.Option(help="auto, onnx or torch")] = "auto",
    quantize: Annotated[str | None, typer.Option(help="int8 for the quantized ONNX graph")] = None,
    remote: Annotated[str | None, typer.Option(help="URL of a remote ranker instead of the local engine")] = None,
    dialect: Annotated[str, typer.Option(help="remote API: cohere, tei or plain (crossrank's /score)")] = "cohere",
    api_key: Annotated[str | None, typer.Option(envvar="CROSSRANK_API_KEY", help="remote API key")] = None,
    timeout: Annotated[float, typer.Option(help="remote timeout, seconds")] = 2.0,
) -> None:
    """Rerank an Elasticsearch/OpenSearch `_search` or Solr `/select` JSON response with --model (or
    --remote); print it in its own shape, hits reordered, each engine score kept under `_crossrank`
    (`curl -s 'es:9200/docs/_search?q=...' | crossrank rerank-response "..." --on title,body --model DIR`)."""
    from crossrank.jsonl import loads
    from crossrank.retrieval import LocalRanker, RemoteRanker
    from crossrank.retrieval import rerank_response as rerank

    try:
        refuse_empty(model=model, remote=remote)
        if model is None and remote is None:
            # The built-in model has a random head: reranking with it by default would scramble the engine's
            # order. Naming it (--model minilm-l6-untrained) is allowed, for plumbing.
            raise InputError("name the cross-encoder to rerank with: --model (a trained checkpoint, hub id or "
                             "export) or --remote URL")
        if response is None or str(response) == "-":
            if sys.stdin is None:
                raise InputError("no RESPONSE file given and no standard input to read it from")
            raw = sys.stdin.buffer.read()
        else:
            raw = response.read_bytes()
        if not raw.strip():
            raise InputError("the response is empty: pipe or name the engine's JSON response")
        try:
            parsed = loads(raw.decode("utf-8-sig"))  # a byte-order mark, as PowerShell writes, is not JSON's
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"the response is not JSON: {exc}") from None
        ranker: Any = (RemoteRanker(remote, dialect=dialect, model=model, api_key=api_key, timeout=timeout)
                       if remote else LocalRanker(model, backend=backend, quantize=quantize))
        out = rerank(parsed, query, ranker, on=comma_list(on, ["title", "text"]), window=window)
    except CrossrankError as exc:
        _fail(exc)
    typer.echo(dumps(out))


def _print_result(result: SearchResult, fields: Sequence[str] = ("title", "text")) -> None:
    """A table of the hits. Whatever came from the corpus or a remote server is shown as text, never read
    as Rich markup: "List[str]" lost its brackets and "[/b]" ended the command with a MarkupError."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = Console()
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    window = f"  window {result.window}" if result.window else ""
    console.print(f"[bold]{result.method}[/bold]{window}  ({timings})")
    if result.fallback:
        console.print(f"[yellow]fallback:[/yellow] {escape(result.fallback)}")
    table = Table(show_lines=False)
    reranked = any(hit.stage_score("rerank") is not None for hit in result.hits)
    columns = ["#", "title", *(["rerank"] if reranked else []), "rrf", "bm25 #", "dense #", "snippet"]
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column not in ("title", "snippet") else "left")

    def fmt(value: float | int | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    # a hit's title, else its id; the snippet from the indexed fields (a corpus of `body` had none)
    snippet_fields = [f for f in fields if f != "title"] or list(fields)
    for hit in result.hits:
        doc = hit.document
        title = str(doc.get("title") or hit.id)
        text = " ".join(", ".join(map(str, v)) if isinstance(v := doc[f], list) else str(v)
                        for f in snippet_fields if doc.get(f) not in (None, ""))
        table.add_row(str(hit.rank), Text(title[:40]), *([fmt(hit.stage_score("rerank"), ".4f")] if reranked else []),
                      fmt(hit.stage_score("rrf"), ".4f"),
                      fmt(hit.stage_rank("bm25"), "d"), fmt(hit.stage_rank("dense"), "d"),
                      Text(text[:80] + ("…" if len(text) > 80 else "")))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the retrieval commands to the crossrank app."""
    app.command("index")(index)
    app.command("search")(search)
    app.command("rerank-response")(rerank_response)
