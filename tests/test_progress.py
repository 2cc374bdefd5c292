"""``crossrank.progress.Bar``: a silent bar on a terminal's behalf becomes plain lines in a log."""

from __future__ import annotations

import io

from rich.console import Console

from crossrank.progress import Bar


def test_off_a_terminal_a_line_per_twentieth():
    out = io.StringIO()
    with Bar(console=Console(file=out, force_terminal=False)) as bar:
        task = bar.add_task("train", total=200, loss=float("nan"))
        for step in range(1, 201):
            bar.update(task, completed=step, loss=1.0 / step)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("train ") and "/" in line]
    assert len(lines) == 20
    assert "━" not in out.getvalue()  # rich's finished bar printed below the lines too, in every log
    assert out.getvalue().endswith(")\n")  # and no empty line after the last one
    assert lines[0].startswith("train 10/200 loss=0.1000 (") and lines[-1].startswith("train 200/200 loss=0.0050")


def test_advance_a_reset_task_and_a_terminal():
    out = io.StringIO()
    with Bar(console=Console(file=out, force_terminal=False)) as bar:
        task = bar.add_task("rows", total=4)
        for _ in range(4):
            bar.advance(task)
        bar.update(task, completed=0, total=2, description="again")
        bar.advance(task, 2)
        unknown = bar.add_task("open-ended", total=None)
        bar.advance(unknown, 5)
    lines = [line.split(" (")[0] for line in out.getvalue().splitlines() if "/" in line and " (" in line]
    assert lines == ["rows 1/4", "rows 2/4", "rows 3/4", "rows 4/4", "again 2/2"]
    shown = io.StringIO()
    with Bar(console=Console(file=shown, force_terminal=True, width=80)) as bar:
        task = bar.add_task("rows", total=4)
        bar.advance(task, 4)
    assert "rows 4/4 (" not in shown.getvalue()
