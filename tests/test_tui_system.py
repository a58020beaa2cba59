"""The system tab (Pilot, 80x24): GPUs through a fake NVML, which job holds which GPU, the no-driver path."""

from __future__ import annotations

import asyncio
import sys

from engine.runs import RunStore, RunWriter
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.testing import make_app, screen_text, wait_for
from tui.widgets.system import SystemPane

from test_system import fake_pynvml

SIZE = (80, 24)


def test_system_tab_shows_gpus_and_their_jobs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=2))
    app = make_app(tmp_path)
    # a live job (this process holds its owner lock) recorded as holding GPU 1
    run = RunStore(tmp_path / "runs").create("pretrain", {"name": "pretrain", "task": "pretrain"})
    writer = RunWriter(run).open()
    writer.set_status("running", gpus=[1])

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("4")
            pane = app.screen.query_one(SystemPane)
            assert app.focused is pane.table
            assert await wait_for(pilot, lambda: pane.table.row_count == 2 and "pretrain" in screen_text(app))
            text = screen_text(app)
            assert "4 System" in text
            assert "CPU" in text and "RAM" in text
            assert "H100" in text and "A100" in text
            assert "90%" in text and "20.0/80G" in text and "61C" in text and "350/700W" in text
            row1 = next(line for line in text.splitlines() if "A100" in line)
            assert "pretrain" in row1, "GPU 1 is held by the running pretrain job"
            row0 = next(line for line in text.splitlines() if "H100" in line)
            assert "pretrain" not in row0
            assert "pretrain → GPU 1" in text
            assert all(len(line) <= 80 for line in text.splitlines())
            await pilot.press("question_mark")
            assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            assert "System" in screen_text(app)

    try:
        asyncio.run(go())
    finally:
        writer.close()


def test_system_tab_without_driver_shows_cpu_ram_and_why(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init="NVML Shared Library Not Found"))
    app = make_app(tmp_path)

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("4")
            assert await wait_for(pilot, lambda: "CPU and RAM only" in screen_text(app))
            text = screen_text(app)
            assert "no NVIDIA driver" in text
            assert "CPU" in text and "GiB" in text and "no job running" in text
            assert not app.screen.query_one(SystemPane).table.display
            await pilot.press("1")
            assert "4 System" in screen_text(app)

    asyncio.run(go())
