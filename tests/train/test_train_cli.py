"""``crossrank train`` end to end on tiny judged collections: groups mined by the hybrid, a held-out
evaluation, an ONNX export the engine loads, a model card; and the refusal to hold out what it trains on."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crossrank.cli.app import app

pytest.importorskip("torch")
runner = CliRunner()


def test_train_with_held_out_collection(tiny_model, toy_collections, tmp_path):
    train_dir, held_out = toy_collections
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "--data", str(train_dir), "--pseudo", str(train_dir), "--pseudo-count", "8",
                                 "--held-out", str(held_out), "--out", str(out), "--base", str(tiny_model),
                                 "--steps", "4", "--groups-per-step", "2", "--group-size", "4", "--max-length", "32",
                                 "--distill", "0.5", "--eval-every", "2", "--checkpoint-every", "2", "--quiet",
                                 "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "model_int8.onnx").is_file()
    card = (out / "README.md").read_text()
    assert "crossrank train --out" in card and "--data" in card and "| hybrid (no rerank) |" in card and "| 2 |" in card
    assert "held-out" in result.output and "ndcg@10" in result.output

    from crossrank import CrossEncoder

    scores = CrossEncoder(str(out / "onnx")).score([("crocs best", "crocs clog"), ("wing", "heat")])
    assert scores.shape == (2,)


def test_training_on_the_held_out_collection_is_refused(tiny_model, toy_collections, tmp_path):
    train_dir, _ = toy_collections
    result = runner.invoke(app, ["train", "--data", str(train_dir), "--held-out", str(train_dir), "--out",
                                 str(tmp_path / "m"), "--base", str(tiny_model), "--steps", "1"])
    assert result.exit_code == 2 and "both trained on and held out" in result.output
    nothing = runner.invoke(app, ["train", "--out", str(tmp_path / "m"), "--base", str(tiny_model)])
    assert nothing.exit_code == 2 and "no training data" in nothing.output
    # found before any group is built: an --out that is a file, an unknown quantization, negative counts
    (tmp_path / "a-file").write_text("")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "README.md").write_text("mine")  # the model card's name: `--out .` overwrote it
    for args, why in ((["--out", str(tmp_path / "a-file")], "is a file"),
                      (["--out", str(tmp_path / "project")], "not a crossrank training directory"),
                      (["--out", str(tmp_path / "m"), "--quantize", "int4"], "unknown quantization"),
                      (["--out", str(tmp_path / "m"), "--pseudo", str(train_dir), "--pseudo-count", "-5"],
                       "pseudo_count"),
                      (["--out", str(tmp_path / "m"), "--checkpoint-every", "-1"], "checkpoint_every"),
                      (["--out", str(tmp_path / "m"), "--teacher", str(tiny_model)], "set --distill above 0")):
        refused = runner.invoke(app, ["train", "--data", str(train_dir), "--base", str(tiny_model), *args])
        assert refused.exit_code == 2 and why in refused.output, refused.output
    assert (tmp_path / "project" / "README.md").read_text() == "mine"


def test_adapt_on_a_plain_jsonl_corpus(tiny_model, toy_collections, tmp_path):
    import json

    _, held_out = toy_collections
    corpus = tmp_path / "corpus.jsonl"
    rows = [json.loads(line) for line in (held_out / "corpus.jsonl").read_text().splitlines()]
    # ids under a name crossrank does not guess: --id-field names it
    corpus.write_text("\n".join(json.dumps({"key": r["_id"], "title": r["title"], "text": r["text"]}) for r in rows))
    out = tmp_path / "adapted"
    result = runner.invoke(app, ["adapt", str(corpus), "--out", str(out), "--base", str(tiny_model), "--steps", "2",
                                 "--pseudo-count", "6", "--held-out", str(held_out), "--quiet", "--id-field", "key"])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert "crossrank adapt" in card and str(corpus) in card and "| hybrid (no rerank) |" in card
    assert (out / "onnx" / "model.onnx").is_file()


def test_calibrate_writes_a_map_the_engine_uses(tiny_model, toy_collections, tmp_path):
    import json
    import shutil

    from crossrank import CrossEncoder
    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    export(resolve(str(model)), model / "onnx")  # as `crossrank train` leaves it: weights plus their export
    train_dir, held_out = toy_collections
    result = runner.invoke(app, ["calibrate", str(model), str(train_dir), str(held_out), "--method", "isotonic",
                                 "--window", "10", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # the export of these weights is calibrated too, so both score alike
    assert report["also"] == str(model / "onnx" / "calibration.json")
    pair = [("crocs best", "crocs clog")]
    assert CrossEncoder(str(model / "onnx")).score(pair) == pytest.approx(CrossEncoder(str(model)).score(pair),
                                                                          abs=1e-5)
    assert report["queries"] == 10 and report["pairs"] == 100 and 0 <= report["held_out_ece_calibrated"] <= 1
    stored = json.loads((model / "calibration.json").read_text())
    assert stored["method"] == "isotonic" and stored["collections"] == [train_dir.name, held_out.name]
    scores = CrossEncoder(str(model)).score([("crocs best", "crocs clog"), ("wing", "heat")])
    assert ((scores >= 0) & (scores <= 1)).all()
    missing = runner.invoke(app, ["calibrate", str(tmp_path / "nope"), str(train_dir)])
    assert missing.exit_code == 2 and "not a local model directory" in missing.output


def test_distillation_from_a_teacher_model(tiny_model, toy_collections):
    import numpy as np

    from crossrank import CrossEncoder
    from crossrank.train.recipe import build_groups, teach

    train_dir, _ = toy_collections
    groups = build_groups(judged=[train_dir], group_size=4, depth=20)
    taught = teach(groups, str(tiny_model))
    want = CrossEncoder(str(tiny_model), activation="raw").score([(groups[0].query, d) for d in groups[0].docs])
    np.testing.assert_allclose(taught[0].teacher, want, atol=1e-5)
    assert [g.labels for g in taught] == [g.labels for g in groups] and taught[0].teacher != groups[0].teacher


def test_progress_is_plain_lines_when_not_on_a_terminal(tiny_model, toy_collections, tmp_path):
    """Run under nohup or CI, a bar would draw nothing until the end; the run says how it goes instead."""
    train_dir, _ = toy_collections
    result = runner.invoke(app, ["train", "--data", str(train_dir), "--out", str(tmp_path / "m"), "--base",
                                 str(tiny_model), "--steps", "4", "--groups-per-step", "2", "--group-size", "4",
                                 "--max-length", "32"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("train ") and " loss=" in line]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]


def test_calibrate_refuses_a_collection_named_twice(tiny_model, toy_collections, tmp_path):
    """Its queries could land in both the fitting half and the held-out half: the reported error leaked."""
    import shutil

    train_dir, _ = toy_collections
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    result = runner.invoke(app, ["calibrate", str(model), str(train_dir), str(train_dir)])
    assert result.exit_code == 2 and "named twice" in result.output
