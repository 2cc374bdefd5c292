"""Export a Hugging Face checkpoint to crossrank's ONNX format, optimized, optionally int8.

An export directory holds ``model.onnx`` (fp32, transformer ops fused by ONNX Runtime's
optimizer), ``model_int8.onnx`` when asked (dynamic int8 quantization of the fused graph),
a clean ``tokenizer.json``, the checkpoint's ``config.json`` and ``crossrank.json`` (labels,
activation, max length, provenance). The export cache keys directories by the checkpoint's
content, so a changed checkpoint is exported again and an unchanged one never is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crossrank.checks import output_dir, refuse_foreign
from crossrank.engine.first_token import first_token_last_layer
from crossrank.engine.model import (
    EXPORT_META,
    ModelDir,
    cache_root,
    content_hash,
    default_max_length,
    export_source_hash,
    hash_files,
    inspect_dir,
    num_labels_of,
    write_clean_tokenizer,
    write_meta,
)
from crossrank.errors import MissingDependencyError, ModelLoadError

log = logging.getLogger(__name__)

#: model types whose attention ONNX Runtime's BERT fusion recognizes
FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
           "electra": "bert", "distilbert": "bert"}
OPSET = 17


#: One export at a time in a process. torch's ONNX exporter keeps global state (two threads loading a
#: model on an empty cache failed with "GLOBALS.in_onnx_export must be True"), and two threads importing
#: transformers for the first time at once fail in one of them. Reentrant: the cache exports through
#: ``export``; the bi-encoder's export takes it too.
EXPORT_LOCK = threading.RLock()


def export(model: ModelDir, out: Path, *, quantize: str | None = None, optimize: bool = True) -> ModelDir:
    """Write an export of ``model`` (a Hugging Face checkpoint) to ``out`` and return it."""
    with EXPORT_LOCK:
        return _export(model, out, quantize=quantize, optimize=optimize)


def _export(model: ModelDir, out: Path, *, quantize: str | None, optimize: bool) -> ModelDir:
    if model.kind == "export":
        out = output_dir(out, "export directory")
        if out.resolve() != model.path.resolve():
            _clear_export(out)
            shutil.copytree(model.path, out, dirs_exist_ok=True)
        if quantize == "int8" and not (out / "model_int8.onnx").exists():
            quantize_int8(out / "model.onnx", out / "model_int8.onnx", model.name)
        return inspect_dir(model.name, out)
    out = output_dir(out, "export directory")
    _remove_stale_exports(out.parent)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=TMP_PREFIX) as tmp_name:
        tmp = Path(tmp_name)
        _torch_export(model, tmp / "model.onnx")
        optimized = False
        if optimize:
            optimized = _optimize(model, tmp / "model.onnx")
        if quantize == "int8":
            quantize_int8(tmp / "model.onnx", tmp / "model_int8.onnx", model.name)
        write_clean_tokenizer(model.tokenizer_file, tmp / "tokenizer.json")
        for f in ("config.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (model.path / f).exists():
                shutil.copyfile(model.path / f, tmp / f)
        write_meta(tmp, source=model.name, source_hash=content_hash(model), config=model.config,
                   num_labels=num_labels_of(model.config),
                   max_length=default_max_length(model.path, model.config),
                   quantized=quantize, optimized=optimized)
        _clear_export(out, same_source=export_source_hash(out) == export_source_hash(tmp))
        # crossrank.json last: it is what marks a directory an export (and a cached one complete), so a
        # process cut off while moving files in leaves a directory that is not mistaken for one
        for made in sorted(tmp.iterdir(), key=lambda p: p.name == "crossrank.json"):
            os.replace(made, out / made.name)
    return inspect_dir(model.name, out)


def export_destination(path: Path) -> Path:
    """``path`` as a directory a user's export may be written to: new, empty or an earlier export. An
    export replaces config.json, tokenizer.json and the rest of its files by name: in a directory of
    other things (a project, the checkpoint itself) that would overwrite the user's files."""
    out = output_dir(path, "export directory")
    refuse_foreign(out, ours=(out / EXPORT_META).exists(), kind="a crossrank export")
    return out


#: what an export directory holds; a new export into the directory replaces all of it, so no graph,
#: tokenizer or calibration of an earlier model survives beside the new one
EXPORT_FILES = ("crossrank.json", "model.onnx", "model.onnx.data", "model_int8.onnx", "tokenizer.json",
                "config.json", "tokenizer_config.json", "special_tokens_map.json", "calibration.json")


TMP_PREFIX = ".crossrank-export-"  # ours alone: only these are ever removed as stale
STALE_AFTER_S = 6 * 3600  # far longer than any export takes: what is older was left by a process that died


def _remove_stale_exports(parent: Path) -> None:
    """Delete export scratch directories a killed process left beside ``parent``'s exports (a signal during
    a first start's export left a model-sized one behind for good; their names are random, so nothing
    else would ever remove them)."""
    cutoff = time.time() - STALE_AFTER_S
    for old in parent.glob(f"{TMP_PREFIX}*"):
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue


def _clear_export(out: Path, *, same_source: bool = False) -> None:
    """Remove an earlier export from ``out``; its calibration stays if the new export is of the same
    checkpoint (same scores, so the fitted map still holds)."""
    for name in EXPORT_FILES:
        if not (same_source and name == "calibration.json"):
            (out / name).unlink(missing_ok=True)



def cached_export(model: ModelDir, *, quantize: str | None) -> ModelDir:
    """The export of a checkpoint from the on-disk cache, made on first use (once, whatever the number
    of threads asking at the same time: the second finds the first's export)."""
    with EXPORT_LOCK:
        return _cached_export(model, quantize=quantize)


def _cached_export(model: ModelDir, *, quantize: str | None) -> ModelDir:
    if model.kind == "export":
        if quantize == "int8" and not model.onnx_file("int8").exists():
            # An export without its int8 graph: quantize into the cache, keep the user's dir untouched.
            # Keyed by the graph's bytes, not its location: a directory exported again, or a hub
            # repository's new revision, must not be served the int8 graph of what was there before.
            key = hash_files(hashlib.sha256(), model.path, ["model.onnx", "crossrank.json"]).hexdigest()[:16]
            out = cache_root() / "onnx" / f"{model.path.name}-int8-{key}"
            if not (out / "model_int8.onnx").exists():
                export(model, out, quantize="int8")
            return inspect_dir(model.name, out)
        return model
    out = cache_root() / "onnx" / content_hash(model)
    have = (out / "crossrank.json").exists() and (out / "model.onnx").exists()
    if have and (quantize != "int8" or (out / "model_int8.onnx").exists()):
        return inspect_dir(model.name, out)
    if have:  # exported before, without its int8 graph: only that is made
        log.info("quantizing %s's ONNX export to int8 in %s (once)", model.name, out)
        quantize_int8(out / "model.onnx", out / "model_int8.onnx", model.name)
        return inspect_dir(model.name, out)
    log.info("exporting %s to ONNX in %s (once; cached by content)", model.name, out)
    return export(model, out, quantize=quantize)


@contextlib.contextmanager
def transformers_quietly() -> Iterator[None]:
    """transformers' "Loading weights" bar off while a checkpoint loads for an export: the load takes a
    second, and a bar for it in the middle of a command's own output (or a server's log) is noise."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_classifier(path: Path, name: str, **options: Any) -> Any:
    """The checkpoint as transformers' sequence classifier, refused when weights of it are missing.

    transformers fills missing weights with random ones and only warns: a bi-encoder or base model
    passed as a cross-encoder would score every call (or, on the torch backend, every load) at random.
    """
    with EXPORT_LOCK:  # a first import of transformers in two threads at once fails in one of them
        from transformers import AutoModelForSequenceClassification

        try:
            with transformers_quietly():
                hf, info = AutoModelForSequenceClassification.from_pretrained(str(path), output_loading_info=True,
                                                                              **options)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types
            raise ModelLoadError(name, f"transformers could not load it: {exc}") from exc
    missing = [k for k in info.get("missing_keys", ()) if k.endswith(("weight", "bias"))]
    if missing:
        raise ModelLoadError(name, f"its checkpoint has no weights for {', '.join(sorted(missing)[:4])}"
                                   f"{' and more' if len(missing) > 4 else ''}: they would be drawn at random. Is it "
                                   "a bi-encoder or a base model rather than a trained cross-encoder?")
    return hf.eval()


def uses_token_type_ids(hf: Any) -> bool:
    """Whether the checkpoint reads segment ids (BERT-likes do; DistilBERT and single-type models don't)."""
    return getattr(hf.config, "type_vocab_size", 1) > 1 and hf.config.model_type != "distilbert"


def onnx_module(hf: Any, output: str) -> Any:
    """``hf`` as a module of (input_ids, attention_mask[, token_type_ids]) returning one output tensor
    (``logits`` for a cross-encoder, ``last_hidden_state`` for a bi-encoder), the shape ONNX export needs."""
    import torch

    class OneOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = hf

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # type: ignore[no-untyped-def]
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return getattr(self.inner(**kwargs), output)

    return OneOutput()


def _torch_export(model: ModelDir, path: Path) -> None:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"exporting the Hugging Face checkpoint {model.name!r} to ONNX", "torch", "torch"
        ) from exc
    from tokenizers import Tokenizer

    hf = load_classifier(model.path, model.name, dtype=torch.float32, attn_implementation="eager")
    uses_tt = uses_token_type_ids(hf)

    tok = Tokenizer.from_file(str(model.tokenizer_file))
    tok.no_padding()
    tok.no_truncation()
    enc = tok.encode("a query", "a document to score")
    ids = torch.tensor([enc.ids, enc.ids], dtype=torch.long)
    mask = torch.ones_like(ids)
    args: tuple = (ids, mask)
    names = ["input_ids", "attention_mask"]
    if uses_tt:
        args = (ids, mask, torch.tensor([enc.type_ids] * 2, dtype=torch.long))
        names.append("token_type_ids")
    first_token_last_layer(hf, model.tokenizer_file, token_type_ids=uses_tt, name=model.name)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shapes that are dynamic axes here
            torch.onnx.export(onnx_module(hf, "logits"), args, str(path), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
                              dynamo=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(model.name, f"ONNX export failed: {exc}") from exc


def _optimize(model: ModelDir, path: Path) -> bool:
    """Fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer.

    The fused graph computes the same function (parity is tested); if the optimizer does not
    know the architecture we keep the plain graph and say so in the export's metadata.
    """
    model_type = FUSABLE.get(str(model.config.get("model_type")))
    if model_type is None:
        log.info("no transformer fusion for model_type=%s; keeping the plain graph", model.config.get("model_type"))
        return False
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(str(path), model_type=model_type,
                             num_heads=int(model.config.get("num_attention_heads", 0)),
                             hidden_size=int(model.config.get("hidden_size", 0)), opt_level=1)
        opt.save_model_to_file(str(path))
        return True
    except Exception as exc:  # noqa: BLE001 - optimization is an improvement, never a requirement
        log.warning("ONNX Runtime optimizer failed (%s); keeping the plain graph", exc)
        return False


def _selection_matmuls(graph_model: Any) -> list[str]:
    """MatMuls by a constant 0/1 matrix: the first-token layer's per-head sums and broadcasts.

    They are bookkeeping, not weights: int8 saves nothing there, and quantizing their inputs (attention
    scores, softmax probabilities) to 8 bits per tensor costs the ranking (measured: Spearman against
    fp32 0.96 → 0.82 on a trained MiniLM), so they stay fp32.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in graph_model.graph.initializer}
    chosen = []
    for node in graph_model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            values = numpy_helper.to_array(inits[node.input[1]])
            if values.size and bool(((values == 0) | (values == 1)).all()):
                chosen.append(node.name)
    return chosen


def quantize_int8(src: Path, dst: Path, name: str) -> None:
    """Dynamic int8 quantization of the MatMul weights (activations quantized per batch at run time)."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - ships with onnxruntime
        raise MissingDependencyError("int8 quantization", "torch", "onnxruntime") from exc
    # Written beside dst and renamed into place: only its existence is checked later, so a run cut
    # off mid-write must not leave a half graph that every later load trusts.
    partial = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    try:
        with _without_preprocess_advice():
            quantize_dynamic(str(src), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Attention", "Gemm"],
                             nodes_to_exclude=_selection_matmuls(onnx.load(str(src))),
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(partial, dst)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(name, f"int8 quantization failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _keeps_record(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Please consider to run pre-processing before quantization")


@contextlib.contextmanager
def _without_preprocess_advice() -> Iterator[None]:
    """ONNX Runtime's quantizer advises "pre-processing" (shape inference and graph optimization) through
    the root logger; the graph it gets here is already ORT-optimized, and the int8 graph's speed and
    agreement were measured as it is. Its module-level ``logging.warning`` would also configure the root
    logger for the rest of the process ("WARNING:root:" lines, and every later record of any library
    printed): while it runs, the root has a handler of the same kind as Python's last resort, and the
    advice is dropped."""
    with _ROOT_LOGGER_LOCK:  # one quantization at a time: two interleaved would leave the stand-in for good
        root = logging.getLogger()
        stand_in = None
        if not root.handlers:
            stand_in = logging.StreamHandler()
            stand_in.setLevel(logging.WARNING)
            root.addHandler(stand_in)
        root.addFilter(_keeps_record)
        try:
            yield
        finally:
            root.removeFilter(_keeps_record)
            if stand_in is not None:
                root.removeHandler(stand_in)


_ROOT_LOGGER_LOCK = threading.Lock()
