"""``crossrank serve --model``: one model from the command line, no YAML, as a real process on loopback."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from crossrank.cli.app import app
from crossrank.server import launch


def test_serve_one_model_from_the_command_line_keeps_the_config_limits(tiny_model, tmp_path):
    config = tmp_path / "limits.yaml"
    config.write_text("models:\n  other: ./not-loaded\nserver:\n  max_documents: 3\n")
    with launch.start(["--config", str(config), "--model", str(tiny_model), "--quantize", "int8"],
                      log=tmp_path / "serve.log", timeout=120) as server:
        url = server.url
        (model,) = httpx.get(f"{url}/info").json()["models"]
        # Named by the directory, not its path; the config's own model list is replaced.
        assert model["name"] == tiny_model.name and model["precision"] == "int8"
        ok = httpx.post(f"{url}/v1/rerank", json={"model": tiny_model.name, "query": "crocs",
                                                  "documents": ["crocs kids clog", "aircraft wing"]})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 2
        default = httpx.post(f"{url}/v1/rerank", json={"query": "crocs", "documents": ["clog"]})
        assert default.status_code == 200
        assert httpx.post(f"{url}/v1/rerank", json={"model": "other", "query": "q", "documents": ["d"]}
                          ).status_code == 404
        too_many = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a", "b", "c", "d"]})
        assert too_many.status_code in (400, 413, 422) and "3" in too_many.text


def test_quantize_without_model_is_a_usage_error():
    result = CliRunner().invoke(app, ["serve", "--quantize", "int8"])
    assert result.exit_code == 2 and "--model" in result.output


def test_ray_scaling_is_checked_before_a_cluster_starts(tiny_model):
    """Ray Serve refuses 0 replicas or max < min only after ray.init and serve.start; crossrank says so first."""
    for extra, why in ((["--replicas", "0"], "replicas must be an integer >= 1"),
                       (["--replicas", "3", "--max-replicas", "2"], "max_replicas must be an integer >= min")):
        result = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), "--ray", *extra])
        assert result.exit_code == 2 and why in result.output, result.output
    for extra in (["--replicas", "2"], ["--ray-address", "auto"]):  # silently a single process before
        result = CliRunner().invoke(app, ["serve", "--model", str(tiny_model), *extra])
        assert result.exit_code == 2 and "go with --ray" in result.output, result.output
