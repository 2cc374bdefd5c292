"""Run: HF_HUB_OFFLINE=1 python scripts/maxsim_sweep.py [DATA_DIR]

Design 6 of docs/quality.md: zero-shot late interaction. The bi-encoder's (all-MiniLM-L6-v2) token
vectors, never trained for it, score each of the hybrid's top 100 candidates ColBERT-style — the mean
over query tokens of the best cosine with any document token ([CLS] and [SEP] dropped, documents cut at
256 tokens) — and that ranking joins BM25 and dense in the RRF with weight ``w``, chosen per held-out
collection on the mean relative NDCG@10 change over the *other five*. Nothing is trained. ~4 minutes
here (the candidates' token vectors are computed once per collection).
"""
import sys
from pathlib import Path

import numpy as np

from crossrank.engine.batching import CPU_BATCH_TOKENS, collate, plan
from crossrank.engine.tokenize import EncodedPairs
from crossrank.eval.collection import load_collection
from crossrank.eval.metrics import compare, evaluate, per_query
from crossrank.eval.runner import index_for
from crossrank.retrieval.fusion import reciprocal_rank_fusion

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
names = sorted(p.name for p in DATA.iterdir() if (p / "qrels").is_dir())
WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def token_vectors(encoder, texts: list[str]) -> list[np.ndarray]:
    """Unit token vectors of each text, special tokens dropped (the encoder's own batching)."""
    enc = EncodedPairs.from_encodings(encoder.tokenizer.encode_batch(texts, add_special_tokens=True))
    out: list[np.ndarray] = [np.zeros((0, 0))] * enc.rows
    for rows in plan(enc.lengths, CPU_BATCH_TOKENS, 64):
        batch = collate(enc, rows, encoder.pad_id)
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in encoder.input_names:
            feed["token_type_ids"] = batch.token_type_ids
        (tokens,) = encoder.session.run(None, feed)
        for j, row in enumerate(rows):
            v = tokens[j, 1:int(batch.attention_mask[j].sum()) - 1]
            out[row] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def runs_of(name: str) -> tuple[dict, dict]:
    col = load_collection(DATA / name)
    idx = index_for(col)
    corpus = idx.corpus
    lists = {}
    for q, text in col.queries.items():
        if q in col.qrels:
            lists[q] = (idx.bm25.search(text, 100)[0], idx.vectors.search(idx.embed_query(text), 100)[0])
    hybrid = {q: np.asarray(reciprocal_rank_fusion({"bm25": b, "dense": d}, k=60)[0])[:100]
              for q, (b, d) in lists.items()}
    docs = sorted({int(p) for r in hybrid.values() for p in r})
    doc_vectors = dict(zip(docs, token_vectors(idx.encoder, [corpus.text_at(d, ["title", "text"]) for d in docs]),
                           strict=True))
    query_vectors = dict(zip(hybrid, token_vectors(idx.encoder, [col.queries[q] for q in hybrid]), strict=True))
    runs: dict = {"hybrid": {}, **{w: {} for w in WEIGHTS}}
    for q, (b, d) in lists.items():
        cands = hybrid[q]
        maxsim = np.array([(query_vectors[q] @ doc_vectors[int(p)].T).max(1).mean() for p in cands])
        late = cands[np.argsort(-maxsim, kind="stable")]
        runs["hybrid"][q] = cands
        for w in WEIGHTS:
            fused = reciprocal_rank_fusion({"bm25": b, "dense": d, "maxsim": late}, k=60,
                                           weights={"bm25": 1.0, "dense": 1.0, "maxsim": w})[0]
            runs[w][q] = np.asarray(fused)[:100]
    as_runs = {k: {q: {corpus.ids[int(p)]: float(100 - i) for i, p in enumerate(r)} for q, r in v.items()}
               for k, v in runs.items()}
    return as_runs, col.qrels


def main() -> None:
    runs, qrels, ndcg = {}, {}, {}
    for name in names:
        runs[name], qrels[name] = runs_of(name)
        ndcg[name] = {k: evaluate(r, qrels[name])["ndcg@10"] for k, r in runs[name].items()}
        print(name, {k: round(v, 4) for k, v in ndcg[name].items()}, file=sys.stderr, flush=True)
    for held in names:
        others = [n for n in names if n != held]
        w = max(WEIGHTS, key=lambda x: np.mean([ndcg[n][x] / ndcg[n]["hybrid"] - 1 for n in others]))
        test = compare(per_query(runs[held][w], qrels[held], ["ndcg@10"])["ndcg@10"],
                       per_query(runs[held]["hybrid"], qrels[held], ["ndcg@10"])["ndcg@10"])
        print(f"{held:10} hybrid {ndcg[held]['hybrid']:.4f}  w {w}  with maxsim {ndcg[held][w]:.4f} "
              f"({test.relative:+.1%}, p = {test.p_randomization:.2f})")


if __name__ == "__main__":
    main()
