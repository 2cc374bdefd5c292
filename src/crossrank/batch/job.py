"""A batch job: stage the input into parts, score pending parts on some workers, assemble the output."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.batch.files import check_rows, file_format, read_rows, write_rows
from crossrank.checks import integer, output_file
from crossrank.checks import ray_address as check_ray_address
from crossrank.engine.backends import BACKENDS
from crossrank.engine.documents import document_text, field_names
from crossrank.engine.model import model_identity
from crossrank.errors import BackendError, InputError

ScoreFn = Callable[[list[tuple[str, str]]], np.ndarray]


#: what scoring writes into a row: a text row's score; a candidates row's scores and ranking
WRITES = {"text": ("score",), "candidates": ("scores", "ranking")}


def row_texts(row: dict[str, Any], n: int, fields: list[str] | None) -> list[str]:
    """The texts row ``n`` (1-based) asks to score, or an ``InputError`` saying what is wrong with it.

    Cheap (no model): staging runs it on every row, so a bad row stops a job before any part is scored.
    """
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InputError(f"row {n}: 'query' must be a non-empty string")
    # A column-oriented file gives every row every column: a null field counts as absent.
    if row.get("candidates") is not None:
        kind, cands = "candidates", row["candidates"]
        if isinstance(cands, (str, bytes, dict)) or not isinstance(cands, Sequence | np.ndarray):
            raise InputError(f"row {n}: 'candidates' must be a list")
        texts = [document_text(c, fields, f"row {n} candidate {i}") for i, c in enumerate(cands)]
    elif "text" in row and (row["text"] is not None or "candidates" not in row):
        kind, texts = "text", [document_text(row["text"], fields, f"row {n} text")]
    else:
        raise InputError(f"row {n}: needs 'text' or 'candidates' (has {sorted(row)[:10]})")
    taken = [k for k in WRITES[kind] if row.get(k) is not None]
    if taken:  # e.g. a first-stage score: every other field is kept, so this one must not vanish silently
        raise InputError(f"row {n}: already has {' and '.join(repr(k) for k in taken)}, where scoring writes "
                         "its result; rename the field in the input")
    return texts


def score_rows(score: ScoreFn, rows: list[dict[str, Any]], on: Sequence[str] | None = None,
               first_row: int = 0) -> list[dict[str, Any]]:
    """Score rows of ``{query, text}`` or ``{query, candidates: [...]}`` in one engine call.

    Every input field is kept. ``text`` rows gain ``score``; ``candidates`` rows gain ``scores`` (aligned
    with the candidates) and ``ranking`` (candidate indices, best first, ties in input order).
    ``first_row`` is the 0-based position of ``rows[0]`` in the job's input; errors count rows from 1.
    """
    pairs: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    fields = field_names(on) if on else None
    for n, row in enumerate(rows, first_row + 1):
        texts = row_texts(row, n, fields)
        spans.append((len(pairs), len(pairs) + len(texts)))
        pairs.extend((row["query"], t) for t in texts)
    scores = score(pairs) if pairs else np.zeros(0, dtype=np.float64)
    out = []
    for row, (a, b) in zip(rows, spans, strict=True):
        s = scores[a:b]
        if row.get("candidates") is not None:
            key = s if s.ndim == 1 else s[:, 0]
            out.append({**row, "scores": s.tolist(), "ranking": np.argsort(-key, kind="stable").tolist()})
        else:
            out.append({**row, "score": s[0].tolist()})
    return out


@dataclass
class BatchReport:
    """What a run did: rows and parts in total, parts skipped because an earlier run finished them."""

    output: Path
    rows: int
    parts: int
    parts_resumed: int
    seconds: float
    workers: int
    engine: str
    pairs: int = 0
    per_part_seconds: list[float] = field(default_factory=list, repr=False)


@dataclass
class Job:
    """The on-disk state of one job, in ``OUTPUT.parts/``: a manifest, staged input parts, finished parts."""

    input: Path
    output: Path
    part_rows: int
    settings: dict[str, Any]

    @property
    def workdir(self) -> Path:
        return self.output.with_name(self.output.name + ".parts")

    def in_path(self, i: int) -> Path:
        return self.workdir / "in" / f"part-{i:06d}.jsonl"

    def out_path(self, i: int) -> Path:
        return self.workdir / "out" / f"part-{i:06d}.jsonl"

    def fingerprint(self) -> str:
        st = self.input.stat()
        key = json.dumps([str(self.input.resolve()), st.st_size, st.st_mtime_ns, self.part_rows, self.settings],
                         sort_keys=True, default=str)
        return hashlib.sha256(key.encode()).hexdigest()

    def stage(self, restart: bool = False) -> tuple[int, int]:
        """Cut the input into parts once; a later run with the same input and settings reuses them.

        Returns ``(parts, rows)``. A leftover work dir from a different job is an error unless
        ``restart``: silently mixing two jobs' parts would corrupt the output.
        """
        manifest = self.workdir / "manifest.json"
        # A leftover job that finished no part has nothing to lose (e.g. it failed on a bad row, and the
        # input was then fixed): staged again without asking for --restart.
        nothing_done = not any((self.workdir / "out").glob("part-*"))
        if manifest.is_file() and not restart and not nothing_done:
            meta = json.loads(manifest.read_text())
            if meta.get("fingerprint") == self.fingerprint():
                return int(meta["parts"]), int(meta["rows"])
            raise InputError(f"{self.workdir} holds an unfinished job with another input or settings; "
                             "remove it or pass restart=True (--restart)")
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        rows = read_rows(self.input)
        if not rows:
            raise InputError(f"{self.input} has no rows")
        # now, not after every part is scored (or, with several workers, after the others were)
        check_rows(rows, parquet=file_format(self.output) == "parquet")
        on = self.settings.get("on")
        fields = field_names(on) if on else None
        for n, row in enumerate(rows, 1):
            row_texts(row, n, fields)
        (self.workdir / "in").mkdir(parents=True)
        (self.workdir / "out").mkdir()
        parts = (len(rows) + self.part_rows - 1) // self.part_rows
        for i in range(parts):
            write_rows(self.in_path(i), rows[i * self.part_rows:(i + 1) * self.part_rows])
        meta = {"fingerprint": self.fingerprint(), "parts": parts, "rows": len(rows),
                           "part_rows": self.part_rows, "input": str(self.input), "settings": self.settings}
        manifest.write_text(json.dumps(meta, indent=1, default=str))
        return parts, len(rows)

    def pending(self, parts: int) -> list[int]:
        return [i for i in range(parts) if not self.out_path(i).is_file()]

    def finish(self, parts: int) -> int:
        """Concatenate finished parts, in order, into the output file; remove the work dir. Returns rows."""
        rows: list[dict[str, Any]] = []
        for i in range(parts):
            rows.extend(read_rows(self.out_path(i)))
        write_rows(self.output, rows)
        shutil.rmtree(self.workdir)
        return len(rows)


def score_part(encoder: Any, job_in: str, job_out: str, on: Sequence[str] | None, first_row: int) -> int:
    """Score one staged part and write it atomically. Idempotent: a retry rewrites the same file."""
    rows = read_rows(Path(job_in))
    write_rows(Path(job_out), score_rows(encoder.score, rows, on, first_row))
    return len(rows)


def _absolute_if_local(model: str | None) -> str | None:
    """A local model directory as an absolute path (Ray workers of a joined cluster run elsewhere); hub
    ids, built-in names and names that are not paths at all are left for the engine to judge."""
    if not model or not model.strip():
        return model
    try:
        local = Path(model).expanduser()
        return str(local.resolve()) if local.exists() else model
    except (OSError, ValueError):  # e.g. a name longer than the file system allows
        return model


def score_file(input: str | Path, output: str | Path, *, model: str | None = None, backend: str = "auto",
               quantize: str | None = None, max_length: int | None = None, on: Sequence[str] | None = None,
               workers: int = 1, part_rows: int = 1024, ray: bool = False, ray_address: str | None = None,
               restart: bool = False, progress: bool = True) -> BatchReport:
    """Score every row of ``input`` and write them, with their scores, to ``output`` (JSONL or Parquet).

    Resumable: run the same command again after a crash and only unfinished parts are scored.
    """
    # Absolute paths: Ray workers of a joined cluster run in another working directory.
    src, dst = Path(input).expanduser().resolve(), Path(output).expanduser().resolve()
    if not src.is_file():  # before its suffix is judged: a directory has none ("unknown format ''")
        raise InputError(f"{src} is a directory, not a file" if src.is_dir() else f"{src} not found")
    file_format(src)
    file_format(dst)
    dst = output_file(dst, "--out")  # before staging: a typo must not leave parts that block the corrected run
    if ray_address is not None and not ray:
        raise InputError("ray_address (--ray-address) goes with ray=True (--ray)")
    # before staging: Ray itself retries an unreachable address for minutes (RAY_ADDRESS is Ray's own
    # default for ray.init, and a stale one hung the job the same way)
    check_ray_address(ray_address if ray_address is not None or not ray else os.environ.get("RAY_ADDRESS") or None)
    integer(workers, "workers", minimum=1)
    integer(part_rows, "part_rows", minimum=1)
    if max_length is not None:  # checked here too: in a pool it would fail every worker's model load
        integer(max_length, "max_length", minimum=1)
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"unknown backend {backend!r}; expected auto, onnx or torch")
    if quantize not in (None, "int8"):
        raise InputError(f"unknown quantization {quantize!r}; expected int8 or none")
    model = _absolute_if_local(model)
    model_kwargs = {"model": model, "backend": backend, "quantize": quantize, "max_length": max_length}
    job = Job(src, dst, part_rows, {**model_kwargs, "on": list(on) if on else None,
                                    "model_content": model_identity(model)})
    with _exclusive(job.workdir):
        return _run(job, model_kwargs, on, workers, part_rows, ray, ray_address, restart, progress)


@contextlib.contextmanager
def _exclusive(workdir: Path) -> Iterator[None]:
    """One run per output at a time: two would stage, score and delete the same parts under each other."""
    lock_path = workdir.with_name(f".{workdir.name}.lock")
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another run is writing {workdir.name.removesuffix('.parts')}; "
                             "wait for it or choose another --out") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # still held: a run that starts now makes its own
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(job: Job, model_kwargs: dict[str, Any], on: Sequence[str] | None, workers: int, part_rows: int, ray: bool,
         ray_address: str | None, restart: bool, progress: bool) -> BatchReport:
    dst = job.output
    started = time.perf_counter()
    parts, rows = job.stage(restart=restart)
    todo = job.pending(parts)
    tasks = [(i, str(job.in_path(i)), str(job.out_path(i)), i * part_rows) for i in todo]
    if ray:
        from crossrank.batch.on_ray import run_on_ray as runner
    else:
        from crossrank.batch.local import run_local as runner
    pending_rows = sum(min(part_rows, rows - i * part_rows) for i in todo)
    with _progress(progress, rows, rows - pending_rows) as advance:
        runner(tasks, model_kwargs, list(on) if on else None, workers, advance, ray_address)
    missing = job.pending(parts)
    if missing:  # a runner that returns without every part written must not produce a short file
        raise BackendError(f"{len(missing)} parts were not scored (first: {missing[0]}); run again to resume")
    total = job.finish(parts)
    return BatchReport(dst, total, parts, parts - len(todo), time.perf_counter() - started, workers,
                       "ray" if ray else "local")


class _progress:
    """A rich progress bar over rows, or nothing (library use, tests)."""

    def __init__(self, enabled: bool, rows: int, done: int) -> None:
        self.enabled, self.rows, self.done = enabled, rows, done

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        from crossrank.progress import Bar

        self.bar = Bar(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                       TimeRemainingColumn(), transient=False, console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("scoring rows", total=self.rows, completed=self.done)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
