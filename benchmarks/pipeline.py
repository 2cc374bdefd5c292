"""Retrieval pipeline speed on a large corpus: index build time and memory, query latency per stage.

Run:  HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/pipeline.py --docs 100000
      (add --embed 5000 on a busy or small machine: see below)

Corpus: synthetic documents made from the six BEIR collections in ../shared/data (or --data): document
i takes the title of real document i mod N and a text spliced from the first half of that document
and the second half of another, so vocabulary, term statistics and lengths are those of real
abstracts. Queries: the collections' real queries.

Measured: BM25 build (bm25s), embedding throughput (ONNX MiniLM-L6), HNSW build (usearch), peak RSS
and index size on disk; p50/p99 latency of BM25, dense (query embedding + HNSW), hybrid (both + RRF)
and end to end with the cross-encoder (built-in MiniLM-L6 architecture) reranking 25 and 100 docs.

``--embed N`` embeds only N documents for real (the throughput and the extrapolated time for all
documents are reported) and fills the other vectors with noisy copies of real ones (unit length,
cosine ~0.9 to their source), so the HNSW graph and its search see realistic, clustered vectors
without a 20-minute embedding run. The report says which mode ran.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from crossrank.bench import count, run_script

ROOT = Path(__file__).resolve().parent.parent


def synthetic_corpus(data: Path, n: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    real, queries = [], []
    for collection in sorted(p for p in data.iterdir() if (p / "corpus.jsonl").exists()):
        with (collection / "corpus.jsonl").open() as fh:
            real += [json.loads(line) for line in fh]
        with (collection / "queries.jsonl").open() as fh:
            queries += [json.loads(line)["text"] for line in fh]
    rng = np.random.default_rng(seed)
    partners = rng.integers(0, len(real), size=n)
    docs = []
    for i in range(n):
        a, b = real[i % len(real)], real[int(partners[i])]
        wa, wb = (a.get("text") or "").split(), (b.get("text") or "").split()
        text = " ".join(wa[: len(wa) // 2] + wb[len(wb) // 2:])
        docs.append({"id": f"d{i}", "title": a.get("title") or "", "text": text})
    return docs, queries


def percentiles(samples_s: list[float]) -> str:
    ms = np.asarray(samples_s) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms  (n={len(ms)})"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=count, default=100_000)
    parser.add_argument("--embed", type=count, default=None, help="embed only this many documents for real")
    parser.add_argument("--queries", type=count, default=200, help="queries for first-stage latency")
    parser.add_argument("--rerank-queries", type=count, default=20, help="queries for end-to-end latency")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/crossrank-bench.idx"))
    args = parser.parse_args()

    from crossrank.engine.encoder import default_threads
    from crossrank.retrieval import (
        BM25,
        BiEncoder,
        Corpus,
        Dense,
        Index,
        LocalRanker,
        Pipeline,
        VectorIndex,
    )
    from crossrank.retrieval.bm25 import BM25Index

    print(f"machine: {platform.machine()}, {default_threads()} threads, python {sys.version.split()[0]}")
    t0 = time.perf_counter()
    records, queries = synthetic_corpus(args.data, args.docs)
    corpus = Corpus.from_records(records)
    texts = corpus.texts(["title", "text"])
    words = np.mean([len(t.split()) for t in texts[:10_000]])
    print(f"corpus: {len(corpus)} synthetic docs from {args.data} ({words:.0f} words/doc), "
          f"{len(queries)} real queries; made in {time.perf_counter() - t0:.1f} s; RSS {rss_mib():.0f} MiB")

    t0 = time.perf_counter()
    bm25 = BM25Index().build(texts)
    print(f"bm25 build: {time.perf_counter() - t0:.1f} s; RSS {rss_mib():.0f} MiB")

    encoder = BiEncoder()
    n_embed = len(texts) if args.embed is None else min(args.embed, len(texts))
    t0 = time.perf_counter()
    real_vectors = encoder.embed(texts[:n_embed])
    embed_s = time.perf_counter() - t0
    rate = n_embed / embed_s
    if n_embed == len(texts):
        vectors = real_vectors
        print(f"embedding: {embed_s:.1f} s for {n_embed} docs ({rate:.0f} docs/s)")
    else:
        rng = np.random.default_rng(1)
        source = rng.integers(0, n_embed, size=len(texts) - n_embed)
        noise = rng.normal(scale=0.02, size=(len(source), real_vectors.shape[1])).astype(np.float32)
        filler = real_vectors[source] + noise
        filler /= np.linalg.norm(filler, axis=1, keepdims=True)
        vectors = np.concatenate([real_vectors, filler])
        print(f"embedding: {embed_s:.1f} s for {n_embed} real docs ({rate:.0f} docs/s) -> extrapolated "
              f"{len(texts) / rate:.0f} s for all {len(texts)}; the other {len(source)} vectors are noisy copies")
    t0 = time.perf_counter()
    vector_index = VectorIndex(vectors)
    print(f"vector index: {'HNSW (usearch)' if vector_index.ann else 'exact'} built in "
          f"{time.perf_counter() - t0:.1f} s; RSS {rss_mib():.0f} MiB")

    index = Index(corpus, ["title", "text"], bm25=bm25, vectors=vector_index, dense_model="all-MiniLM-L6-v2")
    index._encoder = encoder
    t0 = time.perf_counter()
    index.save(args.out)
    print(f"saved to {args.out}: {dir_mib(args.out):.0f} MiB on disk in {time.perf_counter() - t0:.1f} s")

    qs = [queries[i % len(queries)] for i in range(args.queries)]
    stages = {"bm25": Pipeline(BM25(index)), "dense": Pipeline(Dense(index)),
              "hybrid": Pipeline(BM25(index) | Dense(index))}
    for name, pipeline in stages.items():
        for q in qs[:5]:
            pipeline(q, top_k=10)  # warm-up
        samples = []
        for q in qs:
            t = time.perf_counter()
            pipeline(q, top_k=10)
            samples.append(time.perf_counter() - t)
        print(f"first stage {name:<7} top 10 of {len(index)}: {percentiles(samples)}")

    ranker = LocalRanker()
    search = Pipeline(BM25(index) | Dense(index)) + ranker
    for window in (25, 100):
        search(qs[0], top_k=10, window=window)
        samples = []
        for q in qs[: args.rerank_queries]:
            t = time.perf_counter()
            search(q, top_k=10, window=window)
            samples.append(time.perf_counter() - t)
        print(f"end to end hybrid + rerank window {window:>3}: {percentiles(samples)}")
    print(f"peak RSS {rss_mib():.0f} MiB")


if __name__ == "__main__":
    run_script(main)
