"""The search index on disk: the corpus, a BM25 index and a dense vector index, with a manifest.

A directory, so each part stays in its own library's format (bm25s's files, a ``.npy`` matrix,
a usearch graph) and ``manifest.json`` says how they were built: which fields were indexed, the
tokenizer settings, the bi-encoder. Loading checks the manifest so an index built with one
bi-encoder is never queried with another.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.checks import refuse_foreign
from crossrank.engine.documents import field_names
from crossrank.errors import CrossrankError, InputError
from crossrank.jsonl import as_text, dumps, read_objects
from crossrank.retrieval.bm25 import BM25Config, BM25Index
from crossrank.retrieval.corpus import Corpus
from crossrank.retrieval.dense import DEFAULT_BI_ENCODER, BiEncoder, DenseWindows, VectorIndex, check_windows

INDEX_FORMAT = 1
MANIFEST = "manifest.json"
#: what a saved index holds besides its manifest; saving replaces exactly these
INDEX_ENTRIES = ("corpus.jsonl", "bm25", "dense")


def index_destination(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory an index may be saved to, or the ``InputError`` saving would end with:
    checked before a build (minutes of embedding) as well as at the save."""
    out = Path(path).expanduser().resolve()  # "." has no name to put a temporary sibling beside
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; an index is a directory")
    # An index, or what a save cut off before its manifest left (it marks the directory first)
    refuse_foreign(out, ours=_is_index(out) or (out / SAVING).exists(), kind="a crossrank index")
    # the save writes its copy beside the index (in the parent, or what of it exists yet), then moves it in
    for place in ([out] if out.exists() else []) + [_existing_parent(out.parent)]:
        if not os.access(place, os.W_OK):
            raise InputError(f"cannot write the index to {out}: {place} is not writable")
    return out


SAVING = ".crossrank-saving"  # in an index directory while a save replaces its entries


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


TMP_SUFFIX = ".tmp"  # a save writes into "<name>.tmp<pid>" beside the index


def _remove_abandoned_saves(out: Path) -> None:
    """Delete the scratch directories of saves whose process is gone (a killed save left its copy of the
    index behind for good)."""
    for scratch in out.parent.glob(f"{out.name}{TMP_SUFFIX}*"):
        pid = scratch.name[len(out.name) + len(TMP_SUFFIX):]
        if pid.isdigit() and scratch.is_dir() and not _alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would send a Ctrl-C, not probe
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _is_index(directory: Path) -> bool:
    """Whether ``directory`` holds a crossrank index (a manifest.json of another kind does not count)."""
    try:
        return json.loads((directory / MANIFEST).read_text()).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False
#: progress(stage, done, total): stage is "bm25" or "embed"
IndexProgress = Callable[[str, int, int], None]


class Index:
    """A corpus with the first-stage indexes built over its ``fields``.

    Build with :meth:`build`, persist with :meth:`save`, reopen with :meth:`load`. ``bm25`` and
    ``vectors`` are ``None`` when that retriever was not built.
    """

    def __init__(self, corpus: Corpus, fields: Sequence[str], *, bm25: BM25Index | None = None,
                 vectors: VectorIndex | None = None, dense_model: str | None = None) -> None:
        self.corpus = corpus
        self.fields = list(fields)
        self.bm25 = bm25
        self.vectors = vectors
        self.dense_model = dense_model
        self._encoder: BiEncoder | None = None
        self._encoder_lock = threading.Lock()
        self.build_s: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.corpus)

    def __repr__(self) -> str:
        parts = [f"{len(self)} docs", f"fields={self.fields}"]
        parts += ["bm25"] if self.bm25 else []
        parts += [f"dense={self.dense_model} ({'ann' if self.vectors.ann else 'exact'})"] if self.vectors else []
        return f"Index({', '.join(parts)})"

    @property
    def encoder(self) -> BiEncoder:
        """The bi-encoder the vectors were made with (loaded on first use)."""
        if self.vectors is None:
            raise InputError("this index has no dense vectors; build it with dense=True")
        with self._encoder_lock:  # searches in several threads load one bi-encoder, not one each
            if self._encoder is None:
                self._encoder = BiEncoder(None if self.dense_model == DEFAULT_BI_ENCODER else self.dense_model)
        return self._encoder

    @classmethod
    def build(cls, corpus: Corpus, fields: Sequence[str] = ("title", "text"), *,
              bm25: bool | BM25Config = True, dense: bool | str = True, ann: bool | None = None,
              encoder: BiEncoder | None = None, progress: IndexProgress | None = None,
              dense_windows: DenseWindows = "auto") -> Index:
        """Index ``corpus`` over ``fields``: BM25 (a :class:`BM25Config` sets tokenization) and/or dense.

        ``dense`` is ``True`` for the default bi-encoder or a sentence-transformers model name;
        ``ann`` forces the usearch graph on or off (default: on above 20,000 vectors).
        ``dense_windows`` sets how documents longer than the bi-encoder reads are embedded: ``"auto"``
        (default) as up to 8 overlapping windows, a document's similarity being its best window's, when
        most of the corpus is that long, else cut; ``N`` windows always; ``1`` always cut (see
        :meth:`BiEncoder.embed_documents`; docs/quality.md, design 4).
        """
        if not bm25 and not dense:
            raise InputError("an index needs at least one of bm25 and dense")
        dense_windows = check_windows(dense_windows)
        fields = field_names(fields, "fields")
        texts = corpus.texts(fields)
        index = cls(corpus, fields)
        if bm25:
            t0 = time.perf_counter()
            config = bm25 if isinstance(bm25, BM25Config) else BM25Config()
            index.bm25 = BM25Index(config).build(texts)
            index.build_s["bm25"] = time.perf_counter() - t0
            if progress:
                progress("bm25", len(texts), len(texts))
        if dense:
            t0 = time.perf_counter()
            model = None if dense is True else str(dense)
            index._encoder = encoder or BiEncoder(model)
            name = index._encoder.model_name
            # A local directory is stored absolute: a search run from another directory must load the same
            # model, not fail (or find another directory of that name).
            index.dense_model = str(Path(name).expanduser().resolve()) if Path(name).expanduser().is_dir() else name
            report = (lambda done, total: progress("embed", done, total)) if progress else None
            vectors, owner = index._encoder.embed_documents(texts, windows=dense_windows, progress=report)
            index.build_s["embed"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            index.vectors = VectorIndex(vectors, ann=ann, owner=owner)
            index.build_s["vector_index"] = time.perf_counter() - t1
        return index

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to a directory (replacing an index already there, never other files)."""
        out = index_destination(path)
        try:
            return self._save(out)
        except OSError as exc:  # no permission, disk full, a parent that is a file
            raise InputError(f"cannot write the index to {out}: {exc.strerror or exc}") from exc

    def _save(self, out: Path) -> Path:
        _remove_abandoned_saves(out)
        tmp = out.with_name(out.name + f"{TMP_SUFFIX}{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with (tmp / "corpus.jsonl").open("w", encoding="utf-8") as fh:
            for doc in self.corpus.documents:
                fh.write(dumps(doc, default=as_text) + "\n")
        if self.bm25:
            self.bm25.save(tmp / "bm25")
        if self.vectors is not None:
            self.vectors.save(tmp / "dense")
        manifest = {
            "format": INDEX_FORMAT,
            "documents": len(self.corpus),
            "id_field": self.corpus.id_field,
            "fields": self.fields,
            "source": self.corpus.source,
            "bm25": asdict(self.bm25.config) if self.bm25 else None,
            "dense": None if self.vectors is None else {
                "model": self.dense_model, "dim": int(self.vectors.vectors.shape[1]), "ann": self.vectors.ann,
                "windows": self.vectors.windows},
            "build_s": {k: round(v, 3) for k, v in self.build_s.items()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        # Replace the index's own entries only (a directory is never removed whole: it may be the
        # working directory, or hold the user's other files); the manifest goes last, as the mark of
        # a complete index.
        out.mkdir(parents=True, exist_ok=True)
        (out / SAVING).touch()  # before anything is removed: a save cut off from here on may be redone
        (out / MANIFEST).unlink(missing_ok=True)
        for name in INDEX_ENTRIES:
            old = out / name
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        for name in INDEX_ENTRIES:
            if (tmp / name).exists():
                os.replace(tmp / name, out / name)
        os.replace(tmp / MANIFEST, out / MANIFEST)
        (out / SAVING).unlink()
        tmp.rmdir()
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Index:
        root = Path(path)
        manifest_file = root / MANIFEST
        if not manifest_file.exists():
            raise InputError(f"{root} is not a crossrank index (no {MANIFEST}); build one with `crossrank index`")
        try:
            manifest: dict[str, Any] = json.loads(manifest_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{manifest_file} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise InputError(f"{manifest_file} is not a crossrank index manifest (a JSON object)")
        if manifest.get("format") != INDEX_FORMAT:
            raise InputError(f"{root} has index format {manifest.get('format')!r}; this crossrank reads {INDEX_FORMAT}")
        if not (root / "corpus.jsonl").is_file():
            raise InputError(f"{root} lacks corpus.jsonl; rebuild the index")
        records = read_objects(root / "corpus.jsonl")  # names the file and line of a damaged record
        if len(records) != manifest.get("documents", len(records)):
            raise InputError(f"{root / 'corpus.jsonl'} holds {len(records)} documents, the manifest says "
                             f"{manifest.get('documents')}: it is damaged; rebuild the index")
        try:
            id_field, fields, dense = manifest["id_field"], manifest["fields"], manifest.get("dense")
            # Errors in the records name the file they are in; the corpus then keeps the source it was
            # indexed from (what a saved copy of this index records).
            corpus = Corpus.from_records(records, id_field=id_field, source=str(root / "corpus.jsonl"))
            corpus.source = str(manifest.get("source", corpus.source))
            bm25 = BM25Index.load(root / "bm25") if manifest.get("bm25") else None
            vectors = VectorIndex.load(root / "dense", ann=bool(dense["ann"])) if dense else None
            dim = int(dense["dim"]) if dense else None
        except CrossrankError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OSError, EOFError) as exc:
            # a hand-edited manifest, a truncated .npy or BM25 file: what is damaged, not a raw traceback
            raise InputError(f"{root} is damaged ({type(exc).__name__}: {exc}); rebuild it with `crossrank index`") \
                from exc
        if vectors is not None and vectors.vectors.shape[1] != dim:
            raise InputError(f"{root}: vectors of {vectors.vectors.shape[1]} dimensions, the manifest says {dim}; "
                             "rebuild the index")
        for what, count in (("vectors", len(vectors) if vectors is not None else None),
                            ("BM25 documents", bm25.num_docs if bm25 is not None else None)):
            if count is not None and count != len(corpus):
                raise InputError(f"{root}: {count} {what} for {len(corpus)} documents; rebuild the index")
        return cls(corpus, fields, bm25=bm25, vectors=vectors, dense_model=dense["model"] if dense else None)

    def embed_query(self, query: str) -> np.ndarray:
        vector = self.encoder.embed([query])[0]
        if self.vectors is not None and len(vector) != self.vectors.vectors.shape[1]:
            raise InputError(f"the bi-encoder {self.dense_model!r} gives {len(vector)} dimensions, the index's vectors "
                             f"have {self.vectors.vectors.shape[1]}: it was built with another model; rebuild it")
        return vector
