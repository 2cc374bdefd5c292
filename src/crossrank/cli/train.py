"""``crossrank train`` and ``crossrank adapt``: fine-tune a cross-encoder (the ``[train]`` extra)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crossrank.cli import comma_list
from crossrank.engine.documents import DEFAULT_FIELDS
from crossrank.errors import CrossrankError

if TYPE_CHECKING:
    from crossrank.train.trainer import TrainConfig



def _command_line(ctx: typer.Context) -> str:
    """The run as one command with every option spelled out, so the model card's recipe reproduces it."""
    import click

    words = ["crossrank", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value is False or value == [] or value == ():
            continue
        if isinstance(param, click.Argument):
            words.append(str(value))
            continue
        flag = max(param.opts, key=len)
        if value is True:
            words.append(flag)
        elif isinstance(value, list | tuple):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _run(ctx: typer.Context, out: Path, config: TrainConfig, *, quiet: bool, **recipe: Any) -> None:
    """Run ``train.recipe.run`` with a progress bar (running loss) and print where the model went."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from crossrank.cli.app import _fail
    from crossrank.progress import Bar
    from crossrank.train.recipe import run

    console = Console(stderr=True)
    command = _command_line(ctx)
    try:
        with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("loss {task.fields[loss]:.4f}"), console=console, disable=quiet) as bar:
            task = bar.add_task("train", total=config.steps, loss=float("nan"))

            def report(message: str) -> None:
                if not quiet:
                    console.print(message, markup=False, highlight=False)

            def progress(step: int, running: float) -> None:
                bar.update(task, completed=step, loss=running)

            result = run(out, config, command=command, report=report, progress=progress, **recipe)
    except CrossrankError as exc:
        _fail(exc)
    for e in result.evaluations:
        console.print(f"step {e['step']}: held-out {e['collection']} ndcg@10 {e['ndcg@10']:.4f} "
                      f"mrr@10 {e['mrr@10']:.4f}", markup=False, highlight=False)
    typer.echo(f"trained {result.steps} steps in {result.seconds / 60:.1f} min -> {out} (ONNX: {out / 'onnx'}; "
               f"card: {out / 'README.md'})")


def train_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="directory for the checkpoint, ONNX export and model card")],
    data: Annotated[list[Path] | None, typer.Option(
        help="judged BEIR-layout collection to train on (repeat the option for several)")] = None,
    pseudo: Annotated[list[Path] | None, typer.Option(
        help="corpus (BEIR collection or corpus file) to draw label-free pseudo-queries from (repeatable)")] = None,
    pseudo_count: Annotated[int, typer.Option(help="pseudo-query groups drawn over the --pseudo corpora")] = 2000,
    held_out: Annotated[Path | None, typer.Option(help="BEIR collection to evaluate on, never trained on")] = None,
    base: Annotated[str, typer.Option(help="starting cross-encoder (built-in, hub id, dir)")] = "minilm-l6-untrained",
    loss: Annotated[str, typer.Option(help="listwise, pairwise or pointwise")] = "listwise",
    distill: Annotated[float, typer.Option(help="weight of the distillation loss (0 = off)")] = 0.0,
    teacher: Annotated[str | None, typer.Option(help="distil this cross-encoder's scores instead of the first "
                                                     "stage's ranking")] = None,
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 1000,
    groups_per_step: Annotated[int, typer.Option(help="queries per step")] = 4,
    group_size: Annotated[int, typer.Option(help="candidates per query (1 positive + negatives)")] = 8,
    lr: Annotated[float, typer.Option(help="peak learning rate (linear warm-up 10%, then decay)")] = 3e-5,
    max_length: Annotated[int, typer.Option(help="tokens per pair; queries are cut too")] = 256,
    depth: Annotated[int, typer.Option(help="first-stage depth that negatives are mined from")] = 100,
    window: Annotated[int, typer.Option(help="rerank window of the held-out evaluation")] = 20,
    seed: Annotated[int, typer.Option(help="seed of data order, negatives and dropout")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 200,
    eval_every: Annotated[int, typer.Option(help="steps between held-out evaluations (0 = at the end)")] = 0,
    resume: Annotated[bool, typer.Option(help="continue from the newest checkpoint in --out")] = False,
    quantize: Annotated[str | None, typer.Option(help="also export int8")] = None,
    threads: Annotated[int | None, typer.Option(help="PyTorch threads (default: all cores)")] = None,
    fields: Annotated[str, typer.Option(help="document fields the model reads")] = "title,text",
    id_field: Annotated[str | None, typer.Option(help="id column of --pseudo corpus files (default: id, _id, "
                                                      "docid or doc_id)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Fine-tune a cross-encoder on judged collections (--data) and/or pseudo-queries from corpora (--pseudo).

    Negatives are mined by crossrank's hybrid first stage; --distill adds the first stage's ranking as a
    teacher. The result is a checkpoint, its ONNX export and a model card with the held-out figures.
    """
    from crossrank.train.trainer import TrainConfig

    config = TrainConfig(base=base, loss=loss, distill_weight=distill, steps=steps, groups_per_step=groups_per_step,
                         lr=lr, max_length=max_length, seed=seed, checkpoint_every=checkpoint_every,
                         eval_every=eval_every if held_out else 0, threads=threads)
    _run(ctx, out, config, quiet=quiet, judged=data or [], pseudo=pseudo or [], pseudo_count=pseudo_count,
         teacher=teacher, held_out=held_out, window=window, group_size=group_size, depth=depth,
         fields=comma_list(fields, DEFAULT_FIELDS), resume=resume, quantize=quantize, id_field=id_field)


def adapt_command(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Argument(help="your corpus (JSONL/CSV/Parquet or a BEIR directory); no labels")],
    out: Annotated[Path, typer.Option("--out", help="directory for the adapted model")],
    base: Annotated[str, typer.Option(help="the cross-encoder to adapt")] = "minilm-l6-untrained",
    pseudo_count: Annotated[int, typer.Option(help="pseudo-query groups to draw from the corpus")] = 2000,
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 500,
    distill: Annotated[float, typer.Option(help="weight of the first-stage distillation loss")] = 1.0,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 2e-5,
    held_out: Annotated[Path | None, typer.Option(help="a judged BEIR collection to measure on (its labels are "
                                                       "never trained on; it may be CORPUS itself)")] = None,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    resume: Annotated[bool, typer.Option(help="continue from the newest checkpoint")] = False,
    fields: Annotated[str, typer.Option(help="document fields the model reads")] = "title,text",
    id_field: Annotated[str | None, typer.Option(help="id column of a CORPUS file (default: id, _id, docid or "
                                                      "doc_id)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Label-free domain adaptation: pseudo-queries from CORPUS, the hybrid as teacher, mined negatives.

    With --held-out (judged queries, e.g. over the same corpus: their labels are never read for training),
    the card reports the hybrid's figures and the adapted reranker's side by side.
    """
    from crossrank.train.trainer import TrainConfig

    config = TrainConfig(base=base, loss="listwise", distill_weight=distill, steps=steps, lr=lr, max_length=256,
                         seed=seed)
    _run(ctx, out, config, quiet=quiet, pseudo=[corpus], pseudo_count=pseudo_count, held_out=held_out,
         fields=comma_list(fields, DEFAULT_FIELDS), resume=resume, id_field=id_field)


def calibrate_command(
    model: Annotated[Path, typer.Argument(help="a local model directory (checkpoint or crossrank export)")],
    data: Annotated[list[Path], typer.Argument(help="judged BEIR-layout collections to fit on")],
    method: Annotated[str, typer.Option(help="platt (logistic in the logit) or isotonic")] = "platt",
    window: Annotated[int, typer.Option(help="hybrid candidates per query, as the reranker sees them")] = 20,
    seed: Annotated[int, typer.Option(help="seed of the held-out split of the queries")] = 0,
    fields: Annotated[str, typer.Option(help="document fields the model reads")] = "title,text",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Fit a monotone map from MODEL's raw scores to the probability of relevance; store it beside MODEL.

    The engine then returns calibrated probabilities for MODEL (activation "calibrated"), so a threshold such
    as --min-score 0.5 means the same across models. Reports the expected calibration error on held-out
    queries before (the model's sigmoid) and after.
    """
    import json

    from crossrank.cli.app import _fail
    from crossrank.train.calibrate import calibrate

    try:
        report = calibrate(model, data, method=method, window=window, seed=seed,
                           fields=comma_list(fields, DEFAULT_FIELDS))
    except CrossrankError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"{method} calibration of {model} on {report['queries']} queries ({report['pairs']} pairs): "
                   f"held-out ECE {report['held_out_ece_sigmoid']:.4f} (sigmoid) -> "
                   f"{report['held_out_ece_calibrated']:.4f}; wrote {report['file']}")


def register(app: typer.Typer) -> None:
    """Add the training commands to the crossrank app."""
    app.command("train")(train_command)
    app.command("adapt")(adapt_command)
    app.command("calibrate")(calibrate_command)
