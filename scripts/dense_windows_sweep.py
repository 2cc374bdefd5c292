"""Run: HF_HUB_OFFLINE=1 python scripts/dense_windows_sweep.py adi,cisi,cranfield,lisa,med,time [STRIDE] [MAX_WINDOWS]

Design 4 of docs/quality.md (measured, not yet built into the index): documents longer than the
bi-encoder's max length (256 tokens for all-MiniLM-L6-v2) are embedded as overlapping token windows
(``STRIDE`` tokens of overlap, at most ``MAX_WINDOWS`` windows; defaults 64 and 8) and a document's dense
similarity is its best window's ("MaxP"). Documents that fit are embedded exactly as the index embeds
them, so collections of short documents are unchanged. Prints dense and hybrid NDCG@10 with and
without windows; nothing is tuned on the judgments.
"""
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from crossrank.engine.batching import CPU_BATCH_TOKENS, collate, plan
from crossrank.engine.tokenize import EncodedPairs
from crossrank.eval.collection import load_collection
from crossrank.eval.metrics import evaluate
from crossrank.eval.runner import index_for
from crossrank.retrieval.fusion import reciprocal_rank_fusion

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STRIDE = int(sys.argv[2]) if len(sys.argv) > 2 else 64
MAXW = int(sys.argv[3]) if len(sys.argv) > 3 else 8


def windows_row(name: str) -> None:
    col = load_collection(DATA / name)
    idx = index_for(col)
    corpus = idx.corpus
    be = idx.encoder
    tok = Tokenizer.from_str(be.tokenizer.to_str())
    tok.enable_truncation(be.max_length, stride=STRIDE)
    encs = tok.encode_batch([corpus.text_at(p, ["title", "text"]) for p in range(len(corpus))])
    rows, owner = [], []
    for p, e in enumerate(encs):
        for w in [e, *e.overflowing[: MAXW - 1]]:
            rows.append(w)
            owner.append(p)
    enc = EncodedPairs.from_encodings(rows, owner)
    vecs = np.empty((enc.rows, idx.vectors.vectors.shape[1]), np.float32)
    for r in plan(enc.lengths, CPU_BATCH_TOKENS, 64):
        b = collate(enc, r, be.pad_id)
        feed = {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "token_type_ids": b.token_type_ids}
        (t,) = be.session.run(None, feed)
        vecs[r] = be._pool(t, b.attention_mask)
    owner = enc.owner
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
    print(name, f"{enc.rows} windows for {len(corpus)} docs", ndcg, flush=True)


if __name__ == "__main__":
    for collection in sys.argv[1].split(","):
        windows_row(collection)
