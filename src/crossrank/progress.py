"""Progress for long work that also reads well in a log file.

rich's bar redraws in place on a terminal; with its output redirected (nohup, CI, ``> log``) it draws
nothing until the end, so a 30-minute training or a million-row batch run looks hung. ``Bar`` is rich's
``Progress`` that, off a terminal, prints one plain line each time a task passes another twentieth of
its total: ``train 40/200 loss=0.8123 (143 s)``.
"""

from __future__ import annotations

import time
from typing import Any

from rich.progress import Progress, TaskID


class Bar(Progress):
    """rich's ``Progress``; off a terminal, a line per twentieth of each task instead of a silent bar."""

    STEPS = 20

    def __init__(self, *columns: Any, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self._lines = not self.console.is_terminal and not self.disable
        self._said: dict[TaskID, int] = {}
        self._started = time.perf_counter()

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
