"""Evaluation glue against hand-computed figures and the shared ADI collection."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from crossrank import InputError
from crossrank.eval import compare, evaluate, load_collection, per_query

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_metrics_match_hand_computation():
    qrels = {"q1": {"d1": 2, "d3": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d1": 0.1, "d2": 0.9, "d3": 0.5}}  # order: d2, d3, d1; q2 absent -> zeros
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)  # trec_eval's nDCG (what ir-measures runs): linear gain
    result = evaluate(run, qrels)
    assert result["ndcg@10"] == pytest.approx((dcg / idcg + 0.0) / 2)
    assert result["mrr@10"] == pytest.approx((1 / 2 + 0.0) / 2)
    assert result["recall@100"] == pytest.approx((1.0 + 0.0) / 2)
    assert per_query(run, qrels)["ndcg@10"]["q2"] == 0.0


def test_compare_detects_a_real_difference_and_not_a_tie():
    better = {f"q{i}": 0.8 for i in range(40)}
    worse = {f"q{i}": 0.5 + 0.01 * (i % 3) for i in range(40)}
    c = compare(better, worse, names=("new", "old"), resamples=2000)
    assert c.significant() and c.relative > 0.5 and c.queries == 40
    tie = compare(better, dict(better), resamples=2000)
    assert tie.p_randomization == 1.0 and not tie.significant()


@pytest.mark.skipif(not (SHARED / "adi").is_dir(), reason="shared data not present")
def test_load_beir_collection():
    adi = load_collection(SHARED / "adi")
    assert len(adi.corpus) == 82 and len(adi.queries) == 35
    assert all(qid in adi.queries for qid in adi.qrels)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        load_collection(tmp_path / "missing")
    (tmp_path / "qrels").mkdir()
    with pytest.raises(InputError, match="qrels"):
        load_collection(tmp_path)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "2", "text": "unjudged"}\n')
    with pytest.raises(InputError, match="no query"):
        load_collection(tmp_path)


def test_qrels_are_read_strictly(tmp_path):
    from crossrank.eval.collection import read_qrels

    path = tmp_path / "q.tsv"
    path.write_bytes('\ufeffquery-id\tcorpus-id\tscore\n\n  \nq0\t"d0\t1\nq1\td1"\t2\n'.encode())
    assert read_qrels(path) == {"q0": {'"d0': 1}, "q1": {'d1"': 2}}  # quotes are characters, not quoting
    for content, message in (("1\t0\t17\t1\n", "TREC"), ("q\td\t0.5\n", "not an integer"),
                             ("q\td\tinf\n", "not an integer"), ("q\td\tx\n", "not a number")):
        path.write_text(content)
        with pytest.raises(InputError, match=message):
            read_qrels(path)


def test_relative_change_of_a_zero_baseline_is_none_and_json_safe():
    import json

    c = compare({"a": 0.5, "b": 0.2}, {"a": 0.0, "b": 0.0})
    assert c.relative is None and json.loads(json.dumps(vars(c)))["relative"] is None


def test_measure_labels_and_unknown_measures():
    run = {"q": {"d1": 2.0, "d2": 1.0}}
    qrels = {"q": {"d2": 1}}
    both = evaluate(run, qrels, ["ndcg@10", "nDCG@10"])
    assert both["ndcg@10"] == both["nDCG@10"] > 0
    with pytest.raises(InputError, match="unknown measure"):
        evaluate(run, qrels, ["p@1"])


def test_queries_no_document_of_the_corpus_answers_and_queries_without_text(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\td1\t1\n2\tgone\t1\n3\td1\t1\n3\tgone\t2\n")
    (tmp_path / "corpus.jsonl").write_bytes(b'\xef\xbb\xbf{"_id": "d1", "text": "x"}\n')  # a BOM, as Windows writes
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"}\n'
                                            '{"_id": "3", "text": "c"}\n')
    collection = load_collection(tmp_path)
    assert sorted(collection.queries) == ["1", "3"]  # query 2's only relevant document is not in the corpus
    (note,) = collection.notes
    assert "2 positive judgments name documents not in corpus.jsonl" in note and "1 queries" in note
    (tmp_path / "queries.jsonl").write_text('{"_id": "01", "text": "a"}\n{"_id": "3", "text": "c"}\n')
    collection = load_collection(tmp_path)  # "01" is not query 1: said, not silently dropped
    assert sorted(collection.queries) == ["3"]
    assert "2 judged queries of qrels/test.tsv are not in queries.jsonl" in collection.notes[0]  # 1 and 2
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "  "}\n')
    with pytest.raises(InputError, match="judged query '1' has no text"):
        load_collection(tmp_path)
