"""Snapshots of the key screens at 80x24 and 120x40 (fake manifest and fixed run directories).

Nothing on these screens depends on the clock, the machine or random ids. After an
intended change of the look: ``pytest tests/test_tui_snapshots.py --snapshot-update``
and review the SVGs under tests/__snapshots__/.
"""

from __future__ import annotations

import pytest

from tui.screens.main import MainScreen
from tui.screens.run import RunScreen
from tui.testing import make_app, wait_for
from tui.widgets.runs import RunsPane

SIZES = [(80, 24), (120, 40)]


async def runs_loaded(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    assert await wait_for(pilot, lambda: app.screen.query_one(RunsPane).table.row_count == 4)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_experiments_screen(snap_compare, tmp_path, size):
    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=runs_loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, tmp_path, size):
    async def before(pilot):
        await runs_loaded(pilot)
        await pilot.press("3", "space")  # select the newest run

    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_view_curves(snap_compare, tmp_path, size):
    async def before(pilot):
        await runs_loaded(pilot)
        await pilot.press("3", "down", "down", "enter")  # the finished pretrain run
        app = pilot.app
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.state is not None)
        await pilot.pause(0.2)

    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=before)
