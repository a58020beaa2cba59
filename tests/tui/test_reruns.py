"""Rerun and clone from the console: the keys, the confirmation, and the CLI's code underneath."""

from __future__ import annotations

import asyncio

from support.console import make_app, screen_text, wait_for
from support.fakes import write_task_runs

from engine.manifest import load
from tui.screens.dialogs import ConfirmDialog, InputDialog
from tui.screens.main import MainScreen
from tui.screens.run import RunScreen


async def open_run(pilot, run) -> RunScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, MainScreen))
    screen = RunScreen(run=run)
    pilot.app.push_screen(screen)
    assert await wait_for(pilot, lambda: pilot.app.screen is screen and screen.state is not None)
    return screen


def test_rerun_from_the_run_view_asks_then_queues_the_exact_config(tmp_path):
    asyncio.run(rerun_from_run_view(tmp_path))


async def rerun_from_run_view(tmp_path):
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["classify"]
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(pilot, run)
        await pilot.press("r")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        text = screen_text(app)
        assert f"Rerun demo-sst2/{run.run_id} exactly" in text and "Rerun (y)" in text
        await pilot.press("n")  # no: nothing written, nothing queued
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert not (tmp_path / "runs" / ".reruns").exists() and not app.queue.jobs
        await pilot.press("r")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        assert await wait_for(pilot, lambda: [j.experiment for j in app.queue.jobs] == ["demo-sst2"])
        (written,) = (tmp_path / "runs" / ".reruns").iterdir()
        assert written.read_text().startswith(f"# lmconsole: rerun of demo-sst2/{run.run_id}\n")
        again = load(written).get("demo-sst2")
        assert again.learning_rate == run.config()["learning_rate"] and again.epochs == 12  # the run's, exactly


def test_clone_from_the_runs_tab_appends_to_the_manifest_and_reloads_it(tmp_path):
    asyncio.run(clone_from_runs_tab(tmp_path))


async def clone_from_runs_tab(tmp_path):
    from support.fakes import write_run

    app = make_app(tmp_path)
    # the newest run (the runs tab's first row): a config a manifest accepts, the dataset included
    write_run(tmp_path / "runs", "pretrain", "20260109-100000-000000-abab", config={"dataset": "embedded:wikitext"})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("3")
        assert await wait_for(pilot, lambda: "pretrain" in screen_text(app))
        await pilot.press("N")
        assert await wait_for(pilot, lambda: isinstance(app.screen, InputDialog))
        dialog = app.screen
        assert "into the manifest as a new experiment" in dialog.question
        assert dialog.query_one("#text").value == "pretrain-copy"
        dialog.query_one("#text").value = ""
        await pilot.press(*"my-clone", "enter")
        assert await wait_for(pilot, lambda: "my-clone" in app.manifest.names)
        text = app.manifest_path.read_text()
        assert "# cloned from run pretrain/20260109-100000-000000-abab" in text
        clone = app.manifest.get("my-clone")
        assert (clone.task, clone.dataset) == ("pretrain", "embedded:wikitext")
        await pilot.press("N")  # the same name again is refused, and says why
        assert await wait_for(pilot, lambda: isinstance(app.screen, InputDialog))
        app.screen.query_one("#text").value = ""
        await pilot.press(*"my-clone", "enter")
        assert await wait_for(pilot, lambda: "already an experiment" in screen_text(app))


def test_rerun_confirmation_80x24(snap_compare, tmp_path):
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["classify"]

    async def before(pilot):
        await open_run(pilot, run)
        await pilot.press("r")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)
