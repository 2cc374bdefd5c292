"""`crossrank index` and `crossrank search`, run for real: CliRunner in process, and a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from crossrank.cli.app import app

runner = CliRunner()
QUERY = "family movie about bears in the woods"


@pytest.fixture(scope="module")
def movies_index(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "movies.idx"
    result = runner.invoke(app, ["index", "sample", "--out", str(out), "--fields", "title,text", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["documents"] == 65 and summary["bm25"] and summary["dense"] == "all-MiniLM-L6-v2"
    assert summary["dense_windows"] == 1  # "auto": the sample's short documents are not windowed
    assert (out / "manifest.json").exists()
    return out


def test_search_json_carries_every_stage(movies_index, tiny_model):
    result = runner.invoke(app, ["search", str(movies_index), QUERY, "--top-k", "5", "--window", "25",
                                 "--model", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "bm25+dense/rrf+rerank" and data["window"] == 25 and len(data["hits"]) == 5
    for hit in data["hits"]:
        assert {"rerank", "rrf"} <= set(hit["stages"]) and hit["document"]["title"]
        assert hit["score"] == hit["stages"]["rerank"]["score"]


def test_search_table_and_first_stage_only(movies_index):
    result = runner.invoke(app, ["search", str(movies_index), QUERY, "--top-k", "3", "--no-rerank", "--mmr", "0.5"])
    assert result.exit_code == 0, result.output
    assert "bm25+dense/rrf+mmr" in result.stdout and "bm25 #" in result.stdout and "dense #" in result.stdout


def test_default_pipeline_is_hybrid_and_says_so(movies_index):
    result = runner.invoke(app, ["search", str(movies_index), QUERY, "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "bm25+dense/rrf" and all("rerank" not in h["stages"] for h in data["hits"])
    table = runner.invoke(app, ["search", str(movies_index), QUERY, "--top-k", "3"])
    assert table.exit_code == 0 and "no rerank (bm25+dense/rrf): the default pipeline" in table.output


def test_the_table_shows_the_indexed_fields_and_names_the_method_it_ran(tmp_path):
    """A corpus indexed on `body` showed empty snippets, and the note claimed a hybrid for a BM25-only index."""
    corpus = tmp_path / "notes.csv"
    corpus.write_text("id,body\nn1,sourdough bread rises with wild yeast\nn2,spring tides follow the moon\n")
    built = runner.invoke(app, ["index", str(corpus), "--out", str(tmp_path / "notes.idx"), "--fields", "body",
                                "--id-field", "id", "--no-dense"])
    assert built.exit_code == 0, built.output
    table = runner.invoke(app, ["search", str(tmp_path / "notes.idx"), "wild yeast bread", "--top-k", "1"])
    assert table.exit_code == 0, table.output
    assert "sourdough bread rises" in table.stdout and "no rerank (bm25): the default pipeline" in table.output


def test_input_errors_exit_2(movies_index, tmp_path):
    missing_field = runner.invoke(app, ["index", "sample", "--out", str(tmp_path / "x"), "--fields", "plot"])
    assert missing_field.exit_code == 2 and "no field 'plot'" in missing_field.output
    not_an_index = runner.invoke(app, ["search", str(tmp_path), "q", "--no-rerank"])
    assert not_an_index.exit_code == 2 and "not a crossrank index" in not_an_index.output
    bad_weights = runner.invoke(app, ["search", str(movies_index), "q", "--weights", "bm25", "--no-rerank"])
    assert bad_weights.exit_code == 2
    (tmp_path / "dup.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n')
    dup = runner.invoke(app, ["index", str(tmp_path / "dup.jsonl"), "--out", str(tmp_path / "d"), "--no-dense"])
    assert dup.exit_code == 2 and "duplicate id '1'" in dup.output
    bad_windows = runner.invoke(app, ["index", "sample", "--out", str(tmp_path / "w"), "--dense-windows", "many"])
    assert bad_windows.exit_code == 2 and "dense_windows must be 'auto' or an integer" in bad_windows.output
    usage = runner.invoke(app, ["search", str(movies_index)])
    assert usage.exit_code == 2
    for weights in ("bm25=0,dense=0", "bm25=1,bm25=2"):  # no order at all; which value counts?
        refused = runner.invoke(app, ["search", str(movies_index), "q", "--weights", weights, "--no-rerank"])
        assert refused.exit_code == 2 and "weight" in refused.output, refused.output
    ignored = runner.invoke(app, ["search", str(movies_index), "q", "--min-score", "5", "--no-rerank"])
    assert ignored.exit_code == 2 and "no ranker" in ignored.output
    (tmp_path / "trailing.csv").write_text("id,title,text\n1,crocs,clog,\n2,wing\n")  # a blank extra, a short row
    trailing = runner.invoke(app, ["index", str(tmp_path / "trailing.csv"), "--out", str(tmp_path / "t"),
                                   "--no-dense"])
    assert trailing.exit_code == 0, trailing.output
    single = runner.invoke(app, ["search", str(tmp_path / "t"), "crocs", "--weights", "bm25=0", "--no-rerank"])
    assert single.exit_code == 0, single.output  # one retriever: nothing is fused, the weight changes nothing
    lacking = runner.invoke(app, ["search", str(tmp_path / "t"), "crocs", "--weights", "bm25=0,dense=1"])
    assert lacking.exit_code == 2 and "lacks" in lacking.output
    (tmp_path / "ragged.csv").write_text("id,title,text\n1,crocs,clog\n2,wing,aircraft, lift\n")
    ragged = runner.invoke(app, ["index", str(tmp_path / "ragged.csv"), "--out", str(tmp_path / "r"), "--no-dense"])
    assert ragged.exit_code == 2 and "ragged.csv:3: 4 cells for 3 columns" in ragged.output
    as_dir = runner.invoke(app, ["index", str(tmp_path), "--out", str(tmp_path / "r"), "--no-dense"])
    assert as_dir.exit_code == 2 and "is a directory" in as_dir.output


def test_index_csv_bm25_only_then_search_in_a_subprocess(tmp_path):
    (tmp_path / "products.csv").write_text("sku,name,blurb\np1,Crocs Kids Baya Clog,a light clog for kids\n"
                                           "p2,Trail Runner,a running shoe for trails\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-m", "crossrank.cli.app"]
    built = subprocess.run([*cli, "index", str(tmp_path / "products.csv"), "--out", str(tmp_path / "p.idx"),
                            "--fields", "name,blurb", "--id-field", "sku", "--no-dense"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert built.returncode == 0, built.stderr
    found = subprocess.run([*cli, "search", str(tmp_path / "p.idx"), "clogs for kids", "--no-rerank", "--json"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout)
    assert data["method"] == "bm25" and data["hits"][0]["id"] == "p1"
    bad = subprocess.run([*cli, "search", str(tmp_path / "nope"), "q"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_unreachable_remote_ranker_still_answers(movies_index):
    result = runner.invoke(app, ["search", str(movies_index), QUERY, "--remote", "http://127.0.0.1:9",
                                 "--timeout", "0.3", "--retries", "0", "--json", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "bm25+dense/rrf" and "kept first-stage order" in data["fallback"]
    assert len(data["hits"]) == 3


def test_budget_and_cascade_flags(movies_index, tiny_model):
    result = runner.invoke(app, ["search", str(movies_index), QUERY, "--model", str(tiny_model), "--cascade-model",
                                 str(tiny_model), "--cascade-keep", "3", "--window", "10", "--budget-ms", "60000",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "bm25+dense/rrf+cascade" and data["window"] == 10
    fused = runner.invoke(app, ["search", str(movies_index), QUERY, "--model", str(tiny_model), "--fuse", "--json"])
    assert fused.exit_code == 0 and json.loads(fused.stdout)["method"] == "bm25+dense/rrf+rerank+rrf"
    assert sum("rerank" in h["stages"] for h in data["hits"]) == 3
    no = runner.invoke(app, ["search", str(movies_index), QUERY, "--remote", "http://127.0.0.1:9", "--no-rerank"])
    assert no.exit_code == 2 and "--no-rerank with --remote" in no.output
    for extra in ([], ["--remote", "http://127.0.0.1:9", "--model", "m"]):  # pruning needs a local --model
        alone = runner.invoke(app, ["search", str(movies_index), QUERY, "--cascade-model", str(tiny_model), *extra])
        assert alone.exit_code == 2 and "--cascade-model reranks the survivors of --model" in alone.output


def test_json_output_is_standard_json(tmp_path):
    """A NaN in a document (Parquet floats, Python's JSON reader) is null in --json output, not a bare NaN
    that JavaScript's JSON.parse refuses."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "text": "bears in the woods", "rating": NaN}\n{"id": "2", "text": "cats"}\n')
    assert runner.invoke(app, ["index", str(corpus), "--out", str(tmp_path / "idx"), "--no-dense",
                                "--fields", "text"]).exit_code == 0
    result = runner.invoke(app, ["search", str(tmp_path / "idx"), "bears", "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))
    assert json.loads(result.stdout)["hits"][0]["document"]["rating"] is None
    ranked = runner.invoke(app, ["rerank", "q", "--json", "--model", "minilm-l6-untrained"],
                           input='{"text": "a", "x": Infinity}\n')
    assert ranked.exit_code == 0, ranked.output
    json.loads(ranked.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))


def test_document_text_is_shown_as_text_not_markup(tmp_path):
    """Rich read "[/b]" in a title as a closing tag (MarkupError, exit 1) and dropped "[str]" from code."""
    corpus = tmp_path / "code.jsonl"
    corpus.write_text(json.dumps({"id": "a", "title": "Foo [/b] bears", "text": "List[str] and [bold]bears"}) + "\n"
                      + json.dumps({"id": "b", "title": "other", "text": "nothing here"}) + "\n")
    built = runner.invoke(app, ["index", str(corpus), "--out", str(tmp_path / "code.idx"), "--no-dense"])
    assert built.exit_code == 0, built.output
    found = runner.invoke(app, ["search", str(tmp_path / "code.idx"), "bears"])
    assert found.exit_code == 0, found.output
    assert "Foo [/b] bears" in found.stdout and "List[str] and [bold]bears" in found.stdout


def test_conflicting_or_empty_flags_are_refused_before_any_work(movies_index, tiny_model, tmp_path):
    cases = [
        (["search", str(movies_index), "q", "--model", ""], "--model is empty"),  # an unset $VARIABLE
        (["search", str(movies_index), "q", "--fuse"], "--fuse"),
        (["search", str(movies_index), "q", "--model", str(tiny_model), "--window", "0"], "reranks nothing"),
        (["index", "sample", "--out", str(tmp_path / "x.idx"), "--no-dense", "--ann"], "--no-dense"),
        (["eval", str(tmp_path), "--model", ""], "--model is empty"),
        (["rerank", "q", "d", "--backend", "bogus"], "unknown backend 'bogus'"),
        (["serve", "--log-level", "bogus"], "--log-level 'bogus'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert "None" not in result.output


def test_index_destination_is_checked_first_and_an_interrupted_save_is_replaced(tmp_path):
    (tmp_path / "afile").write_text("mine")
    refused = runner.invoke(app, ["index", "sample", "--out", str(tmp_path / "afile"), "--no-dense"])
    assert refused.exit_code == 2 and "is a file" in refused.output
    assert "BM25" not in refused.output  # refused before the build, not after it
    # a directory of the user's whose names happen to be an index's is not an index: nothing is deleted
    results = tmp_path / "results"
    (results / "bm25").mkdir(parents=True)
    (results / "bm25" / "run1.txt").write_text("ndcg 0.41")
    (results / "corpus.jsonl").write_text('{"id": "mine"}\n')
    refused = runner.invoke(app, ["index", "sample", "--out", str(results), "--no-dense"])
    assert refused.exit_code == 2 and "not a crossrank index" in refused.output
    assert (results / "bm25" / "run1.txt").exists()
    # what a save cut off before its manifest leaves (it marks the directory first), and a dead process's scratch
    left = tmp_path / "left.idx"
    (left / "bm25").mkdir(parents=True)
    (left / "corpus.jsonl").write_text("{}\n")
    (left / ".crossrank-saving").touch()
    (tmp_path / "left.idx.tmp999999999").mkdir()
    rebuilt = runner.invoke(app, ["index", "sample", "--out", str(left), "--no-dense"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (left / "manifest.json").exists() and not (left / ".crossrank-saving").exists()
    assert not (tmp_path / "left.idx.tmp999999999").exists()


def test_a_damaged_index_corpus_is_named_as_such(movies_index, tmp_path):
    import shutil

    copy = tmp_path / "copy.idx"
    shutil.copytree(movies_index, copy)
    (copy / "corpus.jsonl").write_text("")
    result = runner.invoke(app, ["search", str(copy), "q"])
    assert result.exit_code == 2 and "copy.idx/corpus.jsonl holds 0 documents" in result.output


def test_os_errors_and_deep_json_end_in_one_line(tiny_model):
    """Failures the OS reports (here a full stdout) and JSON too deep for Python's parser: exit 2, one
    line, no traceback."""
    cli = [sys.executable, "-m", "crossrank.cli.app"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*cli, "rerank", "q", "a", "--model", str(tiny_model)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2 and "No space left" in proc.stderr and "Traceback" not in proc.stderr
    deep = '{"text": "fine"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    proc = subprocess.run([*cli, "rerank", "q", "--model", str(tiny_model)], input=deep, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "nested too deeply" in proc.stderr and "Traceback" not in proc.stderr


def test_rerank_response_reads_an_engines_json_and_prints_it_reranked(tiny_model, tmp_path):
    solr = {"response": {"numFound": 2, "start": 0, "maxScore": 2.0, "docs": [
        {"id": "a", "title": "running shoe", "score": 2.0}, {"id": "b", "title": "crocs kids clog", "score": 1.0}]}}
    es = {"hits": {"max_score": 2.0, "hits": [{"_id": "a", "_score": 2.0, "_source": {"title": "running shoe"}},
                                              {"_id": "b", "_score": 1.0, "_source": {"title": "crocs kids clog"}}]}}
    path = tmp_path / "es.json"
    path.write_text(json.dumps(es))
    from_stdin = runner.invoke(app, ["rerank-response", "crocs", "--model", str(tiny_model)], input=json.dumps(solr))
    from_file = runner.invoke(app, ["rerank-response", "crocs", str(path), "--model", str(tiny_model)])
    assert from_stdin.exit_code == 0 and from_file.exit_code == 0, from_stdin.output + from_file.output
    docs, hits = json.loads(from_stdin.stdout)["response"]["docs"], json.loads(from_file.stdout)["hits"]["hits"]
    assert {d["id"] for d in docs} == {h["_id"] for h in hits} == {"a", "b"}
    assert [d["id"] for d in docs] == [h["_id"] for h in hits]  # the same texts rank the same in both shapes
    assert all("_crossrank" in d for d in docs)
    for bad, why in (("not json", "not JSON"), ('{"took": 1}', "no hits.hits"), (b"\xff\xfe{", "not JSON")):
        result = runner.invoke(app, ["rerank-response", "q", "--model", str(tiny_model)], input=bad)
        assert result.exit_code == 2 and why in result.output, result.output
    bom = runner.invoke(app, ["rerank-response", "crocs", "--model", str(tiny_model)],
                        input=b"\xef\xbb\xbf" + json.dumps(solr).encode())  # PowerShell 5 writes one
    assert bom.exit_code == 0 and json.loads(bom.stdout)["response"]["docs"] == docs, bom.output
    empty = runner.invoke(app, ["rerank-response", "crocs", "--model", str(tiny_model)], input="")
    assert empty.exit_code == 2 and "the response is empty" in empty.output
    # no model: refused, not the random-head built-in scrambling the engine's order
    result = runner.invoke(app, ["rerank-response", "crocs"], input=json.dumps(solr))
    assert result.exit_code == 2 and "--model" in result.output
    # a remote ranker that is down: the engine's order, and why
    result = runner.invoke(app, ["rerank-response", "crocs", str(path), "--remote", "http://127.0.0.1:9",
                                 "--timeout", "0.3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["hits"] == es["hits"] and "kept the engine's order" in out["_crossrank"]["fallback"]
