"""Progress bars for every phase a user waits through (images, latency, calibration).

One helper so that they all look alike and all go to stderr (stdout carries the report). A
bar is a context manager yielding `tick()`; engines' loops call it and know nothing of rich.
`tick(n, description=..., total=..., completed=...)` also moves the bar by n (0: not at all)
and changes what rich's `Progress.update` takes, for a phase whose total grows as it goes.

`manual=True` turns rich's refresh thread off and repaints from `tick()` at most twice a
second: for the latency phase, where a thread repainting the terminal would compete with
the engine for the CPU while it is being timed (ticks happen between timed calls).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


def _noop(n: int = 1, **update: object) -> None:
    return None


@contextlib.contextmanager
def bar(label: str, total: int | None, show: bool = True, manual: bool = False,
        when_full: str | None = None) -> Iterator[Callable[[], None]]:
    """A transient bar; `when_full` replaces the label once the count reaches the total
    (the work that follows the last tick, e.g. "writing the model"), so a full bar is never
    a frozen one."""
    from rich.console import Console

    console = Console(stderr=True)
    if not show or not console.is_terminal:  # a log gets no bar (rich would leave blank lines)
        yield _noop
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        transient=True, auto_refresh=not manual)
    with progress:
        task = progress.add_task(label, total=total)
        state = {"n": 0, "painted": 0.0}

        def tick(n: int = 1, **update: object) -> None:
            state["n"] = int(update["completed"]) if "completed" in update else state["n"] + n
            if "total" in update:
                state["total"] = update["total"]
            end = state.get("total", total)
            full = end is not None and state["n"] >= end
            if full and when_full:
                update["description"] = when_full
            progress.update(task, **({} if "completed" in update else {"advance": n}), **update)
            now = time.monotonic()
            if manual and (full or now - state["painted"] >= 0.5):
                progress.refresh()
                state["painted"] = now

        yield tick
