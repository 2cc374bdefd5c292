"""Run ``crossrank serve`` as a child process on loopback and wait until it is ready.

For load tests, soak runs and integration tests (crossrank's own, and users' who test against a real
server): the server runs in its own process exactly as deployed, on a free port of 127.0.0.1, with its
output in a log file the caller can read. The child imports the same crossrank as the caller.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crossrank.errors import CrossrankError


class ServerStartError(CrossrankError):
    """The server exited or never became ready; the message ends with its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (graceful: in-flight requests finish), then kill if it outlives ``timeout``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(args: Sequence[str] = (), *, log: Path, env: Mapping[str, str] | None = None,
          timeout: float = 300) -> ServerProcess:
    """``crossrank serve ARGS --port P`` on a free port; returns once ``/ready`` answers 200."""
    import httpx

    import crossrank

    port = free_port()
    child_env = {**os.environ, **(env or {})}
    here = str(Path(crossrank.__file__).resolve().parents[1])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (here, child_env.get("PYTHONPATH")) if p)
    child_env.setdefault("HF_HUB_OFFLINE", "1")
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "crossrank.cli.app", "serve", *args, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=child_env)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise ServerStartError(f"crossrank serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"crossrank serve was not ready in {timeout:.0f} s:\n"
                                       f"{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{server.url}/ready", timeout=5).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    except BaseException:
        # Not ready, or the caller interrupted (Ctrl-C, a signal turned into SystemExit): the child is
        # ours to stop, or it outlives the caller.
        server.stop(10)
        raise
