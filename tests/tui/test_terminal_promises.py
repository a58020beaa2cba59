"""What the README promises of the console in a plain terminal: readable in 16 colours, and plots
redrawn by a timer (about 1 Hz), never once per training step."""

from __future__ import annotations

import asyncio
import io
import re
import time

from rich.cells import cell_len
from rich.color import ColorSystem
from rich.console import Console
from support.console import make_app, wait_for
from support.fakes import write_run, write_task_runs

from engine.events import StepLogged, to_json
from tui.screens.main import MainScreen
from tui.screens.run import RunScreen
from tui.widgets.plots import CurvePlot

SIZE = (80, 24)


def _invisible_in_16_colours(app) -> list[str]:
    """Text on screen whose foreground and background fall on the same colour of a 16-colour terminal.

    The screen is rendered as the app styles it (truecolor), then each colour is reduced to the
    standard 16 the way Rich does it for such a terminal. Only cells that carry words, digits or plot
    points count (a decorative rule may fade, text may not), and under a modal dialog only the
    dialog's own cells (the screen behind it is dimmed on purpose).
    """
    from textual.screen import ModalScreen

    console = Console(
        width=app.size.width, height=app.size.height, file=io.StringIO(), force_terminal=True, legacy_windows=False
    )
    region = app.screen.children[0].region if isinstance(app.screen, ModalScreen) else app.screen.region
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    lost, x, y = [], 0, 0
    for seg in console.render(update):
        move = re.fullmatch(r"\x1b\[(\d+);(\d+)H", seg.text)
        if move:  # the update positions each line with a cursor move (1-based row;column)
            y, x = int(move.group(1)) - 1, int(move.group(2)) - 1
            continue
        x0, x = x, x + cell_len(seg.text)
        style, text = seg.style, seg.text
        inside = region.y <= y < region.bottom and x0 < region.right and x > region.x
        if not inside or style is None or not any(c.isalnum() or "\u2801" <= c <= "\u28ff" for c in text):
            continue
        fg, bg = style.color, style.bgcolor
        if style.reverse:
            fg, bg = bg, fg
        if fg is None or bg is None:
            continue  # the terminal's own default colour on one side: readable by the user's choice
        a, b = fg.downgrade(ColorSystem.STANDARD), bg.downgrade(ColorSystem.STANDARD)
        if a.get_truecolor() == b.get_truecolor():
            lost.append(f"{text.strip()[:30]!r}: {fg.name} on {bg.name} -> both {a.get_truecolor().hex}")
    return lost


def test_every_text_stays_readable_in_16_colours(tmp_path):
    """Each tab of the main screen, a run view's curves and results, and the help screen."""

    async def go():
        app = make_app(tmp_path)
        run = write_task_runs(tmp_path / "runs")["classify"]
        lost: dict[str, list[str]] = {}
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            for key in "1234":
                await pilot.press(key)
                await pilot.pause(0.3)
                lost[f"main tab {key}"] = _invisible_in_16_colours(app)
            screen = RunScreen(run=run)
            app.push_screen(screen)
            assert await wait_for(pilot, lambda: screen.state is not None)
            for key in "12":
                await pilot.press(key)
                await pilot.pause(0.3)
                lost[f"run view tab {key}"] = _invisible_in_16_colours(app)
            await pilot.press("question_mark")
            await pilot.pause(0.3)
            lost["help"] = _invisible_in_16_colours(app)
        assert not any(lost.values()), {k: v for k, v in lost.items() if v}

    asyncio.run(go())


def test_the_check_sees_text_lost_in_16_colours(tmp_path):
    """The check above can fail: dark grey on near-black (distinct in truecolor) is one black in 16."""

    async def go():
        from textual.widgets import Static

        app = make_app(tmp_path, history=False)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            assert not _invisible_in_16_colours(app)
            await app.screen.mount(Static("[#262626 on #121212]faint words[/]"))
            await pilot.pause(0.3)
            assert any("faint words" in line for line in _invisible_in_16_colours(app))

    asyncio.run(go())


def test_plots_redraw_about_once_a_second_not_per_step(tmp_path):
    """A thread appends a step to a live run's events.jsonl every 5 ms for 3 s: the loss plot is
    redrawn about once per second (its timer), far fewer times than steps arrive, and the newest
    step still reaches the plot."""
    import threading

    run = write_run(tmp_path / "runs", "pretrain", "20260101-100000-000000-bbbb", "running", steps=2, epochs=1)
    draws: list[float] = []
    original = CurvePlot._draw

    def counting_draw(self, width, height):
        if self.id == "plot-loss":
            draws.append(time.monotonic())
        return original(self, width, height)

    def write_steps(written: list[int], seconds: float) -> None:
        end, step = time.monotonic() + seconds, 2
        with open(run.events_path, "a") as f:
            while time.monotonic() < end:
                step += 2
                f.write(to_json(StepLogged(step=step, epoch=step / 1000, loss=8.0 - step / 1000, learning_rate=1e-3)))
                f.write("\n")
                f.flush()
                written.append(step)
                time.sleep(0.005)

    async def go():
        app = make_app(tmp_path, history=False)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            screen = RunScreen(run=run)
            app.push_screen(screen)
            assert await wait_for(pilot, lambda: screen.state is not None and screen.state.steps)
            await pilot.pause(1.2)
            draws.clear()
            written: list[int] = []
            writer = threading.Thread(target=write_steps, args=(written, 3.0))
            t0 = time.monotonic()
            writer.start()
            while writer.is_alive():
                await pilot.pause(0.05)
            elapsed = time.monotonic() - t0
            n_draws = len(draws)
            plot = screen.query_one("#plot-loss", CurvePlot)
            assert await wait_for(pilot, lambda: plot.series and plot.series[0].xs[-1] == written[-1], timeout=5)
            return elapsed, n_draws, len(written)

    CurvePlot._draw = counting_draw
    try:
        elapsed, n_draws, n_steps = asyncio.run(go())
    finally:
        CurvePlot._draw = original
    # one redraw per 1 s poll that found new steps, plus a couple for layout; never one per step
    assert 1 <= n_draws <= elapsed + 2, (n_draws, round(elapsed, 1))
    assert n_draws < n_steps / 20, (n_draws, n_steps)
