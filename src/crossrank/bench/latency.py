"""Latency of one query against 1, 10 and 100 documents: sentence-transformers vs crossrank backends.

Texts are real: titles (~12 words) and passages (~70 words) cut from the Cranfield collection when
``../shared/data`` holds it (or from any JSONL corpus given), otherwise from a built-in paragraph; the
header says which.
Every engine scores the same pairs, cut at the same ``max_length``, from the same checkpoint in the same
run; ratios are to the first engine's p50 (sentence-transformers unless ``include_peer=False``).
"""

from __future__ import annotations

import contextlib
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


#: Cranfield's abstracts beside a source checkout (an installed package finds none there)
CRANFIELD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cranfield" / "corpus.jsonl"


def corpus_words(corpus: Path | None = None) -> tuple[list[list[str]], str]:
    """Word lists to cut the texts from (the first 400 documents' ``text``), and where they came from."""
    from crossrank.errors import InputError

    path = corpus or CRANFIELD
    if path.exists():
        try:
            with path.open(encoding="utf-8") as fh:
                docs = [json.loads(line)["text"].split() for line in fh if line.strip()][:400]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a JSONL corpus with a \"text\" field ({exc})") from None
        return docs, str(path)
    if corpus is not None:
        raise InputError(f"{corpus}: no such file")
    # Every rotation of the paragraph, forwards and backwards: as many distinct texts as the 100-document
    # points need (identical pairs are scored once by crossrank and every time by a peer).
    rotations = [FALLBACK[i:] + FALLBACK[:i] for i in range(len(FALLBACK))]
    return rotations + [r[::-1] for r in rotations], "a built-in paragraph (no Cranfield collection found)"


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
    """Measured fp32 GEMM rate of this machine (numpy/BLAS) on the engines' thread count, the ceiling
    for the fp32 paths."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without the bench extra (it brings threadpoolctl): BLAS's own thread count
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(threads, user_api="blas")
    a = np.random.default_rng(0).standard_normal((1536, 1536), dtype=np.float32)
    b = a.T.copy()
    with limits:
        a @ b
        t = time.perf_counter()
        for _ in range(8):
            a @ b
        elapsed = time.perf_counter() - t
    return 8 * 2 * 1536**3 / elapsed / 1e9


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
        repeats: int = 10, include_peer: bool = True, corpus: Path | None = None,
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
    docs, origin = corpus_words(corpus)  # before the models load: a wrong --corpus fails at once
    path = str(source.path)
    threads = default_threads()
    ours = {
        "crossrank onnx fp32": CrossEncoder(path, backend="onnx"),
        "crossrank onnx int8": CrossEncoder(path, backend="onnx", quantize="int8"),
    }
    ref = ours["crossrank onnx fp32"]
    engines: dict[str, Callable[[list[tuple[str, str]]], object]] = {}
    if include_peer:
        try:
            import torch
            from sentence_transformers import CrossEncoder as STCrossEncoder
        except ImportError as exc:
            raise InputError(f"the sentence-transformers peer needs {exc.name}: pip install 'crossrank[bench]', "
                             "or pass --no-peer") from None
        torch.set_num_threads(threads)
        # The limit crossrank resolved (the model's, capped by its positions): both engines read the
        # same tokens, and a model with fewer than 512 positions does not crash the peer.
        st = STCrossEncoder(path, device="cpu", max_length=ref.max_length)
        engines["sentence-transformers (torch)"] = lambda pairs: st.predict(pairs, batch_size=32)
    for name, ce in ours.items():
        engines[name] = ce.score
    peak = gemm_peak_gflops(threads)
    echo(f"machine: {platform.processor() or platform.machine()}, {threads} threads; "
         f"measured fp32 GEMM peak {peak:.0f} GFLOP/s")
    echo(f"texts: {origin}; max_length {ref.max_length}; x = p50 / {next(iter(engines))}'s p50")
    rows = []
    for kind in kinds:
        for n in sizes:
            pairs = [(QUERY, t) for t in texts(kind, n, docs)]
            if len(set(pairs)) < n:  # crossrank scores a repeated pair once, a peer every time
                raise InputError(f"only {len(set(pairs))} distinct {kind} for {n} documents: pass a larger "
                                 "--corpus")
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
