"""Run: HF_HUB_OFFLINE=1 python scripts/prf_sweep.py [DATA_DIR]

Design 3 of docs/quality.md: RM3-style pseudo-relevance feedback on the BM25 side of the hybrid.
Per query, the top ``fb_docs`` BM25 documents (weighted by a softmax of their scores) give a term
distribution; its ``fb_terms`` best terms are mixed into the query with weight ``lam`` and BM25 is
re-scored with per-term weights (bm25s scores one term at a time), then fused with the dense ranking by
RRF exactly as the hybrid is. The parameters reported for a collection are those that maximised the
mean relative NDCG@10 change over the *other five* collections. No model is trained.
"""
import itertools
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from crossrank.eval.collection import load_collection
from crossrank.eval.metrics import evaluate
from crossrank.eval.runner import index_for
from crossrank.retrieval.fusion import reciprocal_rank_fusion

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
names = sorted(p.name for p in DATA.iterdir() if (p / "qrels").is_dir())
GRID = list(itertools.product((5, 10), (10, 30), (0.3, 0.5, 0.7)))
FIELDS = ["title", "text"]


def prf_scores(bm, retr, corpus, query, fb_docs, fb_terms, lam):
    terms = bm.query_terms(query)
    s0 = bm.scores(query)
    if not terms or s0.max() <= 0:
        return s0
    top = np.argsort(-s0)[:fb_docs]
    top = top[s0[top] > 0]
    w = np.exp(s0[top] - s0[top].max())
    w /= w.sum()
    dist = Counter()
    for d, wd in zip(top, w, strict=True):
        toks = bm.query_terms(corpus.text_at(int(d), FIELDS))
        if not toks:
            continue
        tf = Counter(toks)
        n = len(toks)
        for t, c in tf.items():
            dist[t] += wd * c / n
    exp = dict(dist.most_common(fb_terms))
    z = sum(exp.values()) or 1.0
    weights = Counter({t: (1 - lam) / len(terms) * terms.count(t) / 1.0 for t in set(terms)})
    for t, v in exp.items():
        weights[t] += lam * v / z
    out = np.zeros(bm.num_docs, dtype=np.float64)
    for t, wt in weights.items():
        ids = retr.get_tokens_ids([t])
        if ids:
            out += wt * np.asarray(retr.get_scores_from_ids(ids))
    return out


def topk(scores, k=100):
    matched = np.flatnonzero(scores > 0)
    if len(matched) > k:
        matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
    return matched[np.lexsort((matched, -scores[matched]))]


def ndcg(corpus, qrels, rankings: dict[str, np.ndarray]) -> float:
    run = {q: {corpus.ids[int(p)]: float(100 - i) for i, p in enumerate(r[:100])} for q, r in rankings.items()}
    return evaluate(run, qrels)["ndcg@10"]


def hybrid(bm_rank: dict[str, np.ndarray], dense: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {q: reciprocal_rank_fusion({"bm25": r, "dense": dense[q]}, k=60)[0] for q, r in bm_rank.items()}


def collection_row(name: str) -> dict[str, float]:
    col = load_collection(DATA / name)
    idx = index_for(col, dense_windows=1)  # the cut-documents hybrid the design was measured against
    bm, corpus = idx.bm25, idx.corpus
    dense = {q: idx.vectors.search(idx.embed_query(text), 100)[0] for q, text in col.queries.items()}
    base = {q: bm.search(text, 100)[0] for q, text in col.queries.items()}
    row = {"hybrid": ndcg(corpus, col.qrels, hybrid(base, dense)), "bm25": ndcg(corpus, col.qrels, base)}
    for cfg in GRID:
        ranked = {q: topk(prf_scores(bm, bm._retriever, corpus, text, *cfg)) for q, text in col.queries.items()}
        row[str(cfg)] = ndcg(corpus, col.qrels, hybrid(ranked, dense))
        row["bm25" + str(cfg)] = ndcg(corpus, col.qrels, ranked)
    return row


def main() -> None:
    table = {}
    for name in names:
        table[name] = collection_row(name)
        print(name, {k: round(v, 4) for k, v in table[name].items()}, file=sys.stderr, flush=True)
    for held in names:
        others = [n for n in names if n != held]
        best = max(GRID, key=lambda c: np.mean([table[n][str(c)] / table[n]["hybrid"] - 1 for n in others]))
        r = table[held]
        print(f"{held:10} hybrid {r['hybrid']:.4f} bm25 {r['bm25']:.4f} cfg {best} prf-hybrid {r[str(best)]:.4f} "
              f"({r[str(best)] / r['hybrid'] - 1:+.1%} vs hybrid, {r[str(best)] / r['bm25'] - 1:+.1%} vs bm25) "
              f"prf-bm25 {r['bm25' + str(best)]:.4f}")


if __name__ == "__main__":
    main()
