"""The run view's Examples and Try tabs: snapshots at 80x24, filters, the model's loading state and release.

The Try tab's model is a fake here (``TryPane.loader``): its answers and latency are fixed, so
the snapshot does not depend on training or the machine; tests/study/test_predict_examples.py
checks the real predictions.
"""

from __future__ import annotations

import asyncio
import json
import threading

from support.console import make_app, wait_for
from support.fakes import write_task_runs

from tui.screens.main import MainScreen
from tui.screens.run import RunScreen
from tui.widgets.examples import ExamplesPane
from tui.widgets.trypane import TryPane

ROWS = [  # index, text, gold, prediction, confidence
    (0, "a gorgeous , witty , seductive movie .", 1, 1, 0.981),
    (1, "the acting is bad and the script is worse .", 0, 1, 0.912),
    (2, "it 's a charming and often affecting journey .", 1, 1, 0.874),
    (3, "unflinchingly bleak and desperate", 0, 0, 0.701),
    (4, "this is n't a new idea .", 0, 1, 0.655),
    (5, "a [MASK] of cliches", 0, 0, 0.802),
    (6, "the film is strictly routine .", 0, 1, 0.577),
    (7, "an utterly charming and hilarious film", 1, 0, 0.543),
]


def with_predictions(run):
    (run.path / "predictions.jsonl").write_text(
        "".join(
            json.dumps({"index": i, "text": t, "label": y, "prediction": p, "confidence": c}) + "\n"
            for i, t, y, p, c in ROWS
        )
    )
    return run


def with_epochs(run):
    """Predictions of the evaluations before training (all "negative") and after epoch 1 (ROWS)."""
    from engine.store.predictions import save_epoch

    rows = [{"index": i, "text": t, "label": y, "prediction": p, "confidence": c} for i, t, y, p, c in ROWS]
    save_epoch(run.path, 0, [dict(r, prediction=0, confidence=0.5) for r in rows])
    save_epoch(run.path, 1, rows)
    return run


MASKED = [  # index, position, gold, top, left, right (with its leading space: it follows the mask)
    (0, 3, "film", [("the", 0.21), ("film", 0.18), (",", 0.07), ("was", 0.05), ("a", 0.04)], "the", " was released in"),
    (0, 9, "1998", [("1998", 0.41), ("1997", 0.12), ("the", 0.05), (".", 0.04), ("a", 0.03)], "released in", " . it"),
    (
        1,
        2,
        "critics",
        [("the", 0.33), ("it", 0.09), ("he", 0.06), ("critics", 0.05), ("a", 0.02)],
        "the",
        " praised it",
    ),
    (2, 5, "album", [(",", 0.12), ("the", 0.11), ("song", 0.08), ("band", 0.05), ("of", 0.04)], "the band 's", " was"),
]


def with_masked(run):
    from engine.store.predictions import save_epoch

    for epoch in (0, 8):
        rows = [
            {
                "index": i,
                "position": p,
                "gold": g,
                "top": top,
                "gold_probability": dict(top).get(g, 0.001),
                "left": a,
                "right": b,
            }
            for i, p, g, top, a, b in MASKED
        ]
        save_epoch(run.path, epoch, rows)
    return run


class FakePredictor:
    """Fixed answers and latency; records whether its memory was let go."""

    task = "classify"
    device = "cpu"
    load_s = 0.4
    run_name = "demo-sst2/20260103-100000-000000-ffff"

    def __init__(self):
        self.closed = False
        self.calls: list = []

    def timed(self, rows, top_k=5):
        self.calls.append(rows)
        text = rows[0]["text"]
        out = {
            "text": text,
            "prediction": 1,
            "label": "positive",
            "confidence": 0.93,
            "probabilities": {"negative": 0.07, "positive": 0.93},
        }
        return [out], 0.012

    def close(self):
        self.closed = True


async def open_tab(pilot, screen, key):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    app.push_screen(screen)
    assert await wait_for(pilot, lambda: app.screen is screen and screen.state is not None)
    await pilot.press(key)
    await pilot.pause(0.2)


async def open_try(pilot, run) -> TryPane:
    """A run view of ``run`` on its Try tab: the tab's pane (its model loading)."""
    screen = RunScreen(run=run)
    await open_tab(pilot, screen, "6")
    return screen.query_one(TryPane)


def test_examples_tab_80x24(snap_compare, tmp_path):
    app = make_app(tmp_path)
    run = with_predictions(write_task_runs(tmp_path / "runs")["classify"])

    async def before(pilot):
        screen = RunScreen(run=run)
        await open_tab(pilot, screen, "5")
        pane = screen.query_one(ExamplesPane)
        assert await wait_for(pilot, lambda: pane.examples is not None)
        await pilot.press("down")  # the second most confident mistake, in full below
        table, detail = pane.query_one("#ex-table"), pane.query_one("#ex-detail")
        assert await wait_for(pilot, lambda: table.cursor_row == 1 and str(detail.render()) == pane.shown[1].text)
        await pilot.pause(0.2)
        assert table.cursor_row == 1 and str(detail.render()) == pane.shown[1].text  # no late redraw undid it

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_pretraining_examples_tab_80x24(snap_compare, tmp_path):
    app = make_app(tmp_path)
    run = with_masked(write_task_runs(tmp_path / "runs")["pretrain"])

    async def before(pilot):
        screen = RunScreen(run=run)
        await open_tab(pilot, screen, "5")
        pane = screen.query_one(ExamplesPane)
        assert await wait_for(pilot, lambda: pane.examples is not None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_examples_tab_steps_back_through_the_saved_evaluations(tmp_path):
    asyncio.run(examples_epochs(tmp_path))


async def examples_epochs(tmp_path):
    app = make_app(tmp_path)
    run = with_epochs(with_predictions(write_task_runs(tmp_path / "runs")["classify"]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = RunScreen(run=run)
        await open_tab(pilot, screen, "5")
        pane = screen.query_one(ExamplesPane)
        assert await wait_for(pilot, lambda: pane.examples is not None)
        assert pane.examples.epoch is None and "final evaluation, 3 saved" in str(
            pane.query_one("#ex-summary").render()
        )
        seen = []
        for _ in range(3):  # E: epoch 1, epoch 0 (before training), the final one again
            before = pane.examples
            await pilot.press("E")
            assert await wait_for(pilot, lambda b=before: pane.examples is not b)
            seen.append((pane.examples.epoch, pane.examples.counts()))
            if pane.examples.epoch == 0:
                assert "before training, 3 saved (w x o E)" in str(pane.query_one("#ex-summary").render())
        assert seen[0] == (1, [[2, 3], [1, 2]]) and seen[2] == (None, [[2, 3], [1, 2]])
        assert seen[1] == (0, [[5, 0], [3, 0]])  # every row "negative" before training


def test_try_tab_80x24(snap_compare, tmp_path, monkeypatch):
    fake = FakePredictor()
    monkeypatch.setattr(TryPane, "loader", staticmethod(lambda run: fake))
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["classify"]

    async def before(pilot):
        pane = await open_try(pilot, run)
        assert await wait_for(pilot, lambda: pane.state == "ready")
        for sentence in ("a dull film", "a wonderful, moving film"):
            await pilot.press(*sentence, "enter")
            assert await wait_for(pilot, lambda s=sentence: pane.history and pane.history[0].startswith(s))
            pane.query_one("#try-input").value = ""
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_examples_filters_follow_the_confusion_cells(tmp_path):
    asyncio.run(examples_filters(tmp_path))


async def examples_filters(tmp_path):
    app = make_app(tmp_path)
    run = with_predictions(write_task_runs(tmp_path / "runs")["classify"])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = RunScreen(run=run)
        await open_tab(pilot, screen, "5")
        pane = screen.query_one(ExamplesPane)
        assert await wait_for(pilot, lambda: pane.examples is not None)
        wrong = [r for r in ROWS if r[2] != r[3]]
        assert [r.index for r in pane.shown] == [r[0] for r in sorted(wrong, key=lambda r: -r[4])]
        for cell in pane.filters():  # x steps through every cell: each shows the rows of its count
            await pilot.press("x")
            counts = pane.examples.counts()
            assert len(pane.shown) == counts[cell[0]][cell[1]] == sum(1 for r in ROWS if (r[2], r[3]) == cell)
        await pilot.press("x", "w")  # back to no cell, then every row
        assert len(pane.shown) == len(ROWS)


def test_try_model_loads_in_a_thread_and_goes_with_the_view(tmp_path, monkeypatch):
    asyncio.run(try_loads_in_a_thread(tmp_path, monkeypatch))


async def try_loads_in_a_thread(tmp_path, monkeypatch):
    from tui.modelslot import ModelSlot, model_slot

    monkeypatch.setattr(ModelSlot, "KEEP_S", 30.0)
    fake, gate = FakePredictor(), threading.Event()

    def slow_loader(run):
        gate.wait(5)
        return fake

    monkeypatch.setattr(TryPane, "loader", staticmethod(slow_loader))
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["classify"]
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_try(pilot, run)
        assert pane.state == "loading" and "loading" in str(pane.query_one("#try-state").render())
        await pilot.press(*"too early", "enter")  # the console stays responsive while it loads
        assert "not loaded yet" in str(pane.query_one("#try-state").render())
        await pilot.press("escape")  # closed before the model is in: it is kept for a reopening all the same
        gate.set()
        assert await wait_for(pilot, lambda: model_slot(app).predictor is fake)
        pane = await open_try(pilot, run)
        assert await wait_for(pilot, lambda: pane.state == "ready")
        assert pane.predictor is fake and "kept from before" in str(pane.query_one("#try-state").render())
        monkeypatch.setattr(ModelSlot, "KEEP_S", 0.1)  # a closed view's model goes soon after it
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: fake.closed)
        assert pane.predictor is None


def test_one_model_across_run_views_reused_then_let_go(tmp_path, monkeypatch):
    asyncio.run(one_model_across_views(tmp_path, monkeypatch))


async def one_model_across_views(tmp_path, monkeypatch):
    """Reopening a run soon reuses its model; another run's view lets it go at once; else it goes KEEP_S later."""
    from tui.modelslot import ModelSlot

    loaded: list = []

    def loader(run):
        loaded.append((run.experiment, FakePredictor()))
        return loaded[-1][1]

    monkeypatch.setattr(TryPane, "loader", staticmethod(loader))
    monkeypatch.setattr(ModelSlot, "KEEP_S", 30.0)  # longer than any pause of a loaded machine
    app = make_app(tmp_path)
    runs = write_task_runs(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:

        async def try_tab(run):
            pane = await open_try(pilot, run)
            assert await wait_for(pilot, lambda: pane.state == "ready")
            return pane

        await try_tab(runs["classify"])
        await pilot.press("escape")
        pane = await try_tab(runs["classify"])  # within KEEP_S: the same model, not loaded again
        assert len(loaded) == 1 and pane.predictor is loaded[0][1] and not loaded[0][1].closed
        assert "kept from before" in str(pane.query_one("#try-state").render())
        await pilot.press("escape")
        screen = RunScreen(run=runs["qa"])
        await open_tab(pilot, screen, "1")  # another run's view: the held model goes before any tab
        assert loaded[0][1].closed
        await pilot.press("6")
        assert await wait_for(pilot, lambda: len(loaded) == 2)
        monkeypatch.setattr(ModelSlot, "KEEP_S", 0.2)  # no need to wait long for the last step
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: loaded[1][1].closed, timeout=10)  # KEEP_S after its view closed


def test_try_tab_keeps_saying_why_a_run_has_no_model(tmp_path, monkeypatch):
    """A pruned trial saved no model: the load's reason stays on screen when the user presses enter."""
    asyncio.run(try_without_model(tmp_path, monkeypatch))


async def try_without_model(tmp_path, monkeypatch):
    from engine.errors import UserError

    def loader(run):
        raise UserError(f"{run.experiment} has no saved model (it is pruned): predict needs a finished run")

    monkeypatch.setattr(TryPane, "loader", staticmethod(loader))
    app = make_app(tmp_path)
    run = write_task_runs(tmp_path / "runs")["classify"]
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_try(pilot, run)
        assert await wait_for(pilot, lambda: pane.state == "failed")
        await pilot.press(*"a dull film", "enter")
        await pilot.pause(0.2)
        said = str(pane.query_one("#try-state").render())
        assert "has no saved model (it is pruned)" in said, said
