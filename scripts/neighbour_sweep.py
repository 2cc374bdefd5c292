"""Run: HF_HUB_OFFLINE=1 python scripts/neighbour_sweep.py [DATA_DIR]

Design 5 of docs/quality.md: score regularization by the cluster hypothesis (Diaz, 2005) — documents
close to other well-ranked documents are more likely relevant. Per query, each candidate of the hybrid's
top 100 (today's default index) gets ``(1 - alpha) * s + alpha * sum_j w_j * s_j`` where ``s`` is its RRF
score and ``j`` runs over its ``k`` most similar candidates, weighted by similarity. Three similarity
variants: the bi-encoder's cosine (a document's first window), the same centred on the candidate set's
mean similarity (only above-average neighbours count), and TF-IDF cosine of the texts (scikit-learn).
``alpha`` and ``k`` are chosen per held-out collection on the mean relative NDCG@10 change over the
*other five*; the paired randomization test compares the held-out run with the hybrid. Nothing is trained.
"""
import itertools
import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from crossrank.eval.collection import load_collection
from crossrank.eval.metrics import compare, evaluate, per_query
from crossrank.eval.runner import index_for
from crossrank.retrieval.fusion import reciprocal_rank_fusion

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
names = sorted(p.name for p in DATA.iterdir() if (p / "qrels").is_dir())
GRID = list(itertools.product((0.2, 0.3, 0.4), (3, 5, 10)))
VARIANTS = ("dense", "dense-centred", "tfidf")


def smooth(positions: np.ndarray, scores: np.ndarray, sims: np.ndarray, alpha: float, k: int,
           centred: bool) -> np.ndarray:
    """The candidates re-ordered by their neighbour-smoothed scores (ties keep the hybrid's order)."""
    n = len(positions)
    sims = sims.astype(np.float64).copy()
    if centred:
        sims -= sims[~np.eye(n, dtype=bool)].mean()
    np.fill_diagonal(sims, -np.inf)
    k = min(k, n - 1)
    if k < 1:
        return positions
    neighbours = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(sims, neighbours, 1), 0.0)
    total = weights.sum(1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    smoothed = np.where(total[:, 0] > 0, (1 - alpha) * scores + alpha * (weights * scores[neighbours]).sum(1), scores)
    return positions[np.lexsort((np.arange(n), -smoothed))]


def run_of(corpus_ids: list[str], rankings: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {q: {corpus_ids[int(p)]: float(100 - i) for i, p in enumerate(r[:100])} for q, r in rankings.items()}


def collection_runs(name: str) -> tuple[dict, dict]:
    """Hybrid run and every (variant, alpha, k) run of one collection."""
    col = load_collection(DATA / name)
    idx = index_for(col)
    corpus = idx.corpus
    tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(
        [corpus.text_at(p, ["title", "text"]) for p in range(len(corpus))])
    hybrid, runs = {}, {(v, a, k): {} for v in VARIANTS for a, k in GRID}
    for q, text in col.queries.items():
        if q not in col.qrels:
            continue
        dense = idx.vectors.search(idx.embed_query(text), 100)[0]
        positions, scores = reciprocal_rank_fusion({"bm25": idx.bm25.search(text, 100)[0], "dense": dense}, k=60)
        positions, scores = np.asarray(positions)[:100], np.asarray(scores, dtype=np.float64)[:100]
        hybrid[q] = positions
        vectors = idx.vectors.document_vectors(positions)
        lexical = tfidf[positions]
        sims = {"dense": vectors @ vectors.T, "tfidf": (lexical @ lexical.T).toarray()}
        for (variant, alpha, k), run in runs.items():
            run[q] = smooth(positions, scores, sims["tfidf" if variant == "tfidf" else "dense"], alpha, k,
                            centred=variant == "dense-centred")
    return ({"hybrid": run_of(corpus.ids, hybrid), **{key: run_of(corpus.ids, r) for key, r in runs.items()}},
            col.qrels)


def main() -> None:
    runs, qrels, ndcg = {}, {}, {}
    for name in names:
        runs[name], qrels[name] = collection_runs(name)
        ndcg[name] = {key: evaluate(run, qrels[name])["ndcg@10"] for key, run in runs[name].items()}
        print(name, "hybrid", round(ndcg[name]["hybrid"], 4), file=sys.stderr, flush=True)
    for variant in VARIANTS:
        print(f"\n{variant}: alpha, k chosen on the other five collections")
        for held in names:
            others = [n for n in names if n != held]
            best = max(GRID, key=lambda g: np.mean([ndcg[n][(variant, *g)] / ndcg[n]["hybrid"] - 1 for n in others]))
            key = (variant, *best)
            test = compare(per_query(runs[held][key], qrels[held], ["ndcg@10"])["ndcg@10"],
                           per_query(runs[held]["hybrid"], qrels[held], ["ndcg@10"])["ndcg@10"])
            print(f"  {held:10} hybrid {ndcg[held]['hybrid']:.4f}  alpha {best[0]} k {best[1]:2}  "
                  f"smoothed {ndcg[held][key]:.4f} ({test.relative:+.1%}, p = {test.p_randomization:.2f})")


if __name__ == "__main__":
    main()
