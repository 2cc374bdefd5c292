"""Security: requests can only pick configured models; keys never reach the logs; loopback by default;
weights never come from pickle."""

from __future__ import annotations

import logging

import httpx
import pytest

from crossrank.server.config import config_from_dict


@pytest.mark.parametrize("name", ["/etc/passwd", "../../tiny", "cross-encoder/ms-marco-MiniLM-L6-v2",
                                  "minilm-l6-untrained", "TINY", "tiny\x00", "~/.cache/crossrank"])
def test_requests_cannot_name_paths_or_hub_ids(server, tiny_model, name):
    before = {n: e.state for n, e in server.app.state.registry.entries.items()}
    for route, body in [("/v2/rerank", {"model": name, "query": "q", "documents": ["d"]}),
                        ("/rerank", {"model": name, "query": "q", "texts": ["d"]}),
                        ("/score", {"model": name, "query": "q", "chunks": ["d"]})]:
        r = httpx.post(f"{server.url}{route}", json=body)
        assert r.status_code == 404, (route, name, r.text)
    metarank = httpx.post(f"{server.url}/inference/cross/{str(tiny_model).lstrip('/')}",
                          json={"input": [{"query": "q", "text": "d"}]})
    assert metarank.status_code == 404
    assert {n: e.state for n, e in server.app.state.registry.entries.items()} == before  # nothing loaded


def test_api_keys_never_logged(start, tiny_model, caplog):
    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1}},
                               "server": {"api_keys": ["k3y-that-must-not-leak"]}})
    caplog.set_level(logging.DEBUG)
    with start(config) as srv:
        for key in ("k3y-that-must-not-leak", "wrong-k3y-attempt"):
            httpx.post(f"{srv.url}/v2/rerank", json={"model": "tiny", "query": "q", "documents": ["d"]},
                       headers={"authorization": f"Bearer {key}"})
        httpx.get(f"{srv.url}/info", headers={"x-api-key": "k3y-that-must-not-leak"})
    assert "k3y-that-must-not-leak" not in caplog.text and "wrong-k3y-attempt" not in caplog.text
    assert "status=200" in caplog.text  # the request lines were logged, without the key


def test_loopback_by_default():
    assert config_from_dict({}).server.host == "127.0.0.1"


def test_pickle_weights_are_read_only_through_weights_only(tiny_model, tmp_path):
    """A checkpoint with only ``pytorch_model.bin`` holding arbitrary pickled objects is refused."""
    import pickle
    import shutil

    from crossrank import CrossEncoder
    from crossrank.errors import CrossrankError

    evil = tmp_path / "evil"
    shutil.copytree(tiny_model, evil)
    (evil / "model.safetensors").unlink()

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('pwned')",))

    (evil / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(CrossrankError):
        CrossEncoder(str(evil), backend="torch")
    assert not (tmp_path / "pwned").exists()


def test_keys_are_trimmed_and_non_ascii_keys_match_their_utf8_bytes(start, tiny_model):
    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1}},
                               "server": {"api_keys": ["secret\n", "clé"]}})
    body = {"query": "q", "texts": ["d"]}
    with start(config) as srv:
        for key, status in (("secret", 200), ("clé", 200), ("cle", 401), ("secret\n".strip() + "x", 401)):
            headers = {"Authorization": f"Bearer {key}".encode()}
            assert httpx.post(f"{srv.url}/rerank", json=body, headers=headers).status_code == status, key


def test_a_model_named_outside_latin1_is_served_and_its_header_percent_encoded(start, tiny_model):
    """HTTP header values are Latin-1: a model called 模型 made every finished request a 500 (x-model-id)."""
    from urllib.parse import unquote

    config = config_from_dict({"models": {"模型": {"model": str(tiny_model), "backend": "onnx", "threads": 1}}})
    with start(config) as srv:
        for route, body in (("/score", {"query": "a", "chunks": ["b"], "model": "模型"}),
                            ("/inference/cross/模型", {"input": [{"query": "a", "text": "b"}]}),
                            ("/rerank", {"query": "a", "texts": ["b"], "model": "模型"})):
            answer = httpx.post(f"{srv.url}{route}", json=body)
            assert answer.status_code == 200, (route, answer.text)
            assert unquote(answer.headers["x-model-id"]) == "模型"
