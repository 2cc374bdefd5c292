"""``crossrank calibrate``: fit the score calibration of a model on judged collections and store it.

The examples are what the model will see in use: each judged query's hybrid top ``window``, labelled by
the qrels (unjudged = not relevant, the usual IR convention). Queries are split in two with a seed: the
map fitted on one half is scored on the other (expected calibration error before = the model's own
sigmoid, after = the map), so the reported gain is held out; the stored map is then refitted on all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.checks import integer
from crossrank.engine.activation import sigmoid
from crossrank.engine.calibration import expected_calibration_error, fit
from crossrank.errors import CrossrankError, InputError


def _examples(encoder: Any, paths: Sequence[Path], window: int, fields: Sequence[str]
              ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(query key, raw logits, labels) per judged query of every collection."""
    from crossrank.eval import load_collection
    from crossrank.eval.runner import index_for
    from crossrank.retrieval import build_pipeline
    from crossrank.retrieval.corpus import join_fields

    out = []
    for path in paths:
        collection = load_collection(path)
        pipeline = build_pipeline(index_for(collection, list(fields)))
        for qid, text in collection.queries.items():
            hits = pipeline(text, top_k=window, window=0).hits
            if not hits:
                continue
            logits = encoder.score([(text, join_fields(h.document, fields)) for h in hits], activation="raw")
            labels = np.array([collection.qrels[qid].get(h.id, 0) > 0 for h in hits], dtype=np.float64)
            out.append((f"{collection.name}/{qid}", np.asarray(logits, dtype=np.float64), labels))
    return out


def calibrate(model_dir: Path, collections: Sequence[Path], *, method: str = "platt", window: int = 20,
              seed: int = 0, fields: Sequence[str] = ("title", "text")) -> dict[str, Any]:
    """Fit, evaluate on held-out queries, refit on all, write ``calibration.json``; return the report."""
    from crossrank.engine import CrossEncoder

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"{model_dir} is not a local model directory: calibration is stored beside the weights")
    integer(window, "window", minimum=1)
    resolved = [Path(c).resolve() for c in collections]
    if len(set(resolved)) != len(resolved):  # its queries could land in both halves: a leaked held-out error
        raise InputError("a collection is named twice: each is read once")
    encoder = CrossEncoder(str(model_dir))  # scored with activation="raw": an old calibration plays no part
    examples = _examples(encoder, collections, window, fields)
    if len(examples) < 4:
        raise InputError("calibration needs at least four judged queries")
    # Halves stratified by whether a query has a relevant candidate, so each half can be fitted and scored.
    rng = random.Random(seed)
    with_relevant = [i for i, (_, _, y) in enumerate(examples) if y.any()]
    without = [i for i, (_, _, y) in enumerate(examples) if not y.any()]
    if len(with_relevant) < 2:
        raise InputError("calibration needs at least two queries with a relevant candidate in the window")
    half: set[int] = set()
    for part in (with_relevant, without):
        rng.shuffle(part)
        half |= set(part[: (len(part) + 1) // 2])
    fit_z = np.concatenate([z for i, (_, z, _) in enumerate(examples) if i in half])
    fit_y = np.concatenate([y for i, (_, _, y) in enumerate(examples) if i in half])
    test_z = np.concatenate([z for i, (_, z, _) in enumerate(examples) if i not in half])
    test_y = np.concatenate([y for i, (_, _, y) in enumerate(examples) if i not in half])
    held_out = fit(fit_z, fit_y, method)
    before = expected_calibration_error(sigmoid(test_z), test_y)
    after = expected_calibration_error(held_out.apply(test_z), test_y)
    all_z = np.concatenate([z for _, z, _ in examples])
    all_y = np.concatenate([y for _, _, y in examples])
    final = fit(all_z, all_y, method)
    final.info = {"collections": [Path(p).name for p in collections], "window": window, "pairs": int(len(all_z)),
                  "queries": len(examples), "relevant_rate": round(float(all_y.mean()), 4),
                  "held_out_ece_sigmoid": round(before, 4), "held_out_ece_calibrated": round(after, 4),
                  "seed": seed}
    path = final.save(model_dir)
    report = {"file": str(path), "method": method, **final.info}
    export = _own_export(model_dir)
    if export is not None:  # `crossrank train` left an export of these very weights: it scores alike
        report["also"] = str(final.save(export))
    return report


def _own_export(model_dir: Path) -> Path | None:
    """``model_dir/onnx`` when it is the ONNX export of exactly this checkpoint (same content hash)."""
    from crossrank.engine.model import content_hash, export_source_hash, inspect_dir

    made_from = export_source_hash(model_dir / "onnx")
    if made_from is None or not (model_dir / "config.json").is_file():
        return None
    try:
        source = inspect_dir(model_dir.name, model_dir)
        same = source.kind == "hf" and made_from == content_hash(source)
    except (OSError, CrossrankError):
        return None
    return model_dir / "onnx" if same else None
