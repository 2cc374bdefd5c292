"""Run: HF_HUB_OFFLINE=1 python scripts/dense_windows_sweep.py adi,cisi,cranfield,lisa,med,time [STRIDE] [MAX_WINDOWS]

Design 4 of docs/quality.md (``crossrank index --dense-windows``, measured here): documents longer than the
bi-encoder's max length (256 tokens for all-MiniLM-L6-v2) are embedded as overlapping token windows
(``STRIDE`` tokens of overlap, at most ``MAX_WINDOWS`` windows; defaults 64 and 8) and a document's dense
similarity is its best window's ("MaxP"). Documents that fit are embedded exactly as the index embeds
them, so collections of short documents are unchanged. Prints dense and hybrid NDCG@10 with and
without windows; nothing is tuned on the judgments.
"""
import sys
from pathlib import Path

import numpy as np

from crossrank.eval.collection import load_collection
from crossrank.eval.metrics import compare, evaluate, per_query
from crossrank.eval.runner import index_for
from crossrank.retrieval.fusion import reciprocal_rank_fusion

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STRIDE = int(sys.argv[2]) if len(sys.argv) > 2 else 64
MAXW = int(sys.argv[3]) if len(sys.argv) > 3 else 8


def windows_row(name: str) -> None:
    col = load_collection(DATA / name)
    idx = index_for(col, dense_windows=1)  # the cut-documents hybrid the design was measured against
    corpus = idx.corpus
    texts = [corpus.text_at(p, ["title", "text"]) for p in range(len(corpus))]
    vecs, owner = idx.encoder.embed_windows(texts, max_windows=MAXW, overlap=STRIDE)  # what the index builds
    runs = {"dense": {}, "maxp": {}, "hybrid": {}, "hybrid-maxp": {}}
    for q in col.queries:
        qv = idx.embed_query(col.queries[q])
        d_pos = idx.vectors.search(qv, 100)[0]
        best = np.full(len(corpus), -np.inf)
        np.maximum.at(best, owner, vecs @ qv)
        m_pos = np.argsort(-best, kind="stable")[:100]
        b_pos = idx.bm25.search(col.queries[q], 100)[0]
        for key, pos in (("dense", d_pos), ("maxp", m_pos),
                         ("hybrid", reciprocal_rank_fusion({"bm25": b_pos, "dense": d_pos})[0]),
                         ("hybrid-maxp", reciprocal_rank_fusion({"bm25": b_pos, "dense": m_pos})[0])):
            runs[key][q] = {corpus.ids[int(p)]: float(100 - i) for i, p in enumerate(pos[:100])}
    ndcg = {k: round(evaluate(r, col.qrels)["ndcg@10"], 4) for k, r in runs.items()}
    windows = np.bincount(owner, minlength=len(corpus))
    long_share = float((windows > 1).mean())  # documents the bi-encoder would cut at its max length
    test = compare(per_query(runs["hybrid-maxp"], col.qrels, ["ndcg@10"])["ndcg@10"],
                   per_query(runs["hybrid"], col.qrels, ["ndcg@10"])["ndcg@10"], names=("hybrid-maxp", "hybrid"))
    print(name, f"{len(owner)} windows for {len(corpus)} docs, {long_share:.0%} of documents longer than the encoder",
          ndcg, f"hybrid-maxp vs hybrid {test.relative:+.1%} p(randomization)={test.p_randomization:.3f}"
          f" p(t)={test.p_ttest:.3f}", flush=True)


if __name__ == "__main__":
    for collection in sys.argv[1].split(","):
        windows_row(collection)
