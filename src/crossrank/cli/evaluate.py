"""``crossrank eval``: what each stage buys, on labelled data (BEIR layout)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from crossrank.checks import output_dir, output_file
from crossrank.cli import comma_list, refuse_empty
from crossrank.engine.documents import DEFAULT_FIELDS
from crossrank.errors import CrossrankError, InputError

#: Without --model there is no trained reranker to measure (the built-in has a random head), so no rerank row.
DEFAULT_METHODS = "bm25,dense,hybrid"
DEFAULT_METHODS_WITH_MODEL = "bm25,dense,hybrid,hybrid+rerank"


def _collections(data_dir: Path) -> list[Path]:
    """One collection, or every BEIR-layout collection directly under a directory of them."""
    if not data_dir.exists():
        from crossrank.errors import InputError

        raise InputError(f"{data_dir}: no such directory")
    if (data_dir / "corpus.jsonl").is_file():
        return [data_dir]
    found = sorted(p for p in data_dir.iterdir() if (p / "corpus.jsonl").is_file()) if data_dir.is_dir() else []
    if not found:
        from crossrank.errors import InputError

        raise InputError(f"{data_dir} is neither a BEIR-layout collection nor a directory of them")
    return found


def eval_command(
    data_dir: Annotated[Path, typer.Argument(help="BEIR-layout collection (corpus.jsonl, queries.jsonl, qrels/) "
                                                  "or a directory of them")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate")] = "test",
    methods: Annotated[str | None, typer.Option(
        help="comma-separated: bm25, dense, hybrid, each with optional +mmr, +rerank, +rerank+fuse (RRF of the "
             "first-stage and reranked ranks); 'default' is crossrank search's pipeline. Default: "
             f"{DEFAULT_METHODS}, and hybrid+rerank with --model")] = None,
    window: Annotated[int, typer.Option(help="documents the cross-encoder reranks")] = 100,
    model: Annotated[str | None, typer.Option(help="cross-encoder for +rerank (hub id, dir, export, built-in)")
                     ] = None,
    fields: Annotated[str, typer.Option(help="document fields the stages read")] = "title,text",
    max_chunks: Annotated[int, typer.Option(help="long documents: windows per document, score = max (1 = truncate)")
                          ] = 1,
    dense_windows: Annotated[str, typer.Option(
        help="long documents in the dense index: 'auto' (windows when most documents are long), N windows "
             "per document (best window counts) or 1 (cut at the bi-encoder's length)")] = "auto",
    per_query_out: Annotated[Path | None, typer.Option("--per-query", help="write per-query figures (JSONL)")
                             ] = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(help="paired test of method A against B on NDCG@10")
                       ] = None,
    run_files: Annotated[list[str] | None, typer.Option(
        "--run", help="your own first stage as a TREC run file (qid Q0 docid rank score tag: an Elasticsearch, "
                      "Solr or Pyserini export), NAME=PATH or PATH (named by its file stem): method NAME is the "
                      "run as it is, NAME+rerank reranks its top --window. Repeatable; one collection")] = None,
    write_runs: Annotated[Path | None, typer.Option(
        "--write-runs", help="write each method's ranking as a TREC run file, DIR/COLLECTION.METHOD.trec")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """NDCG@10, MRR@10 and Recall@100 per method, with per-query stage latency (ir-measures)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress, TaskID

    from crossrank.cli.app import _fail
    from crossrank.eval import compare as compare_runs
    from crossrank.eval import load_collection
    from crossrank.eval.runner import FIRST_STAGES, MethodResult, index_for, parse_method, run_method
    from crossrank.eval.runs import read_run, run_external, run_name

    console = Console(stderr=True)
    if per_query_out:
        try:
            per_query_out = output_file(per_query_out, "--per-query")
        except InputError as exc:
            _fail(exc)
    if write_runs is not None:
        try:
            write_runs = output_dir(write_runs, "--write-runs")
        except InputError as exc:
            _fail(exc)
    try:
        refuse_empty(model=model)
        run_paths: dict[str, Path] = {}
        for spec in run_files or []:
            name, run_path = run_name(spec)
            if name in FIRST_STAGES or name == "default" or name in run_paths:
                raise InputError(f"--run {spec!r}: the name {name!r} is taken; write --run OTHER_NAME=PATH")
            run_paths[name] = run_path
        if run_paths and len(_collections(data_dir)) > 1:
            raise InputError("--run: a run file belongs to one collection; give that collection's directory")
        rankings = {name: read_run(run_path) for name, run_path in run_paths.items()}
        if not methods:
            methods = ",".join([DEFAULT_METHODS_WITH_MODEL if model else DEFAULT_METHODS,
                                *(f"{n},{n}+rerank" if model else n for n in run_paths)])
        parsed = [parse_method(m.strip(), runs=list(run_paths)) for m in methods.split(",") if m.strip()]
        if compare:
            missing = [m for m in compare if m not in {p.name for p in parsed}]
            parsed += [parse_method(m, runs=list(run_paths)) for m in missing]
        if not parsed:
            raise InputError(f"--methods {methods!r} names no method")
        # BM25-only methods need no embeddings (minutes per collection on a CPU); MMR diversifies by them
        needs_dense = any("dense" in m.retrievers or m.mmr for m in parsed)
        if window < 1 and any(m.rerank for m in parsed):
            raise InputError(f"--window {window} reranks nothing: a '+rerank' row would be its first stage's")
        ranker = None
        if any(m.rerank for m in parsed):
            from crossrank.retrieval import LocalRanker

            ranker = LocalRanker(model, max_chunks_per_doc=max_chunks)
            if model is None:
                console.print("[yellow]+rerank without --model uses the built-in minilm-l6-untrained, whose head is "
                              "random: its rows measure speed, not ranking. Pass --model to measure a reranker.[/]")
        results: list[MethodResult] = []
        comparisons: list[tuple[str, Any]] = []
        for path in _collections(data_dir):
            collection = load_collection(path, split)
            for note in collection.notes:
                console.print(f"[yellow]{escape(collection.name)}: {escape(note)}[/]")
            with Progress(console=console, transient=True, disable=as_json) as bar:
                task = bar.add_task(f"{escape(collection.name)}: index", total=None)

                def report(stage: str, done: int, total: int, task: TaskID = task, name: str = escape(collection.name)
                           ) -> None:
                    bar.update(task, description=f"{name}: {stage}", completed=done, total=total)

                # a run file's methods need no index (its documents are read from the corpus)
                index = index_for(collection, comma_list(fields, DEFAULT_FIELDS), progress=report,
                                  dense_windows=dense_windows, dense=needs_dense) \
                    if any(m.run is None for m in parsed) else None
                by_method = {}
                for m in parsed:
                    bar.update(task, description=f"{escape(collection.name)}: {m.name}", completed=0,
                               total=len(collection.queries))
                    if m.run is not None:
                        by_method[m.name] = run_external(
                            collection, m, rankings[m.run], window=window, depth=100, ranker=ranker,
                            fields=comma_list(fields, DEFAULT_FIELDS), progress=partial(bar.advance, task))
                    else:
                        by_method[m.name] = run_method(index, collection, m, window=window, ranker=ranker,
                                                       progress=partial(bar.advance, task))
            results.extend(by_method.values())
            if compare:
                a, b = compare
                comparisons.append((collection.name, compare_runs(
                    by_method[a].per_query["ndcg@10"], by_method[b].per_query["ndcg@10"], names=(a, b))))
    except CrossrankError as exc:
        _fail(exc)
    if per_query_out:
        try:
            with per_query_out.open("w") as fh:
                for r in results:
                    for qid in r.per_query["ndcg@10"]:
                        fh.write(json.dumps({"collection": r.collection, "method": r.method, "query": qid,
                                             **{m: v[qid] for m, v in r.per_query.items()}}) + "\n")
        except OSError as exc:
            _fail(InputError(f"cannot write --per-query {per_query_out}: {exc.strerror or exc}"))
    if write_runs is not None:
        try:
            for r in results:
                r.write_trec(write_runs / f"{r.collection}.{r.method}.trec")
        except OSError as exc:
            _fail(InputError(f"cannot write runs to {write_runs}: {exc.strerror or exc}"))
        except CrossrankError as exc:
            _fail(exc)
    if as_json:
        payload: dict = {"results": [r.to_dict() for r in results]}
        if comparisons:
            payload["comparisons"] = [{"collection": c, **vars(cmp)} for c, cmp in comparisons]
        typer.echo(json.dumps(payload))
        return
    _print_table(results, comparisons)


def _print_table(results: list, comparisons: list) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title="crossrank eval", show_lines=False)
    for col in ("collection", "method", "NDCG@10", "MRR@10", "R@100", "first stage ms", "rerank ms", "total ms"):
        table.add_column(col, justify="left" if col in ("collection", "method") else "right")
    fell_back = []
    for r in results:
        lat = r.latency_ms
        method = r.method
        if r.fallbacks:  # the ranker failed on some queries: those kept their first-stage order
            method += f" ({r.fallbacks}/{r.queries} not reranked)"
            fell_back.append(r)
        table.add_row(Text(r.collection), Text(method), f"{r.measures['ndcg@10']:.3f}", f"{r.measures['mrr@10']:.3f}",
                      f"{r.measures['recall@100']:.3f}",
                      f"{lat['first_stage']['p50']:.1f}" if "first_stage" in lat else "-",  # a run: not measured
                      f"{lat['rerank']['p50']:.1f}" if "rerank" in lat else "-",
                      f"{lat['total']['p50']:.1f}" if "total" in lat else "-")
    console = Console(width=None if Console().is_terminal else 120)
    console.print(table)
    for r in fell_back:
        console.print(f"[yellow]{escape(r.collection)} {r.method}: the ranker failed on {r.fallbacks} of {r.queries} "
                      "queries, which kept their first-stage order (see the log)[/]")
    for name, c in comparisons:
        verdict = "significant" if c.significant() else "not significant"
        change = "n/a" if c.relative is None else format(c.relative, "+.1%")
        console.print(f"{name}: {c.a} vs {c.b} NDCG@10 {c.mean_a:.3f} vs {c.mean_b:.3f} "
                      f"({change}), randomization p={c.p_randomization:.3f}, t-test p={c.p_ttest:.3f}: "
                      f"{verdict} at 0.05 over {c.queries} queries")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
