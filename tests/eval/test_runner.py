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
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "no-such-data")])
    assert result.exit_code == 2 and "no such directory" in result.output
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


def _bm25_run(path: Path, drop: set[str] = frozenset(), extra: str = "") -> None:
    """A TREC run written from crossrank's own BM25 over ADI, as an engine's export would be."""
    from crossrank.eval import load_collection
    from crossrank.retrieval import BM25, Index, Pipeline, load_corpus

    collection = load_collection(ADI, "test")
    pipeline = Pipeline(BM25(Index.build(load_corpus(collection.corpus_path, id_field="_id"), ["title", "text"],
                                         dense=False)))
    lines = [f"{qid} Q0 {hit.id} {rank} {hit.score:.6f} engine"
             for qid, query in collection.queries.items() if qid not in drop
             for rank, hit in enumerate(pipeline(query, top_k=100).hits, 1)]
    path.write_text("\n".join(reversed(lines)) + "\n" + extra)  # the score orders, not the line order


def test_a_run_file_is_measured_and_reranked_as_crossranks_own_first_stage_is(tmp_path, tiny_model):
    """An engine's results as a TREC run: the same figures as crossrank's BM25 when they are its results, and
    the same rerank of the same window."""
    _bm25_run(tmp_path / "es.trec")
    result = CliRunner().invoke(app, ["eval", str(ADI), "--run", f"es={tmp_path / 'es.trec'}", "--methods",
                                      "bm25,es,bm25+rerank,es+rerank,bm25+rerank+fuse,es+rerank+fuse", "--window",
                                      "10", "--model", str(tiny_model), "--json", "--compare", "es+rerank", "es"])
    assert result.exit_code == 0, result.output
    by = {r["method"]: r for r in json.loads(result.stdout)["results"]}
    for ours, theirs in (("bm25", "es"), ("bm25+rerank", "es+rerank"), ("bm25+rerank+fuse", "es+rerank+fuse")):
        for measure in ("ndcg@10", "mrr@10", "recall@100"):
            assert by[theirs][measure] == pytest.approx(by[ours][measure], abs=1e-9), (theirs, measure)
    assert by["es+rerank"]["latency_ms"]["rerank"]["p50"] > 0
    named = CliRunner().invoke(app, ["eval", str(ADI), "--run", str(tmp_path / "es.trec"), "--model",
                                     str(tiny_model), "--window", "5", "--json"])  # named by its stem
    assert named.exit_code == 0, named.output
    assert [r["method"] for r in json.loads(named.stdout)["results"]][-2:] == ["es", "es+rerank"]


def test_bad_run_files_say_what_is_wrong(tmp_path, caplog):
    _bm25_run(tmp_path / "part.trec", drop={"1", "2"}, extra="1 Q0 not-a-doc 1 99.0 engine\n")
    result = CliRunner().invoke(app, ["eval", str(ADI), "--run", str(tmp_path / "part.trec"), "--methods",
                                      "part", "--json"])
    assert result.exit_code == 0, result.output
    assert "no results for 1 of 35 judged queries" in caplog.text  # query 1 has only an unknown document
    for content, why in (("1 Q0 d 1 x t\n", "not a number"), ("1 Q0 d 1\n", "6 whitespace-separated"),
                         ("1 Q0 d 1 1 t\n1 Q0 d 2 0.5 t\n", "listed twice"), ("", "holds no results"),
                         ("1 Q0 d 1 nan t\n", "not finite"), ("nope Q0 7 1 1.0 t\n", "none of adi's judged")):
        (tmp_path / "bad.trec").write_text(content)
        result = CliRunner().invoke(app, ["eval", str(ADI), "--run", str(tmp_path / "bad.trec"), "--methods", "bad"])
        assert result.exit_code == 2 and why in result.output, (content, result.output)
    for spec, why in (("bm25=x.trec", "taken"), ("a+b=x.trec", "cannot name"), (str(tmp_path / "none.trec"),
                                                                                "not found")):
        result = CliRunner().invoke(app, ["eval", str(ADI), "--run", spec])
        assert result.exit_code == 2 and why in result.output, (spec, result.output)
    result = CliRunner().invoke(app, ["eval", str(ADI.parent), "--run", str(tmp_path / "part.trec")])
    assert result.exit_code == 2 and "one collection" in result.output
    result = CliRunner().invoke(app, ["eval", str(ADI), "--run", str(tmp_path / "part.trec"), "--methods",
                                      "part+mmr"])
    assert result.exit_code == 2 and "not for a run" in result.output


def test_written_runs_read_back_to_the_same_figures(tmp_path):
    """--write-runs: each method's ranking as a TREC run, which trec_eval's readers (ir-measures here) and
    crossrank's own --run read back to the same figures."""
    import ir_measures

    from crossrank.eval import load_collection

    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25", "--json", "--write-runs", str(out)])
    assert result.exit_code == 0, result.output
    bm25 = json.loads(result.stdout)["results"][0]
    written = out / "adi.bm25.trec"
    qrels = load_collection(ADI, "test").qrels
    direct = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, ir_measures.read_trec_run(str(written)))
    assert direct[ir_measures.nDCG @ 10] == pytest.approx(bm25["ndcg@10"], abs=1e-9)
    again = CliRunner().invoke(app, ["eval", str(ADI), "--run", f"back={written}", "--methods", "back", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["results"][0]["ndcg@10"] == pytest.approx(bm25["ndcg@10"], abs=1e-9)
    from crossrank.eval.runner import MethodResult

    spaced = MethodResult("bm25", "c", {}, {}, run={"q 1": {"d1": 1.0}})
    with pytest.raises(InputError, match="'q 1' holds whitespace"):
        spaced.write_trec(tmp_path / "spaced.trec")
    (tmp_path / "file").write_text("")
    refused = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "bm25", "--write-runs", str(tmp_path / "file")])
    assert refused.exit_code == 2 and "--write-runs" in refused.output


def test_run_files_as_tools_write_them(tmp_path, caplog):
    """gzip (Anserini, Pyserini), ties broken as trec_eval breaks them, ids the corpus lacks said, and
    undecodable bytes refused (they reached pytrec_eval, which killed the process with a segfault)."""
    import gzip

    import ir_measures

    from crossrank.eval import load_collection
    from crossrank.eval.metrics import evaluate

    _bm25_run(tmp_path / "es.trec")
    lines = (tmp_path / "es.trec").read_text().splitlines()
    tied = [" ".join([*line.split()[:4], str(int(float(line.split()[4]))), "t"]) for line in lines]  # integer scores
    (tmp_path / "ties.trec").write_text("\n".join(tied) + "\n")
    (tmp_path / "ties_rev.trec").write_text("\n".join(reversed(tied)) + "\n")
    with gzip.open(tmp_path / "zipped.trec.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    qrels = load_collection(ADI, "test").qrels
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels,
                                          ir_measures.read_trec_run(str(tmp_path / "ties.trec")))[ir_measures.nDCG @ 10]
    result = CliRunner().invoke(app, ["eval", str(ADI), "--json", "--methods", "ties,ties_rev,zipped,bm25",
                                      "--run", str(tmp_path / "ties.trec"), "--run", str(tmp_path / "ties_rev.trec"),
                                      "--run", str(tmp_path / "zipped.trec.gz")])
    assert result.exit_code == 0, result.output
    by = {r["method"]: r["ndcg@10"] for r in json.loads(result.stdout)["results"]}
    assert by["ties"] == by["ties_rev"] == pytest.approx(expected, abs=1e-9)  # the file's order does not matter
    assert by["zipped"] == pytest.approx(by["bm25"], abs=1e-9)
    (tmp_path / "foreign.trec").write_text("\n".join(line.replace(" Q0 ", " Q0 doc-") for line in lines) + "\n")
    (tmp_path / "some.trec").write_text("\n".join([*lines, "1 Q0 not-in-corpus 1 -5 t"]) + "\n")
    (tmp_path / "latin1.trec").write_bytes(b"1 Q0 M\xfcller 1 99 e\n" + (tmp_path / "es.trec").read_bytes())
    (tmp_path / "utf16.trec").write_text("1 Q0 7 1 1.0 t\n", encoding="utf-16")
    for run, why in (("foreign", "must name documents by the corpus's _id"), ("latin1", "latin1.trec:1: not UTF-8"),
                     ("utf16", "UTF-16")):
        result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", run, "--run", str(tmp_path / f"{run}.trec")])
        assert result.exit_code == 2 and why in result.output, (run, result.output)
    result = CliRunner().invoke(app, ["eval", str(ADI), "--methods", "some", "--run", str(tmp_path / "some.trec")])
    assert result.exit_code == 0 and "1 of the" in caplog.text and "not-in-corpus" in caplog.text
    assert evaluate({"1": {"M\udcfcller": 1.0}}, {"1": {"x": 1}})["ndcg@10"] == 0.0  # no crash below the reader
