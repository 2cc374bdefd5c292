"""Latency of one query against 1, 10 and 100 documents: sentence-transformers vs crossrank backends.

Texts are real: titles (~12 words) and passages (~70 words) cut from the Cranfield collection when
``../shared/data`` is present, otherwise from a built-in paragraph. Every engine scores the same
pairs from the same checkpoint in the same run; ratios are to sentence-transformers' p50.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

FALLBACK = (
    "an experimental study of a wing in a propeller slipstream was made in order to determine the spanwise "
    "distribution of the lift increase due to slipstream at different angles of attack of the wing and at "
    "different free stream to slipstream velocity ratios the results were intended in part as an evaluation "
    "basis for different theoretical treatments of this problem the comparative span loading curves together "
    "with supporting evidence showed that a substantial part of the lift increment produced by the slipstream "
    "was due to a destalling or boundary layer control effect"
).split()
QUERY = "heat transfer in composite slabs"  # a typical short search query


def corpus_words(data_dir: Path | None) -> list[list[str]]:
    path = (data_dir or Path(__file__).resolve().parents[3].parent / "shared" / "data") / "cranfield" / "corpus.jsonl"
    if path.exists():
        with path.open() as fh:
            return [json.loads(line)["text"].split() for line in fh][:400]
    return [FALLBACK[i:] + FALLBACK[:i] for i in range(len(FALLBACK))]


def texts(kind: str, n: int, docs: list[list[str]]) -> list[str]:
    words = 12 if kind == "titles" else 70
    out = []
    for i in range(n):
        d = docs[i % len(docs)]
        d = (d * (words // max(1, len(d)) + 1))[:words]
        out.append(" ".join(d))
    return out


def timeit(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return p50_p90(times)


def p50_p90(times: list[float]) -> tuple[float, float]:
    """Median and nearest-rank 90th percentile (the 9th of 10 runs, not the slowest)."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[math.ceil(0.9 * len(ordered)) - 1]


def gemm_peak_gflops(threads: int) -> float:
    """Measured fp32 GEMM rate of this machine (numpy/BLAS), the ceiling for the fp32 paths."""
    a = np.random.default_rng(0).standard_normal((1536, 1536), dtype=np.float32)
    b = a.T.copy()
    a @ b
    t = time.perf_counter()
    for _ in range(8):
        a @ b
    return 8 * 2 * 1536**3 / (time.perf_counter() - t) / 1e9


def encoder_flops(config: dict, lengths: np.ndarray) -> float:
    """Matmul FLOPs of a BERT-style encoder over rows of the given token lengths (embeddings excluded).

    The full model's count, the same for every engine so GFLOP/s compare like for like. crossrank's
    export computes the last layer for the first token only, so the work it executes is less (about
    14% on a 6-layer model) and its figure is an equivalent rate, not the rate of its kernels.
    """
    h = config["hidden_size"]
    inter = config["intermediate_size"]
    layers = config["num_hidden_layers"]
    dense = 2 * int(lengths.sum()) * (4 * h * h + 2 * h * inter) * layers
    attention = 2 * 2 * int((lengths.astype(np.int64) ** 2).sum()) * h * layers
    return float(dense + attention)


def run(model: str | None = None, sizes: tuple[int, ...] = (1, 10, 100),
        kinds: tuple[str, ...] = ("titles", "passages"),
        repeats: int = 10, include_peer: bool = True, data_dir: Path | None = None,
        echo: Callable[[str], None] = print) -> list[dict]:
    from crossrank import CrossEncoder
    from crossrank.checks import integer
    from crossrank.engine.encoder import default_threads
    from crossrank.engine.model import resolve
    from crossrank.errors import InputError

    integer(repeats, "repeats", minimum=1)
    source = resolve(model)
    if include_peer and source.kind == "export":
        raise InputError(f"{source.name} is a crossrank ONNX export, which sentence-transformers cannot load: "
                         "benchmark the Hugging Face checkpoint it came from, or pass --no-peer")
    path = str(source.path)
    threads = default_threads()
    engines: dict[str, Callable[[list[tuple[str, str]]], object]] = {}
    if include_peer:
        import torch
        from sentence_transformers import CrossEncoder as STCrossEncoder

        torch.set_num_threads(threads)
        st = STCrossEncoder(path, device="cpu", max_length=512)
        engines["sentence-transformers (torch)"] = lambda pairs: st.predict(pairs, batch_size=32)
    ours = {
        "crossrank onnx fp32": CrossEncoder(path, backend="onnx"),
        "crossrank onnx int8": CrossEncoder(path, backend="onnx", quantize="int8"),
    }
    for name, ce in ours.items():
        engines[name] = ce.score
    docs = corpus_words(data_dir)
    peak = gemm_peak_gflops(threads)
    echo(f"machine: {platform.processor() or platform.machine()}, {threads} threads; "
         f"measured fp32 GEMM peak {peak:.0f} GFLOP/s")
    rows = []
    ref = ours["crossrank onnx fp32"]
    for kind in kinds:
        for n in sizes:
            pairs = [(QUERY, t) for t in texts(kind, n, docs)]
            enc = ref.tokenizer.encode([q for q, _ in pairs], [d for _, d in pairs])
            flops = encoder_flops(source.config, enc.lengths)
            base = None
            for name, fn in engines.items():
                p50, p90 = timeit(partial(fn, pairs), repeats)
                base = base or p50
                row = {"texts": kind, "docs": n, "engine": name, "p50_ms": round(p50, 2), "p90_ms": round(p90, 2),
                       "ratio_to_first": round(p50 / base, 3), "gflops": round(flops / p50 / 1e6, 1),
                       "tokens": int(enc.lengths.sum())}
                rows.append(row)
                echo(f"{kind:9} {n:4d} docs  {name:30} p50 {p50:8.1f} ms  p90 {p90:8.1f} ms  "
                     f"x{p50 / base:5.2f}  {row['gflops']:6.1f} GFLOP/s (peak fp32 {peak:.0f})")
    return rows


if __name__ == "__main__":
    run()
