"""The system tab (Pilot, 80x24): GPUs through a fake NVML, which job holds which GPU, the no-driver path."""

from __future__ import annotations

import asyncio
import sys

from support.nvml import fake_pynvml

from engine.store.runs import RunStore, RunWriter
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from support.console import make_app, screen_text, wait_for
from tui.widgets.system import SystemPane

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


def test_run_view_plots_the_jobs_system_samples(tmp_path):
    """A job's SystemSampled events are curves of the run view: `g` steps the small panel through them."""
    from engine.events import StepLogged, SystemSampled
    from tui.data import system_series
    from tui.screens.run import RunScreen
    from tui.widgets.plots import CurvePlot
    from tui.widgets.runs import RunsPane

    app = make_app(tmp_path, history=False)
    run = RunStore(tmp_path / "runs").create("pretrain", {"name": "pretrain", "task": "pretrain"})
    writer = RunWriter(run).open()
    writer.set_status("running")
    for i in range(4):
        writer.emit(StepLogged(step=i + 1, epoch=0.1 * i, loss=5.0 - i, learning_rate=1e-4, time=1000.0 + 30 * i))
        writer.emit(
            SystemSampled(
                host={"cpu_percent": 50.0 + i, "ram_used_mb": 1000.0 + 10 * i},
                gpus=[{"index": 0, "util_percent": 80.0 + i, "memory_used_mb": 2000.0}],
                time=1000.0 + 30 * i,
            )
        )
    names = [n for n, _, _ in system_series([e for e in run.events() if isinstance(e, SystemSampled)])]
    assert names == ["cpu %", "ram used MB", "gpu0 util %", "gpu0 memory MB"]

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("3")
            pane = app.screen.query_one(RunsPane)
            assert await wait_for(pilot, lambda: pane.table.row_count == 1)
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            view = app.screen
            plot = view.query_one("#plot-lr", CurvePlot)
            assert await wait_for(pilot, lambda: view.state is not None and len(view.state.system) == 4)
            assert "g: system" in plot.title
            await pilot.press("g")
            assert await wait_for(pilot, lambda: plot.title.startswith("cpu %"))
            assert plot.xlabel == "minutes" and plot.series[0].ys == [50.0, 51.0, 52.0, 53.0]
            assert plot.series[0].xs == [0.0, 0.5, 1.0, 1.5]
            for _ in range(3):
                await pilot.press("g")
            assert await wait_for(pilot, lambda: plot.title.startswith("gpu0 memory MB"))
            await pilot.press("g")  # back to the learning rate
            assert await wait_for(pilot, lambda: plot.title.startswith("learning rate") and plot.xlabel == "step")

    asyncio.run(go())
    writer.close()
