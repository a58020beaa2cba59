"""Snapshots of the key screens at 80x24 and 120x40 (fake manifest and fixed run directories).

Nothing on these screens depends on the clock, the machine or random ids. After an
intended change of the look: ``pytest tests/tui/test_snapshots.py --snapshot-update``
and review the SVGs under tests/__snapshots__/.
"""

from __future__ import annotations

import pytest

from tui.screens.main import MainScreen
from tui.screens.run import RunScreen
from support.console import make_app, wait_for
from support.fakes import write_task_runs
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


# -- the screens researchers read, at 80x24, on fabricated finished runs -----------------


async def open_screen(pilot, screen, keys=()):
    """Push ``screen`` over the main screen, wait for its data, then press ``keys``."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    app.push_screen(screen)
    ready = (
        (lambda: len(screen.states) == len(screen.runs))
        if hasattr(screen, "states")
        else (lambda: screen.state is not None)
    )
    assert await wait_for(pilot, lambda: app.screen is screen and ready())
    await pilot.pause(0.2)
    for key in keys:
        await pilot.press(key)
    await pilot.pause(0.2)


@pytest.mark.parametrize("task", ["pretrain", "classify", "qa"])
def test_results_of_each_task(snap_compare, tmp_path, task):
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")[task]
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda p: open_screen(p, RunScreen(run=run), ["2"]))


def test_pretrain_curves(snap_compare, tmp_path):
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["pretrain"]
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda p: open_screen(p, RunScreen(run=run)))


def test_failed_job(snap_compare, tmp_path):
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["failed"]
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda p: open_screen(p, RunScreen(run=run)))


@pytest.mark.parametrize("tab", ["1", "2", "3"], ids=["curves", "results", "config"])
def test_compare_two_tasks(snap_compare, tmp_path, tab):
    from tui.screens.compare import CompareScreen

    app = make_app(tmp_path)
    runs = write_task_runs(tmp_path / "runs")
    screen = CompareScreen([runs["classify"], runs["qa"]])
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda p: open_screen(p, screen, [tab]))


def test_compare_config_tab_with_environments(snap_compare, tmp_path):
    """A rerun beside its original after a code change and an upgrade: config, code and packages rows."""
    import json

    from support.fakes import write_run

    from tui.screens.compare import CompareScreen

    app = make_app(tmp_path)
    runs = []
    for i, (lr, commit, torch) in enumerate(((3e-4, "4a338eb", "2.13.0"), (1e-4, "6d51de6", "2.13.1"))):
        run = write_run(
            tmp_path / "runs",
            "demo-sst2",
            f"20260103-10000{i}-000000-ffff",
            task="classify",
            config={"epochs": 3, "learning_rate": lr, "dataset": "embedded:sst2"},
        )
        env = {"git": {"commit": commit, "branch": "main", "dirty": bool(i)}, "python": "3.11.7", "device": "cpu"}
        (run.path / "environment.json").write_text(json.dumps(env))
        (run.path / "packages.txt").write_text(f"numpy==2.1.0\ntorch=={torch}\ntransformers==5.24.0\n")
        runs.append(run)
    screen = CompareScreen(runs)
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda p: open_screen(p, screen, ["3"]))


def test_tables_tab(snap_compare, tmp_path):
    """An inspect run's parameter table at 80x24: every count whole, the module names shortened."""
    from support.fakes import write_run

    app = make_app(tmp_path)
    run = write_run(tmp_path / "runs", "demo-params", "20260101-090000-000000-abcd", task="inspect", params=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=lambda p: open_screen(p, RunScreen(run=run)))


def test_help_screen(snap_compare, tmp_path):
    """`?` at 80x24: one row per action, long descriptions wrapped in their own column."""

    async def before(pilot):
        await runs_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=before)
