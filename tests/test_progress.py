"""The one progress-bar helper (harness/progress.py): every bar of qparity goes through it."""

from __future__ import annotations

import io

from rich.console import Console

import harness.progress as progress


def test_a_bar_counts_changes_its_total_and_says_when_full(monkeypatch):
    seen = []

    import rich.progress as rp

    real_update = rp.Progress.update

    def update(self, task, **kw):
        seen.append(kw)
        return real_update(self, task, **kw)

    monkeypatch.setattr(rp.Progress, "update", update)
    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress.bar("work", 3, when_full="finishing") as tick:
        tick()
        tick(0, description="step b")
        tick(0, total=5)
        tick(4)
        tick(0, completed=5)
    assert seen[0] == {"advance": 1}
    assert seen[1] == {"advance": 0, "description": "step b"}
    assert seen[2] == {"advance": 0, "total": 5}
    assert seen[3] == {"advance": 4, "description": "finishing"}  # 5 of 5: full
    assert seen[4] == {"completed": 5, "description": "finishing"}


def test_no_bar_where_it_is_not_wanted_or_not_a_terminal():
    with progress.bar("work", 3, show=False) as tick:
        tick()
        tick(0, description="x", total=4)  # the same calls, doing nothing
