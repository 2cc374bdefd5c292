"""Progress for long work that also reads well in a log file.

rich's bar redraws in place on a terminal; with its output redirected (nohup, CI, ``> log``) it draws
nothing until the end, so a 30-minute training or a million-row batch run looks hung. ``Bar`` is rich's
``Progress`` that, off a terminal, prints one plain line each time a task passes another twentieth of
its total: ``train 40/200 loss=0.8123 (143 s)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import Progress, TaskID

from crossrank.errors import InputError


class Bar(Progress):
    """rich's ``Progress``; off a terminal, a line per twentieth of each task instead of a silent bar."""

    STEPS = 20

    def __init__(self, *columns: Any, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self._lines = not self.console.is_terminal and not self.disable
        if self._lines:  # the lines say it all: rich would print the finished bars below them too
            self.live.transient = True
        self._said: dict[TaskID, int] = {}
        self._started = time.perf_counter()

    def stop(self) -> None:
        if self._lines:  # rich ends a non-interactive display with an empty line: the lines need none
            self.live.stop()
            return
        super().stop()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._say(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._say(task_id)

    def _say(self, task_id: TaskID) -> None:
        if not self._lines:
            return
        with self._lock:
            task = self._tasks[task_id]
            if not task.total:
                return
            twentieth = int(self.STEPS * min(task.completed, task.total) / task.total)
            said = self._said.get(task_id, 0)
            self._said[task_id] = twentieth
            if twentieth <= said:  # nothing new, or the task was reset to count again
                return
            fields = "".join(f" {k}={v:.4f}" if isinstance(v, float) else f" {k}={v}" for k, v in task.fields.items())
            line = (f"{task.description} {task.completed:g}/{task.total:g}{fields} "
                    f"({time.perf_counter() - self._started:.0f} s)")
        self.console.print(line, soft_wrap=True, highlight=False, markup=False)


#: Called with (done, total) as work advances.
Callback = Callable[[int, int], None]


@contextmanager
def reporter(progress: bool | Callback | None, unit: str) -> Iterator[Callback | None]:
    """What a ``progress=`` argument asks for: ``True`` is a bar on stderr (gone when the work is, on a
    terminal; a line per twentieth off one), a callable is called as is, ``False``/``None`` is nothing."""
    if progress is None or progress is False:
        yield None
        return
    if callable(progress):
        yield progress
        return
    if progress is not True:
        raise InputError(f"progress must be True, False or a callable(done, total), got {type(progress).__name__}")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    with Bar(TextColumn(f"{unit}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
             console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(unit, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
