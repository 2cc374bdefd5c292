"""crossrank eval end to end on the shared ADI collection: figures match the baselines in its SOURCE.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrank import InputError
from crossrank.cli.app import app
from crossrank.eval.runner import parse_method

ADI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "adi"
pytestmark = pytest.mark.skipif(not ADI.is_dir(), reason="shared data not present")


def test_method_grammar():
    m = parse_method("hybrid+mmr+rerank")
    assert (m.retrievers, m.mmr, m.rerank) == (("bm25", "dense"), True, True)
    assert parse_method("default").retrievers == ("bm25", "dense")
    assert parse_method("hybrid+rerank+fuse").fuse and not parse_method("hybrid+rerank").fuse
    for bad in ("splade", "bm25+rerank+rerank", "dense+boost", "hybrid+fuse"):
        with pytest.raises(InputError):
            parse_method(bad)


def test_default_methods_rerank_only_with_a_model(tiny_model):
    """With no --model the default rows were reranked by the random-head built-in (NDCG@10 0.10 on ADI)."""
    plain = CliRunner().invoke(app, ["eval", str(ADI), "--json"])
    assert plain.exit_code == 0, plain.output
    assert [r["method"] for r in json.loads(plain.stdout)["results"]] == ["bm25", "dense", "hybrid"]
    reranked = CliRunner().invoke(app, ["eval", str(ADI), "--json", "--model", str(tiny_model), "--window", "5"])
    assert reranked.exit_code == 0, reranked.output
    assert [r["method"] for r in json.loads(reranked.stdout)["results"]][-1] == "hybrid+rerank"


def test_eval_json_matches_published_baselines(tmp_path, tiny_model):
    per_query = tmp_path / "pq.jsonl"
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25,hybrid,hybrid+rerank,hybrid+rerank+fuse",
                                      "--window", "10", "--max-chunks", "2",
                                      "--model", str(tiny_model), "--json", "--per-query", str(per_query),
                                      "--compare", "hybrid", "bm25"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    by_method = {r["method"]: r for r in payload["results"]}
    # ADI's SOURCE.md: NDCG@10 BM25 0.494, hybrid 0.519 (bm25s, stopwords + Snowball, MiniLM, RRF k=60).
    assert by_method["bm25"]["ndcg@10"] == pytest.approx(0.494, abs=0.002)
    assert by_method["hybrid"]["ndcg@10"] == pytest.approx(0.519, abs=0.002)
    assert by_method["hybrid+rerank"]["latency_ms"]["rerank"]["p50"] > 0
    # the fused rerank reorders only the window: recall@100 is the first stage's
    assert by_method["hybrid+rerank+fuse"]["recall@100"] == pytest.approx(by_method["hybrid"]["recall@100"])
    assert all(0 <= r["mrr@10"] <= 1 and 0 <= r["recall@100"] <= 1 for r in payload["results"])
    (cmp,) = payload["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["queries"]) == ("hybrid", "bm25", 35)
    lines = [json.loads(x) for x in per_query.read_text().splitlines()]
    assert len(lines) == 4 * 35 and {"ndcg@10", "mrr@10", "recall@100"} <= set(lines[0])


def test_eval_errors(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "BEIR-layout" in result.output
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "splade"])
    assert result.exit_code == 2 and "unknown method" in result.output
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", ","])
    assert result.exit_code == 2 and "names no method" in result.output
    import shutil

    shutil.copytree(ADI, tmp_path / "adi")
    (tmp_path / "adi" / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\n1\t\xff\t1\n")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "adi"), "--methods", "bm25"])
    assert result.exit_code == 2 and "test.tsv:2: not UTF-8" in result.output
    for target in (tmp_path / "no-such-dir" / "pq.jsonl", tmp_path):  # refused before any evaluation runs
        result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25", "--per-query", str(target)])
        assert result.exit_code == 2 and "--per-query" in result.output


def test_eval_with_dense_windows_leaves_short_documents_alone():
    # ADI's documents all fit in the bi-encoder's 256 tokens: windows change nothing (docs/quality.md, design 4).
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "dense,hybrid", "--dense-windows", "4",
                                      "--json"])
    assert result.exit_code == 0, result.output
    by_method = {r["method"]: r for r in json.loads(result.stdout)["results"]}
    assert by_method["dense"]["ndcg@10"] == pytest.approx(0.4975, abs=0.001)
    assert by_method["hybrid"]["ndcg@10"] == pytest.approx(0.519, abs=0.002)


def test_a_window_of_zero_is_refused_for_rerank_rows_and_fallbacks_are_shown(tiny_model, capsys):
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25,bm25+rerank", "--window", "0",
                                      "--model", str(tiny_model)])
    assert result.exit_code == 2 and "reranks nothing" in result.output
    from crossrank.cli.evaluate import _print_table
    from crossrank.eval.runner import MethodResult

    failed = MethodResult("bm25+rerank", "adi", {"ndcg@10": 0.5, "mrr@10": 0.6, "recall@100": 0.9}, {},
                          queries=35, fallbacks=35)
    _print_table([failed], [])
    shown = capsys.readouterr().out
    assert "35/35 not reranked" in shown and "the ranker failed on 35 of 35" in shown


def test_duplicate_query_ids_are_refused(tmp_path):
    """The last of two queries with one id silently replaced the first: evaluated as another text."""
    import shutil

    shutil.copytree(ADI, tmp_path / "adi")
    with (tmp_path / "adi" / "queries.jsonl").open("a") as fh:
        fh.write('{"_id": "1", "text": "a different query"}\n')
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "adi"), "--methods", "bm25"])
    assert result.exit_code == 2 and "duplicate _id '1'" in result.output


def test_bm25_only_builds_no_vectors_and_a_damaged_cache_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path / "cache"))
    first = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25", "--json"])
    assert first.exit_code == 0, first.output
    (cached,) = (tmp_path / "cache" / "eval-index").iterdir()
    assert "dense" not in cached.name and not (cached / "dense").exists()
    (cached / "corpus.jsonl").write_text("")  # damaged: the cache is crossrank's to mend, not the user's
    again = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["results"][0]["ndcg@10"] == json.loads(first.stdout)["results"][0]["ndcg@10"]
