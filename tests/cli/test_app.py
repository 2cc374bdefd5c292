"""The CLI runs the real commands on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from crossrank.cli.app import app

runner = CliRunner()


def test_rerank_json(tiny_model):
    result = runner.invoke(app, ["rerank", "crocs", "crocs kids clog", "aircraft wing", "--model",
                                 str(tiny_model), "--json", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["results"]) == 1 and data["results"][0]["index"] in (0, 1)


def test_rerank_from_stdin_jsonl(tiny_model):
    stdin = '{"title": "crocs", "text": "clog"}\n{"title": "wing", "text": "lift"}\n'
    result = runner.invoke(app, ["rerank", "crocs", "--model", str(tiny_model), "--json"], input=stdin)
    assert result.exit_code == 0, result.output
    assert {r["index"] for r in json.loads(result.stdout)["results"]} == {0, 1}


def test_stdin_with_a_bom_crlf_or_a_broken_json_line(tiny_model):
    """A BOM made the first JSON line score as raw text, CRLF left \\r in documents, and a broken JSON
    line was scored as its own text without a word."""
    args = ["rerank", "crocs", "--model", str(tiny_model), "--json"]
    clean = runner.invoke(app, args, input='{"title": "crocs", "text": "clog"}\nwing lift\n')
    windows = runner.invoke(app, args, input='\ufeff{"title": "crocs", "text": "clog"}\r\nwing lift\r\n')
    assert windows.exit_code == 0 and json.loads(windows.stdout) == json.loads(clean.stdout)
    broken = runner.invoke(app, args, input='{"title": "crocs"}\n{bad json\n')
    assert broken.exit_code == 2 and "stdin line 2" in broken.output
    plain = runner.invoke(app, args, input="{curly} braces in a title\ncrocs clog\n")  # not JSONL: just text
    assert plain.exit_code == 0 and len(json.loads(plain.stdout)["results"]) == 2


def test_export_to_a_file_is_exit_2(tiny_model, tmp_path):
    (tmp_path / "afile").write_text("")
    result = runner.invoke(app, ["export", str(tiny_model), "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "is a file" in result.output


def test_unknown_model_exits_2():
    result = runner.invoke(app, ["rerank", "q", "d", "--model", "./nope"])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_export_then_help_subprocess(tiny_model, tmp_path):
    out = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-m", "crossrank.cli.app", "export", str(tiny_model), "--out",
                           str(out), "--quantize", "int8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.onnx").exists() and (out / "model_int8.onnx").exists()
    # neither transformers' weight-loading bar nor ONNX Runtime's root-logger advice reaches the user
    assert "Loading weights" not in proc.stderr and "pre-processing" not in proc.stderr, proc.stderr
    help_ = subprocess.run([sys.executable, "-m", "crossrank.cli.app", "--help"], capture_output=True,
                           text=True, timeout=60)
    assert "rerank" in help_.stdout and "export" in help_.stdout


def test_export_refuses_a_directory_of_other_files(tiny_model, tmp_path):
    """An export writes config.json, tokenizer.json... by name: into a project or the checkpoint itself it
    replaced the user's files."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"mine": true}')
    result = runner.invoke(app, ["export", str(tiny_model), "--out", str(tmp_path / "mine")])
    assert result.exit_code == 2 and "not a crossrank export" in result.output
    assert (tmp_path / "mine" / "config.json").read_text() == '{"mine": true}'
    for _ in range(2):  # a new directory, then the same one again: an earlier export is replaced
        again = runner.invoke(app, ["export", str(tiny_model), "--out", str(tmp_path / "exp")])
        assert again.exit_code == 0, again.output


def test_first_use_export_is_announced(tiny_model, tmp_path):
    """A first use exports the checkpoint (tens of seconds on a real model): the CLI says so, once."""
    env = {**os.environ, "CROSSRANK_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "crossrank.cli.app", "rerank", "q", "a doc", "--model", str(tiny_model)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert "exporting" in first.stderr and "once" in first.stderr and "WARNING" not in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "exporting" not in again.stderr, again.stderr


def test_bench_runs_on_tiny_model(tiny_model):
    # with the peer: the tiny model has 64 positions, and sentence-transformers was given 512 tokens of
    # each 70-word passage (a crash; on a model with a shorter tokenizer limit, other inputs than ours)
    result = runner.invoke(app, ["bench", "--model", str(tiny_model), "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "passages" in result.stdout and "crossrank onnx int8" in result.stdout
    assert "sentence-transformers (torch)" in result.stdout and "max_length 64" in result.stdout
    zero = runner.invoke(app, ["bench", "--model", str(tiny_model), "--repeats", "0", "--no-peer"])
    assert zero.exit_code == 2 and "repeats must be an integer >= 1" in zero.output


def test_bench_texts_are_distinct_without_the_shared_data(monkeypatch, tmp_path):
    """An installed package finds no Cranfield: the fallback paragraph must still give 100 distinct texts
    (repeats are scored once by crossrank and every time by the peer, flattering crossrank's ratio)."""
    from crossrank.bench import latency

    monkeypatch.setattr(latency, "CRANFIELD", tmp_path / "absent.jsonl")
    words, origin = latency.corpus_words()
    assert "built-in" in origin
    for kind in ("titles", "passages"):
        assert len(set(latency.texts(kind, 100, words))) == 100
    missing = runner.invoke(app, ["bench", "--corpus", str(tmp_path / "nope.jsonl"), "--no-peer"])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output


def test_bench_p90_is_the_nearest_rank_not_the_maximum():
    from crossrank.bench.latency import p50_p90

    assert p50_p90([10.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) == (5.5, 9.0)
    assert p50_p90([3.0]) == (3.0, 3.0)
    assert p50_p90([float(i) for i in range(1, 21)])[1] == 18.0


def test_bench_refuses_an_export_for_the_peer(tiny_model, tmp_path):
    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    export(resolve(str(tiny_model)), tmp_path / "exp")
    result = runner.invoke(app, ["bench", "--model", str(tmp_path / "exp"), "--repeats", "1"])
    assert result.exit_code == 2 and "--no-peer" in result.output


def test_rerank_echoes_lone_surrogates_and_reads_spaced_field_lists(tiny_model):
    stdin = '{"title": "crocs \\ud800", "text": "clog"}\n'
    for extra in (["--json"], []):
        result = runner.invoke(app, ["rerank", "crocs", "--model", str(tiny_model), *extra], input=stdin)
        assert result.exit_code == 0, result.output
    assert json.loads(runner.invoke(app, ["rerank", "crocs", "--model", str(tiny_model), "--json"],
                                    input=stdin).stdout)["results"][0]["document"]["title"] == "crocs \ud800"
    both = runner.invoke(app, ["rerank", "crocs", "--model", str(tiny_model), "--json", "--on", "title, text"],
                         input=stdin)
    title = runner.invoke(app, ["rerank", "crocs", "--model", str(tiny_model), "--json", "--on", "title"],
                          input=stdin)
    assert json.loads(both.stdout)["results"][0]["score"] != json.loads(title.stdout)["results"][0]["score"]
