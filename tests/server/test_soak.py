"""The soak script, short: concurrent mixed load on a real server subprocess, zero errors, bounded memory.

The full run (concurrency 32, 5 minutes, built-in MiniLM) is ``python scripts/soak.py``; docs/reliability.md
records its figures.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def test_short_soak_has_no_errors(tiny_model, capsys):
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    code = soak.main(["--model", str(tiny_model), "--duration", "12", "--warmup", "4", "--concurrency", "8",
                      "--max-growth", "0.25"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["errors"] == 0 and report["server_alive"], report
    assert report["requests"] > 20 and report["p99_ms"] >= report["p50_ms"]
    assert code == 0, report
