"""The console under test: an app on fakes, its screen as text, waiting for a condition."""

from __future__ import annotations

import time
from pathlib import Path

from support.fakes import MANIFEST, FakeRunner, write_history, write_manifest


def screen_text(app) -> str:
    """The current screen as plain text (what a user would read), for assertions in tests."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def make_app(folder: Path, runner=None, manifest: str = MANIFEST, history: bool = True):
    """An app on a fake manifest in ``folder`` (with the fake run history) and a fake runner."""
    from engine.queue.jobqueue import JobQueue
    from tui.app import build_app

    path = write_manifest(folder, manifest)
    if history:
        write_history(Path(folder) / "runs")
    runner = runner or FakeRunner()
    return build_app(path, lambda m: JobQueue(m, runner=runner))


async def wait_for(pilot, condition, timeout: float = 10.0, step: float = 0.05) -> bool:
    """Let the app run until ``condition()`` holds; False on timeout (assert on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(step)
    return bool(condition())
