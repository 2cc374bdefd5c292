"""A whole training run from named sources: build groups, train, evaluate held out, export, write a card.

This is what ``crossrank train`` and ``crossrank adapt`` call; the CLI only parses options. Sources:

* ``judged``: BEIR-layout collections whose qrels (graded) supervise, negatives mined by the hybrid;
* ``pseudo``: corpora (BEIR directories or any JSONL/CSV/Parquet corpus) that give weakly supervised
  groups (pseudo-queries, hybrid teacher), no labels read;
* ``held_out``: a BEIR-layout collection never trained on, evaluated as the run goes (NDCG@10 of
  reranking the hybrid's top ``window``) and at the end against the hybrid itself.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crossrank.checks import integer, output_dir, refuse_foreign
from crossrank.errors import InputError
from crossrank.jsonl import read_objects
from crossrank.train.examples import Group, first_stage_searcher, judged_groups, pseudo_groups
from crossrank.train.trainer import CHECKPOINTS, TrainConfig, TrainResult, train

Report = Callable[[str], None]
TRAIN_MARKER = ".crossrank-train"  # written first into --out: this directory is a training run's


def _corpus_of(path: Path, fields: Sequence[str], id_field: str | None = None) -> tuple[str, dict[str, dict], Any]:
    """(name, {id: doc}, index) for a BEIR directory or a corpus file; the index is built once and cached."""
    from crossrank.eval.collection import Collection
    from crossrank.eval.runner import index_for

    if path.is_dir() and (path / "corpus.jsonl").is_file():
        corpus = {str(r["_id"]): r for r in read_objects(path / "corpus.jsonl", required="_id")}
        collection = Collection(path.name, path, corpus, {}, {})
        return path.name, corpus, index_for(collection, list(fields))
    from crossrank.retrieval import Index, load_corpus

    loaded = load_corpus(path, id_field=id_field)
    index = Index.build(loaded, list(fields))
    corpus = {str(doc_id): dict(doc) for doc_id, doc in zip(loaded.ids, loaded.documents, strict=True)}
    return path.stem, corpus, index


def build_groups(*, judged: Sequence[Path] = (), pseudo: Sequence[Path] = (), pseudo_count: int = 1000,
                 fields: Sequence[str] = ("title", "text"), group_size: int = 8, depth: int = 100, seed: int = 0,
                 split: str = "test", report: Report | None = None, id_field: str | None = None) -> list[Group]:
    """Groups from every source; ``pseudo_count`` is spread over the pseudo corpora by their size;
    ``id_field`` names the id of pseudo corpora that are files (found by name when None)."""
    from crossrank.eval import load_collection
    from crossrank.eval.runner import index_for

    groups: list[Group] = []
    for path in judged:
        collection = load_collection(path, split)
        search = first_stage_searcher(index_for(collection, list(fields)), depth)
        made = judged_groups(collection.corpus, collection.queries, collection.qrels, search, fields=fields,
                             group_size=group_size, depth=depth, seed=seed, source=collection.name)
        if report:
            report(f"{collection.name}: {len(made)} judged groups")
        groups += made
    corpora = [_corpus_of(Path(p), fields, id_field) for p in pseudo]
    total = sum(len(c[1]) for c in corpora)
    for i, (name, corpus, index) in enumerate(corpora):
        count = max(1, round(pseudo_count * len(corpus) / total))
        made = pseudo_groups(corpus, first_stage_searcher(index, depth), count=count, fields=fields,
                             group_size=group_size, depth=depth, seed=seed + i, source=name)
        if report:
            report(f"{name}: {len(made)} pseudo-query groups")
        groups += made
    if not groups:
        raise InputError("no training data: no judged collection was given and no pseudo-query could be made from "
                         "the corpora (pseudo-queries need titles of 2+ words or texts of 8+ words)")
    return groups


def teach(groups: Sequence[Group], teacher: str, report: Report | None = None) -> list[Group]:
    """Replace the first stage's teacher logits with another cross-encoder's raw scores (distillation
    from a larger or better model), scored by the engine in one batched call."""
    from crossrank.engine import CrossEncoder

    encoder = CrossEncoder(teacher)
    pairs = [(g.query, d) for g in groups for d in g.docs]
    logits = encoder.score(pairs, activation="raw")
    if logits.ndim != 1:
        raise InputError(f"teacher {teacher!r} has several labels; distillation needs one score per pair")
    out, at = [], 0
    for g in groups:
        n = len(g.docs)
        out.append(Group(g.query, g.docs, g.labels, [float(x) for x in logits[at:at + n]], g.source))
        at += n
    if report:
        report(f"teacher {encoder.model_name}: scored {len(pairs)} pairs")
    return out


class HeldOut:
    """A judged collection never trained on, loaded and indexed once: the hybrid's own figures on it (the bar
    a reranker must clear) and, called with a model directory, NDCG@10 / MRR@10 of hybrid + rerank."""

    def __init__(self, path: Path, *, window: int = 20, fields: Sequence[str] = ("title", "text"),
                 split: str = "test") -> None:
        from crossrank.eval import load_collection
        from crossrank.eval.runner import index_for

        self.collection = load_collection(path, split)
        self.index = index_for(self.collection, list(fields))
        self.window = window

    def _measure(self, method: str, ranker: Any = None) -> dict[str, Any]:
        from crossrank.eval.runner import parse_method, run_method

        result = run_method(self.index, self.collection, parse_method(method), window=self.window, ranker=ranker)
        return {"collection": self.collection.name, **{k: round(v, 4) for k, v in result.measures.items()}}

    def baseline(self) -> dict[str, Any]:
        return self._measure("hybrid")

    def __call__(self, model_dir: Path) -> dict[str, Any]:
        from crossrank.engine import CrossEncoder
        from crossrank.retrieval import LocalRanker

        return self._measure("hybrid+rerank", LocalRanker(CrossEncoder(str(model_dir), backend="torch")))


def export_trained(out: Path, quantize: str | None) -> Path:
    """The engine's ONNX export of the trained checkpoint in ``out/onnx`` (fp32, plus int8 if asked)."""
    from crossrank.engine.export import export
    from crossrank.engine.model import inspect_dir

    return export(inspect_dir(out.name, out), out / "onnx", quantize=quantize).path


def write_card(out: Path, config: TrainConfig, result: TrainResult, *, sources: dict[str, list[str]],
               groups: int, command: str, baseline: dict[str, Any] | None) -> Path:
    """README.md beside the weights: data, recipe, time, machine, held-out figures, licence notes."""
    import os

    evals = result.evaluations
    lines = [
        f"# {out.name}", "",
        "Cross-encoder fine-tuned by `crossrank train`.", "",
        "## Reproduce", "", "```bash", command, "```", "",
        "## Data", "",
        *(f"- {kind}: {', '.join(paths) or '-'}" for kind, paths in sources.items()),
        f"- training groups: {groups}", "",
        "## Recipe", "", "```json", json.dumps(config.__dict__, indent=2), "```", "",
        "## Run", "",
        f"- {result.steps} steps in {result.seconds / 60:.1f} min on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
        + (f"; resumed from step {result.resumed_from}" if result.resumed_from else ""),
        f"- loss: first 50 steps {sum(result.losses[:50]) / max(1, len(result.losses[:50])):.4f}, "
        f"last 50 {sum(result.losses[-50:]) / max(1, len(result.losses[-50:])):.4f}", "",
    ]
    if evals or baseline:
        lines += ["## Held out (never trained on)", "", "| step | collection | ndcg@10 | mrr@10 |", "|---|---|---|---|"]
        if baseline:
            lines.append(f"| hybrid (no rerank) | {baseline['collection']} | {baseline['ndcg@10']} | "
                         f"{baseline['mrr@10']} |")
        lines += [f"| {e['step']} | {e['collection']} | {e['ndcg@10']} | {e['mrr@10']} |" for e in evals]
        lines.append("")
    lines += ["## Licence", "",
              "Base weights: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) when the base is crossrank's "
              "built-in; the training collections keep their own terms (see each SOURCE.md).", ""]
    card = out / "README.md"
    card.write_text("\n".join(lines))
    return card


def run(out: Path, config: TrainConfig, *, judged: Sequence[Path] = (), pseudo: Sequence[Path] = (),
        pseudo_count: int = 1000, held_out: Path | None = None, window: int = 20, group_size: int = 8,
        depth: int = 100, fields: Sequence[str] = ("title", "text"), resume: bool = False,
        quantize: str | None = None, command: str = "", teacher: str | None = None, report: Report | None = None,
        progress: Callable[[int, float], None] | None = None, id_field: str | None = None) -> TrainResult:
    """Build the groups, train, export, write the card.

    The held-out collection's judgments must not be trained on; its corpus may be a pseudo-query source
    (that is label-free adaptation: the judged queries are still unseen).
    """
    if held_out is not None and any(Path(p).resolve() == Path(held_out).resolve() for p in judged):
        raise InputError(f"{held_out} is both trained on and held out: a figure on it would mean nothing")
    # everything that can be wrong is found before the groups are built (minutes of first-stage searches)
    config.check()
    out = output_dir(out, "output directory")
    # the model card is README.md, the weights' config config.json: `--out .` in a project overwrote both.
    ours = any((out / name).exists() for name in (TRAIN_MARKER, "train_config.json", CHECKPOINTS))
    refuse_foreign(out, ours=ours, kind="a crossrank training directory")
    if quantize not in (None, "int8"):
        raise InputError(f"unknown quantization {quantize!r}; expected int8 or none")
    if teacher and not config.distill_weight:  # its scores would be computed (slowly) and never used
        raise InputError("--teacher gives distillation targets: set --distill above 0 (e.g. --distill 1)")
    if pseudo:
        integer(pseudo_count, "pseudo_count", minimum=1)
    integer(depth, "depth", minimum=1)
    integer(group_size, "group_size", minimum=2)
    integer(window, "window", minimum=1)
    # Before any work: a run killed at any point (mid-evaluation, mid-save) leaves a directory it may run in again.
    (out / TRAIN_MARKER).touch()
    t0 = time.perf_counter()
    groups = build_groups(judged=judged, pseudo=pseudo, pseudo_count=pseudo_count, fields=fields,
                          group_size=group_size, depth=depth, seed=config.seed, report=report, id_field=id_field)
    if teacher:
        groups = teach(groups, teacher, report)
    if report:
        report(f"{len(groups)} groups in {time.perf_counter() - t0:.0f} s; training {config.steps} steps")
    evaluate = HeldOut(held_out, window=window, fields=fields) if held_out is not None else None
    result = train(groups, out, config, resume=resume, evaluate=evaluate, progress=progress)
    baseline = evaluate.baseline() if evaluate is not None else None
    export_trained(out, quantize)
    sources = {"judged": [str(p) for p in judged], "pseudo": [str(p) for p in pseudo],
               "held out": [str(held_out)] if held_out else [], "teacher": [teacher or "the hybrid first stage (rank)"]}
    write_card(out, result.config or config, result, sources=sources,
               groups=len(groups), command=command, baseline=baseline)
    return result
