"""Batch scoring end to end on real files: formats, equality with direct scoring, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossrank import CrossEncoder, InputError
from crossrank.batch import Job, score_file
from crossrank.batch.files import read_rows, write_rows
from crossrank.batch.job import model_identity
from crossrank.cli.app import app

DOCS = ["heat flow in a slab", "crocs kids clog", "boundary layer on a wing", "red running shoe", "lift data"]


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        q = ["heat transfer", "kids shoe", "wing lift"][i % 3]
        if i % 2:
            rows.append({"id": i, "query": q, "text": DOCS[i % len(DOCS)]})
        else:
            rows.append({"id": i, "query": q, "candidates": DOCS[i % 3:], "tag": {"k": i}})
    return rows


@pytest.fixture(scope="module")
def ce(tiny_model) -> CrossEncoder:
    return CrossEncoder(str(tiny_model), backend="onnx")


def _check_against_engine(ce: CrossEncoder, rows: list[dict], out: list[dict]) -> None:
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for src, got in zip(rows, out, strict=True):
        assert {k: got[k] for k in src} == src  # every input field kept as it was
        if "text" in src:
            assert got["score"] == pytest.approx(float(ce.score([(src["query"], src["text"])])[0]), abs=1e-6)
        else:
            want = ce.score([(src["query"], c) for c in src["candidates"]])
            np.testing.assert_allclose(got["scores"], want, atol=1e-6)
            assert got["ranking"] == np.argsort(-want, kind="stable").tolist()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_scores_every_row_like_the_engine(tmp_path, tiny_model, ce, suffix):
    rows = _rows(23)
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    write_rows(src, rows)
    report = score_file(src, dst, model=str(tiny_model), part_rows=5, progress=False)
    assert (report.rows, report.parts, report.parts_resumed) == (23, 5, 0)
    _check_against_engine(ce, rows, read_rows(dst))
    assert not (tmp_path / f"out{suffix}.parts").exists()


def test_process_pool_gives_identical_results(tmp_path, tiny_model):
    write_rows(tmp_path / "in.jsonl", _rows(30))
    score_file(tmp_path / "in.jsonl", tmp_path / "one.jsonl", model=str(tiny_model), part_rows=4, progress=False)
    score_file(tmp_path / "in.jsonl", tmp_path / "two.jsonl", model=str(tiny_model), part_rows=4, workers=2,
               progress=False)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_resume_skips_finished_parts(tmp_path, tiny_model):
    """A part finished before a crash is not scored again: we plant a marker in it and find it in the output."""
    rows = _rows(12)
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(src, rows)
    settings = {"model": str(tiny_model), "backend": "auto", "quantize": None, "max_length": None, "on": None,
                "model_content": model_identity(str(tiny_model))}
    job = Job(src, dst, 4, settings)
    parts, n = job.stage()
    assert (parts, n) == (3, 12)
    write_rows(job.out_path(1), [{**r, "score": -123.0} for r in rows[4:8]])  # "finished before the crash"
    report = score_file(src, dst, model=str(tiny_model), part_rows=4, progress=False)
    assert report.parts_resumed == 1
    out = read_rows(dst)
    assert [r["score"] for r in out[4:8]] == [-123.0] * 4
    assert "scores" in out[0] and out[0]["id"] == 0


def test_a_job_whose_model_changed_since_the_crash_is_refused(tmp_path, tiny_model):
    """The same --model path with other weights (or a calibration added) would finish the output with a
    second model's scores beside the first's."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(src, _rows(6))
    settings = {"model": str(model), "backend": "auto", "quantize": None, "max_length": None, "on": None}
    crashed = Job(src, dst, 2, {**settings, "model_content": model_identity(str(model))})
    crashed.stage()
    crashed.out_path(0).write_text("")  # the crashed run had scored its first part
    (model / "calibration.json").write_text('{"method": "platt", "params": {"a": 2.0, "b": 0.0}}')
    with pytest.raises(InputError, match="unfinished job"):
        score_file(src, dst, model=str(model), part_rows=2, progress=False)


def test_leftover_job_with_other_settings_is_refused(tmp_path, tiny_model):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_rows(src, _rows(6))
    leftover = Job(src, dst, 2, {"model": "something-else"})
    leftover.stage()
    leftover.out_path(0).write_text("")  # it had scored a part: there is work to lose
    with pytest.raises(InputError, match="unfinished job"):
        score_file(src, dst, model=str(tiny_model), part_rows=2, progress=False)
    report = score_file(src, dst, model=str(tiny_model), part_rows=2, restart=True, progress=False)
    assert report.rows == 6


def test_a_job_that_failed_before_scoring_a_part_does_not_block_the_fixed_input(tmp_path, tiny_model):
    """A bad row fails the job after staging; once the input was fixed, the rerun asked for --restart."""
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = _rows(4)
    rows[1] = {"id": 1, "query": "", "text": "empty query"}
    write_rows(src, rows)
    with pytest.raises(InputError, match="empty"):
        score_file(src, dst, model=str(tiny_model), part_rows=10, progress=False)
    write_rows(src, _rows(4))
    assert score_file(src, dst, model=str(tiny_model), part_rows=10, progress=False).rows == 4


@pytest.mark.parametrize(("row", "message"), [
    ({"text": "x"}, "row 1: 'query'"),
    ({"query": "q"}, "needs 'text' or 'candidates'"),
    ({"query": "q", "candidates": "not a list"}, "must be a list"),
    ({"query": "q", "text": None}, "row 1 text is None"),
])
def test_bad_rows_name_the_row(tmp_path, tiny_model, row, message):
    write_rows(tmp_path / "in.jsonl", [row])
    with pytest.raises(InputError, match=message):
        score_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=str(tiny_model), progress=False)


def test_bad_files(tmp_path, tiny_model):
    (tmp_path / "in.jsonl").write_text('{"query": "q", "text": "t"}\nnot json\n')
    with pytest.raises(InputError, match=r"in.jsonl:2: not JSON"):
        score_file(tmp_path / "in.jsonl", tmp_path / "o.jsonl", model=str(tiny_model), progress=False)
    (tmp_path / "in.csv").write_text("query,text\nq,t\n")
    with pytest.raises(InputError, match="unknown format"):
        score_file(tmp_path / "in.csv", tmp_path / "o.jsonl", progress=False)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="no rows"):
        score_file(tmp_path / "empty.jsonl", tmp_path / "o.jsonl", model=str(tiny_model), progress=False)


def test_a_bad_out_or_model_setting_is_refused_before_anything_is_staged(tmp_path, tiny_model):
    """--out in a missing directory was a FileNotFoundError; a directory as --out failed after scoring every
    row; a typo in --backend left staged parts that blocked the corrected command."""
    write_rows(tmp_path / "in.jsonl", _rows(4))
    (tmp_path / "outdir.jsonl").mkdir()
    for out, kwargs, why in ((tmp_path / "nodir" / "o.jsonl", {}, "does not exist"),
                             (tmp_path / "outdir.jsonl", {}, "is a directory"),
                             (tmp_path / "o.jsonl", {"backend": "foo"}, "unknown backend"),
                             (tmp_path / "o.jsonl", {"quantize": "int4"}, "unknown quantization")):
        with pytest.raises(InputError, match=why):
            score_file(tmp_path / "in.jsonl", out, model=str(tiny_model), progress=False, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "outdir.jsonl"]
    assert score_file(tmp_path / "in.jsonl", tmp_path / "o.jsonl", model=str(tiny_model), progress=False).rows == 4


def test_cli_batch(tmp_path, tiny_model):
    from typer.testing import CliRunner

    write_rows(tmp_path / "in.jsonl", _rows(7))
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "o.parquet"),
                                      "--model", str(tiny_model), "--part-rows", "3"])
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "o.parquet")) == 7
    assert "scoring rows 3/7 (" in result.output and "scoring rows 7/7 (" in result.output  # a log's progress
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "not found" in result.output
    result = CliRunner().invoke(app, ["batch", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "is a directory, not a file" in result.output  # was "unknown format ''"
    assert json.loads(json.dumps(read_rows(tmp_path / "o.parquet")[0]))["id"] == 0
    short = CliRunner().invoke(app, ["batch", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "s.jsonl"),
                                     "--model", str(tiny_model), "--max-length", "8", "--quiet"])
    assert short.exit_code == 0, short.output
    want = CrossEncoder(str(tiny_model), max_length=8).score([(r["query"], r["text"]) for r in _rows(7) if "text" in r])
    got = [r["score"] for r in read_rows(tmp_path / "s.jsonl") if "text" in r]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_text_that_is_not_clean_utf8_is_scored_and_written(tmp_path, tiny_model, suffix):
    (tmp_path / "in.jsonl").write_bytes(b'{"query": "q", "text": "a \\ud800"}\n{"query": "q", "text": "b \xff"}\n')
    score_file(tmp_path / "in.jsonl", tmp_path / f"out{suffix}", model=str(tiny_model), progress=False)
    out = read_rows(tmp_path / f"out{suffix}")
    assert len(out) == 2 and all(np.isfinite(r["score"]) for r in out)
    if suffix == ".jsonl":  # JSON Lines gives back exactly what was read
        assert out[0]["text"] == "a \ud800"
        assert (tmp_path / "out.jsonl").read_bytes().splitlines()[1].startswith(b'{"query": "q", "text": "b \xff"')


def test_inputs_parquet_cannot_carry_are_refused_before_scoring(tmp_path, tiny_model):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    write_rows(tmp_path / "mixed.jsonl", [{"id": "0", "query": "q", "text": "a"}, {"id": 1, "query": "q", "text": "b"}])
    with pytest.raises(InputError, match="column .id. cannot be stored in Parquet"):
        score_file(tmp_path / "mixed.jsonl", tmp_path / "out.parquet", model=str(tiny_model), progress=False)
    assert not (tmp_path / "out.parquet.parts" / "out").exists()  # refused before any part was scored
    pq.write_table(pa.table({"query": ["q"], "text": ["a"], "at": [datetime.datetime(2026, 11, 30)],
                             "x": [float("nan")]}), tmp_path / "typed.parquet")
    with pytest.raises(InputError, match="column 'at' holds a datetime"):
        score_file(tmp_path / "typed.parquet", tmp_path / "o.jsonl", model=str(tiny_model), progress=False,
                   restart=True)
    pq.write_table(pa.table({"query": ["q"], "text": ["a"], "x": [float("nan")]}), tmp_path / "nan.parquet")
    score_file(tmp_path / "nan.parquet", tmp_path / "nan.jsonl", model=str(tiny_model), progress=False)
    assert json.loads((tmp_path / "nan.jsonl").read_text())["x"] is None  # JSON has no NaN


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path, tiny_model):
    from crossrank.batch.job import _exclusive

    write_rows(tmp_path / "in.jsonl", _rows(3))
    # _exclusive is what a running job holds
    with _exclusive(tmp_path / "o.jsonl.parts"), pytest.raises(InputError, match="another run is writing o.jsonl"):
        score_file(tmp_path / "in.jsonl", tmp_path / "o.jsonl", model=str(tiny_model), progress=False)
    score_file(tmp_path / "in.jsonl", tmp_path / "o.jsonl", model=str(tiny_model), progress=False)
    assert len(read_rows(tmp_path / "o.jsonl")) == 3


def test_an_unreachable_ray_address_is_refused_before_staging(tmp_path, tiny_model):
    """Ray retries an unreachable address for minutes (after the parts were staged) before it gives up."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_rows(tmp_path / "in.jsonl", _rows(2))
    for address, why in ((f"127.0.0.1:{port}", "cannot reach"), (f"ray://127.0.0.1:{port}", "cannot reach"),
                         ("head-without-port", "not host:port")):
        with pytest.raises(InputError, match=why):
            score_file(tmp_path / "in.jsonl", tmp_path / "o.jsonl", model=str(tiny_model), ray=True,
                       ray_address=address, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_fields_scoring_writes_are_refused_not_overwritten(tmp_path, tiny_model):
    """A first-stage `score` (or `scores`/`ranking` on a candidates row) vanished under the model's."""
    for row, field in (({"query": "q", "text": "t", "score": 12.7}, "'score'"),
                       ({"query": "q", "candidates": ["a"], "ranking": [0]}, "'ranking'")):
        write_rows(tmp_path / "in.jsonl", [{"query": "q", "text": "fine"}, row])
        with pytest.raises(InputError, match=f"row 2: already has {field}"):
            score_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=str(tiny_model), progress=False)
    # a null in a column-oriented file is no value: a text row's empty `scores` column is fine
    write_rows(tmp_path / "in.jsonl", [{"query": "q", "text": "t", "scores": None, "score": None}])
    out = score_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=str(tiny_model), progress=False)
    assert out.rows == 1


def test_parquet_refusals_come_before_scoring(tmp_path, tiny_model):
    """Column names that are not UTF-8 and integers past 64 bits crashed at assembly (every part scored,
    and again on every rerun) or with a traceback."""
    (tmp_path / "key.jsonl").write_bytes(b'{"query": "q", "text": "t", "note\\ud800": 1}\n')
    (tmp_path / "big.jsonl").write_text('{"query": "q", "text": "t", "id": 123456789012345678901234567890}\n')
    for name, message in (("key", "column name"), ("big", "column 'id' cannot be stored")):
        with pytest.raises(InputError, match=message):
            score_file(tmp_path / f"{name}.jsonl", tmp_path / f"{name}.parquet", model=str(tiny_model),
                       progress=False)
        assert not list((tmp_path / f"{name}.parquet.parts").glob("out/*"))


def test_a_bad_row_stops_a_pool_before_any_part_is_scored(tmp_path, tiny_model):
    """With several workers a bad row surfaced only after every other part was scored (then thrown away)."""
    rows = [{"id": i, "query": "q", "text": f"doc {i}"} for i in range(40)]
    rows[37]["query"] = ""
    write_rows(tmp_path / "in.jsonl", rows)
    with pytest.raises(InputError, match="row 38: 'query'"):
        score_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=str(tiny_model), workers=2, part_rows=2,
                   progress=False)
    assert not list((tmp_path / "out.jsonl.parts").glob("out/*"))


def test_a_stale_ray_address_in_the_environment_is_refused_at_once(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # Ray retried it for minutes after staging
    write_rows(tmp_path / "in.jsonl", _rows(2))
    with pytest.raises(InputError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        score_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=str(tiny_model), ray=True, progress=False)


def test_sigterm_stops_the_workers_and_the_job_now(tmp_path, tiny_model):
    """Leaving the pool waited for every queued part, and workers outlived a killed parent."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    write_rows(tmp_path / "in.jsonl", [{"id": i, "query": "q", "text": f"doc {i}"} for i in range(3000)])
    proc = subprocess.Popen([sys.executable, "-m", "crossrank.cli.app", "batch", str(tmp_path / "in.jsonl"),
                             "--out", str(tmp_path / "out.jsonl"), "--model", str(tiny_model), "--workers", "2",
                             "--part-rows", "1", "--quiet"], stderr=subprocess.PIPE, text=True)
    done = tmp_path / "out.jsonl.parts" / "out"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(done.glob("part-*"))) < 10:
        time.sleep(0.2)
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                 text=True).stdout.split()]
    assert len(list(done.glob("part-*"))) >= 10 and children
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    scored = len(list(done.glob("part-*")))
    time.sleep(2)
    assert len(list(done.glob("part-*"))) == scored < 3000  # nothing scores after the job ended

    def alive(pid: int) -> bool:  # running, not a zombie awaiting its (gone) parent
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    assert not [pid for pid in children if alive(pid)]
