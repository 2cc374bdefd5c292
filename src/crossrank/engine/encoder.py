"""The front door: ``CrossEncoder`` scores (query, document) pairs and ranks documents."""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, SupportsIndex, overload

import numpy as np

from crossrank.checks import integer
from crossrank.engine import activation as act
from crossrank.engine.backends import BACKENDS, Backend, auto_backend
from crossrank.engine.batching import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, collate, plan
from crossrank.engine.documents import as_items, document_texts, query_text
from crossrank.engine.model import UNTRAINED_BUILTINS, ModelDir, default_max_length, resolve, warn_once
from crossrank.engine.tokenize import PairTokenizer
from crossrank.errors import (
    BackendError,
    CrossrankError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
    ScoringStopped,
)

log = logging.getLogger(__name__)


#: a ranked document's fields by name: its own, and sentence-transformers' (its ``rank()`` returns dicts)
_ST_KEYS = {"corpus_id": 0, "score": 1, "text": 2, "index": 0, "document": 2}


class RankedDocument(NamedTuple):
    """One ranked document: its position in the caller's list, its score, the document itself.

    Also readable as sentence-transformers' ``rank()`` result: ``r["corpus_id"]``, ``r["score"]``,
    ``r["text"]``, so code written against it runs unchanged."""

    index: int  # type: ignore[assignment]  # the caller's position, as in every rerank API; shadows tuple.index
    score: float
    document: Any

    @overload  # type: ignore[override]
    def __getitem__(self, key: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: SupportsIndex | slice | str) -> Any:
        if isinstance(key, str):
            if key not in _ST_KEYS:
                raise KeyError(f"{key!r}: a ranked document has index, score and document "
                               "(as sentence-transformers names them: corpus_id, score, text)")
            key = _ST_KEYS[key]
        return tuple.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``r.get("text")``, as on sentence-transformers' dicts."""
        return self[key] if key in _ST_KEYS else default


@dataclass
class ScoreStats:
    """What one scoring call cost: the server reports these in logs, headers and metrics."""

    pairs: int = 0
    unique_pairs: int = 0
    rows: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    batches: list[int] = field(default_factory=list)
    #: tokens each input pair cost (all its windows), in the caller's order: lets a caller that
    #: merged several requests into one call (the server's batcher) report each request's share.
    pair_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    tokenize_s: float = 0.0
    inference_s: float = 0.0


def _warn_untrained(name: str) -> None:
    """Say once per process that a random-head model's scores mean nothing: it is easy to load by default."""
    warn_once(log, "%s has a random classification head: its scores measure speed, not relevance; pass a "
              "trained cross-encoder (e.g. cross-encoder/ms-marco-MiniLM-L6-v2) to rank", name)


def default_threads() -> int:
    """One intra-op thread per CPU this process may run on (``CROSSRANK_THREADS`` overrides)."""
    env = os.environ.get("CROSSRANK_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _refuse_st_options(method: str, **options: Any) -> None:
    """sentence-transformers' options crossrank does not apply: named (a typo stays a TypeError), refused
    when given rather than ignored."""
    given = sorted(name for name, value in options.items() if value is not None)
    if given:
        raise InputError(f"{method}() does not apply sentence-transformers' {', '.join(given)}: prompts are not "
                         "added, activations are named with activation='raw'|'sigmoid'|'softmax', the device is "
                         "chosen when the model loads (CrossEncoder(device=...)), and one process batches alone")


def _reporter(progress: bool | Callable[[int, int], None] | None
              ) -> AbstractContextManager[Callable[[int, int], None] | None]:
    """A ``progress=`` argument as a callback; rich is imported only when a bar is asked for."""
    if progress is None or progress is False:
        return nullcontext(None)
    from crossrank.progress import reporter

    return reporter(progress, "scoring")


class CrossEncoder:
    """Score (query, document) pairs with a Hugging Face cross-encoder.

    ``model`` is a hub id, a local checkpoint directory, a crossrank ONNX export, or a built-in
    name (``None`` gives the default). ``backend`` is ``"auto"`` (torch on a GPU, ONNX Runtime on
    CPU), ``"onnx"`` or ``"torch"``; ``quantize="int8"`` selects the dynamically quantized ONNX
    graph. Scores equal the reference implementation's (transformers / sentence-transformers) in
    fp32; see docs/benchmarks.md for the int8 agreement.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        backend: str = "auto",
        quantize: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        max_length: int | None = None,
        max_query_length: int | None = None,
        activation: str = "auto",
        threads: int | None = None,
        max_batch_tokens: int | None = None,
        max_batch_size: int = 256,
        max_chunks_per_doc: int = 1,
        chunk_overlap: int = 32,
    ) -> None:
        if backend not in (*BACKENDS, "auto"):
            raise InputError(f"unknown backend {backend!r}; expected auto, onnx or torch")
        if quantize not in (None, "int8"):
            raise InputError(f"unknown quantization {quantize!r}; expected None or 'int8'")
        if activation not in act.ACTIVATIONS:
            raise InputError(f"unknown activation {activation!r}; expected one of {act.ACTIVATIONS}")
        integer(max_chunks_per_doc, "max_chunks_per_doc", minimum=1)
        integer(max_batch_size, "max_batch_size", minimum=1)
        integer(chunk_overlap, "chunk_overlap")
        for name, value in (("max_length", max_length), ("max_query_length", max_query_length),
                            ("threads", threads), ("max_batch_tokens", max_batch_tokens)):
            if value is not None:
                integer(value, name, minimum=1)
        self.threads = threads or default_threads()
        source = resolve(model)
        self.source = source
        self.model_name = source.name
        if source.name in UNTRAINED_BUILTINS:
            _warn_untrained(source.name)
        wants_torch = (device or "cpu") != "cpu" or (precision or "fp32") != "fp32"  # only torch has these
        if backend == "auto":
            backend = "onnx" if (quantize or source.kind == "export") else "torch" if wants_torch else auto_backend()
        if backend == "onnx" and wants_torch:
            raise ModelLoadError(self.model_name, f"the ONNX backend runs on the CPU in fp32 or int8; "
                                 f"device={device!r} precision={precision!r} need backend='torch' and a Hugging "
                                 "Face checkpoint")
        if backend == "torch" and source.kind == "export":
            raise ModelLoadError(
                self.model_name, "the torch backend needs a Hugging Face checkpoint, not an ONNX export"
            )
        self.backend: Backend = self._load_backend(backend, source, quantize, device, precision)
        self.num_labels = source.num_labels
        self.labels = source.labels
        if source.kind == "export":
            declared, model_max = source.meta["activation"], int(source.meta["max_length"])
        else:
            from crossrank.engine.model import declared_activation

            declared = declared_activation(source.config, self.num_labels, source.name)
            model_max = default_max_length(source.path, source.config)
        from crossrank.engine.calibration import load as load_calibration

        # A calibration stored beside the model (``crossrank calibrate``) is what its scores mean.
        self.calibration = load_calibration(source.path) if self.num_labels == 1 else None
        self.declared_activation = "calibrated" if self.calibration is not None else declared
        self.activation = self._resolve_activation(activation)
        self.max_length = model_max if max_length is None else min(max_length, model_max)
        self.tokenizer = PairTokenizer(source.tokenizer_file, self.max_length, max_query_length, self.model_name)
        on_gpu = self.backend.device.startswith("cuda")
        self.max_batch_tokens = max_batch_tokens or (GPU_BATCH_TOKENS if on_gpu else CPU_BATCH_TOKENS)
        self.max_batch_size = max_batch_size
        self.max_chunks_per_doc = max_chunks_per_doc
        self.chunk_overlap = chunk_overlap

    def _load_backend(self, backend: str, source: ModelDir, quantize: str | None, device: str | None,
                      precision: str | None) -> Backend:
        if backend == "torch":
            from crossrank.engine.backends.torch import TorchBackend

            if quantize:
                raise ModelLoadError(self.model_name, "int8 quantization is an ONNX path; use backend='onnx'")
            return TorchBackend(source.path, threads=self.threads, device=device, precision=precision,
                                model_name=self.model_name)
        from crossrank.engine.backends.onnx import OnnxBackend
        from crossrank.engine.export import cached_export

        exported = cached_export(source, quantize=quantize)
        onnx_file = exported.onnx_file(quantize)
        if quantize is None and not onnx_file.exists():  # an int8-only export
            onnx_file, quantize = exported.onnx_file("int8"), "int8"
        self.source = exported if source.kind == "export" else source
        return OnnxBackend(onnx_file, threads=self.threads, precision=quantize or "fp32",
                           model_name=self.model_name)

    def _resolve_activation(self, name: str) -> str:
        """``auto`` -> what the model declares; unknown names and a missing calibration are input errors."""
        asked = name
        name = self.declared_activation if name == "auto" else name
        if name not in act.ACTIVATIONS:
            raise InputError(f"unknown activation {name!r}; expected one of {act.ACTIVATIONS}")
        if name == "softmax" and asked != "auto" and self.num_labels == 1:
            raise InputError(f"{self.model_name} has one label: its softmax is 1.0 for every pair; "
                             "use 'sigmoid' or 'raw'")
        if name == "calibrated" and self.calibration is None:
            raise InputError(f"{self.model_name} has no calibration.json: run `crossrank calibrate` first")
        return name

    @property
    def probability_activation(self) -> str:
        """How this model's scores become probabilities: its calibration if it has one, else the sigmoid."""
        return "calibrated" if self.calibration is not None else "sigmoid"

    def __repr__(self) -> str:
        return (f"CrossEncoder({self.model_name!r}, backend={self.backend.name!r}, "
                f"precision={self.backend.precision!r}, device={self.backend.device!r}, "
                f"max_length={self.max_length}, activation={self.activation!r})")

    def __reduce__(self) -> Any:
        # The ONNX Runtime session (or torch module) cannot travel: say how to do it instead of pickle's
        # "cannot pickle 'InferenceSession' object" from a process pool's submit().
        raise InputError("a CrossEncoder holds an inference session and cannot be pickled or sent to another "
                         "process: create it in each worker (e.g. a process pool's initializer=); it loads from "
                         "the export cache")

    # -- scoring -----------------------------------------------------------------------------

    def score(self, pairs: Sequence[Sequence[Any]], *, activation: str | None = None,
              max_chunks_per_doc: int | None = None, truncation_side: str = "right",
              progress: bool | Callable[[int, int], None] = False) -> np.ndarray:
        """One score per pair, in the caller's order.

        Returns float64 of shape ``(n,)`` for single-label models and ``(n, num_labels)`` otherwise
        (float64 so that a probability orders exactly as its logit does). An empty list gives an
        empty array. Identical pairs are scored once. A document longer than the window
        keeps its start, or its end with ``truncation_side="left"``. ``progress=True`` shows a bar on
        stderr for long lists; a callable is called with (pairs done, pairs) after each engine batch.
        """
        scores, _ = self.score_with_stats(pairs, activation=activation, max_chunks_per_doc=max_chunks_per_doc,
                                          truncation_side=truncation_side, progress=progress)
        return scores

    def predict(self, inputs: Any, batch_size: int = 32, show_progress_bar: bool | None = None,
                activation_fn: Any = None, apply_softmax: bool | None = False, convert_to_numpy: bool = True,
                convert_to_tensor: bool = False, prompt_name: str | None = None, prompt: str | None = None,
                device: Any = None, pool: Any = None, chunk_size: int | None = None) -> Any:
        """sentence-transformers' ``CrossEncoder.predict``, so code written against it runs unchanged.

        One pair gives one score (a scalar, as there), a list gives an array. ``show_progress_bar`` shows a
        bar as there; ``batch_size`` is accepted and has no effect (crossrank batches by tokens, not by
        count); ``apply_softmax`` on a multi-label model is ``activation="softmax"``; ``convert_to_tensor``
        gives a torch tensor. A custom ``activation_fn``, prompts and the multi-process options are refused
        with what to do instead (the names exist so a typo is still a TypeError).
        """
        integer(batch_size, "batch_size", minimum=1)
        _refuse_st_options("predict", prompt_name=prompt_name, prompt=prompt, device=device, pool=pool,
                           chunk_size=chunk_size)
        if activation_fn is not None:
            raise InputError("activation_fn: a callable is not applied here; use score(pairs, activation='raw', "
                             "'sigmoid', 'tanh' or 'softmax')")
        single = (isinstance(inputs, (tuple, list)) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs)
                  ) or (isinstance(inputs, np.ndarray) and inputs.ndim == 1)
        activation = "softmax" if apply_softmax and self.num_labels > 1 else None
        scores = self.score([list(inputs)] if single else inputs, activation=activation,
                            progress=bool(show_progress_bar))
        result: Any = scores[0] if single else scores
        if convert_to_tensor:
            try:
                import torch
            except ImportError as exc:
                raise MissingDependencyError("convert_to_tensor", "torch", "torch") from exc
            return torch.as_tensor(result)
        return result if convert_to_numpy or single else list(result)

    def score_with_stats(self, pairs: Sequence[Sequence[Any]], *, activation: str | None = None,
                         max_chunks_per_doc: int | None = None, truncation_side: str = "right",
                         stop: Callable[[], bool] | None = None, progress: bool | Callable[[int, int], None] = False
                         ) -> tuple[np.ndarray, ScoreStats]:
        """Scores and what they cost. ``stop`` is polled before each engine batch; when it returns True
        the call raises :class:`~crossrank.errors.ScoringStopped` (a server drops abandoned work so)."""
        queries, texts = self._split_pairs(pairs)
        with _reporter(progress) as report:
            return self._score(queries, texts, activation, max_chunks_per_doc, stop, truncation_side, report)

    def score_documents(self, query: Any, documents: Sequence[Any], *, on: Sequence[str] | None = None,
                        activation: str | None = None, max_chunks_per_doc: int | None = None,
                        progress: bool | Callable[[int, int], None] = False) -> tuple[np.ndarray, ScoreStats]:
        """Scores of one query against many documents (strings or dicts read through ``on``)."""
        q = query_text(query)
        texts = document_texts(documents, on)
        with _reporter(progress) as report:
            return self._score([q] * len(texts), texts, activation, max_chunks_per_doc, progress=report)

    def rank(self, query: Any, documents: Sequence[Any], top_k: int | None = None, *,
             on: Sequence[str] | None = None, label: int | str | None = None,
             max_chunks_per_doc: int | None = None, activation: str | None = None,
             progress: bool | Callable[[int, int], None] = False, return_documents: bool = True,
             batch_size: int | None = None, show_progress_bar: bool | None = None,
             prompt_name: str | None = None, prompt: str | None = None, activation_fn: Any = None,
             device: Any = None, pool: Any = None, chunk_size: int | None = None) -> list[RankedDocument]:
        """Documents best first as ``(index, score, document)``; at most ``top_k`` of them. ``progress``
        as for :meth:`score`.

        sentence-transformers' ``rank`` arguments work as there: ``return_documents=False`` leaves the
        document out (None), ``show_progress_bar`` is ``progress``, ``batch_size`` is accepted and has no
        effect (batches are by tokens); each result also reads as its dict (``r["corpus_id"]``). Its
        prompts, ``activation_fn`` and multi-process options are refused with what to do instead."""
        _refuse_st_options("rank", prompt_name=prompt_name, prompt=prompt, activation_fn=activation_fn,
                           device=device, pool=pool, chunk_size=chunk_size)
        if top_k is not None:
            top_k = integer(top_k, "top_k")
        if batch_size is not None:
            integer(batch_size, "batch_size", minimum=1)
        documents = as_items(documents)  # read once: a generator is returned from as well as scored
        scores, _ = self.score_documents(query, documents, on=on, activation=activation,
                                         max_chunks_per_doc=max_chunks_per_doc,
                                         progress=progress or bool(show_progress_bar))
        if scores.ndim == 2:
            scores = scores[:, self._label_index(label)]
        elif label is not None:
            self._label_index(label)  # one label: it may be named, never misnamed (it was silently ignored)
        k = len(scores) if top_k is None else min(top_k, len(scores))
        # Stable sort on the negated score: ties keep the caller's order.
        order = np.argsort(-scores, kind="stable")[:k]
        return [RankedDocument(int(i), float(scores[i]), documents[i] if return_documents else None) for i in order]

    def _label_index(self, label: int | str | None) -> int:
        if label is None:
            raise InputError(
                f"{self.model_name} has {self.num_labels} labels {self.labels}: pass label= to rank by one"
            )
        if isinstance(label, numbers.Integral) and not isinstance(label, bool) and 0 <= label < self.num_labels:
            return int(label)
        if isinstance(label, str) and label in self.labels:
            return self.labels.index(label)
        raise InputError(f"unknown label {label!r}; the model has {self.labels}")

    def _split_pairs(self, pairs: Any) -> tuple[list[str], list[str]]:
        from crossrank.engine.documents import clean_text

        pairs = as_items(pairs, "pairs")
        if len(pairs) == 2 and all(isinstance(x, str) for x in pairs):
            pairs = [pairs]  # a single pair
        queries, texts = [], []
        for i, pair in enumerate(pairs):
            if isinstance(pair, np.ndarray) and pair.ndim == 1:  # a row of a 2-D array of pairs
                pair = pair.tolist()
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise InputError(f"pair {i} must be a (query, document) pair, got {type(pair).__name__}")
            q = clean_text(pair[0], f"pair {i} query")
            if not q.strip():
                raise InputError(f"pair {i} has an empty query")
            queries.append(q)
            texts.append(clean_text(pair[1], f"pair {i} document"))
        return queries, texts

    def _score(self, queries: list[str], texts: list[str], activation: str | None,
               max_chunks_per_doc: int | None, stop: Callable[[], bool] | None = None,
               truncation_side: str = "right", progress: Callable[[int, int], None] | None = None
               ) -> tuple[np.ndarray, ScoreStats]:
        activation = self._resolve_activation(self.activation if activation is None else activation)
        chunks = self.max_chunks_per_doc if max_chunks_per_doc is None else max_chunks_per_doc
        integer(chunks, "max_chunks_per_doc", minimum=1)
        stats = ScoreStats(pairs=len(queries))
        shape = (0,) if self.num_labels == 1 else (0, self.num_labels)
        if not queries:
            return np.zeros(shape, dtype=np.float64), stats
        # Identical pairs are scored once.
        unique: dict[tuple[str, str], int] = {}
        slot = np.fromiter((unique.setdefault(p, len(unique)) for p in zip(queries, texts, strict=False)),
                           dtype=np.int64, count=len(queries))
        uq = [q for q, _ in unique]
        ud = [d for _, d in unique]
        stats.unique_pairs = len(unique)
        t0 = time.perf_counter()
        try:
            enc = self.tokenizer.encode(uq, ud, max_chunks=chunks, overlap=self.chunk_overlap,
                                        truncation_side=truncation_side)
        except CrossrankError:
            raise
        except BaseException as exc:  # the Rust tokenizer raises plain Exceptions, and panics (BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            raise BackendError(f"the tokenizer failed on this input: {type(exc).__name__}: {exc}") from exc
        stats.tokenize_s = time.perf_counter() - t0
        stats.rows, stats.tokens = enc.rows, int(enc.lengths.sum())
        stats.pair_tokens = np.bincount(enc.owner, weights=enc.lengths, minlength=len(unique)).astype(np.int64)[slot]
        row_logits = np.empty((enc.rows, self.num_labels), dtype=np.float32)
        t1 = time.perf_counter()
        done = 0
        for rows in plan(enc.lengths, self.max_batch_tokens, self.max_batch_size):
            if stop is not None and stop():
                raise ScoringStopped(f"stopped after {len(stats.batches)} batches: the caller no longer waits")
            batch = collate(enc, rows, self.tokenizer.pad_id)
            row_logits[rows] = self.backend.run(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            stats.batches.append(len(rows))
            stats.padded_tokens += batch.padded_tokens
            if progress is not None:  # in pairs; a document's windows count as their share of it
                done += len(rows)
                progress(len(queries) * done // enc.rows, len(queries))
        stats.inference_s = time.perf_counter() - t1
        if enc.rows == len(unique):
            pair_logits = row_logits
        else:  # a document's logits are the best of its windows', label by label
            pair_logits = np.full((len(unique), self.num_labels), -np.inf, dtype=np.float32)
            np.maximum.at(pair_logits, enc.owner, row_logits)
        # The activation comes after the max: the same as before it for the monotone ones (sigmoid,
        # calibrated), and a softmax over several labels still sums to 1. It runs in float64: in float32
        # a sigmoid is 1.0 for every logit past ~17 and an isotonic calibration's flat steps merge logits
        # up to ~0.01 apart, so ranking by the probability would no longer be ranking by the logit.
        pair_logits = pair_logits.astype(np.float64)
        if activation == "calibrated":
            pair_scores = self.calibration.apply(pair_logits)  # type: ignore[union-attr]
        else:
            pair_scores = act.apply(activation, pair_logits)
        out = pair_scores[slot]
        return (out[:, 0] if self.num_labels == 1 else out), stats

    @property
    def model_path(self) -> Path:
        return self.source.path
