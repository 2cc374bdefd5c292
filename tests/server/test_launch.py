"""``crossrank.server.launch``: a server that cannot start is an error carrying its log, not a hang."""

from __future__ import annotations

import pytest

from crossrank.server import launch


def test_a_server_that_exits_raises_with_its_log(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("modles: {}\n")  # a typo the server refuses
    with pytest.raises(launch.ServerStartError, match="modles"):
        launch.start(["--config", str(config)], log=tmp_path / "serve.log", timeout=60)


def test_free_ports_are_bindable():
    import socket

    port = launch.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_an_interrupted_start_stops_its_child(monkeypatch, tmp_path):
    """Ctrl-C (or a SIGTERM turned into SystemExit) while waiting for /ready left the child serving, orphaned."""
    import subprocess

    import httpx

    children: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def spawn(*args, **kwargs):
        children.append(popen(*args, **kwargs))
        return children[-1]

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", spawn)
    monkeypatch.setattr(httpx, "get", interrupted)
    with pytest.raises(KeyboardInterrupt):
        launch.start(["--model", "minilm-l6-untrained"], log=tmp_path / "serve.log", timeout=60)
    assert len(children) == 1 and children[0].poll() is not None
