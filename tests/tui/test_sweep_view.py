"""The console's sweep: its progress in the experiments tab, and the sweep view (trials best first,
objective with the best so far, parallel coordinates, importances; enter opens a trial, c compares
the best three). Trials are fake runs on disk (support.sweeps); snapshots at 80x24."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from support.console import make_app, screen_text, wait_for
from support.sweeps import SWEEP, SWEEP_MANIFEST, write_sweep_trials

from engine.sweep.summary import TrialRow, sweep_summary
from tui.screens.compare import CompareScreen
from tui.screens.help import sections
from tui.screens.main import MainScreen
from tui.screens.run import RunScreen
from tui.screens.sweep import SweepScreen
from tui.sweepdata import importance_text, objective_series, parallel_coordinates, top_finished
from tui.widgets.experiments import ExperimentsPane


def _row(trial, status, objective, **params):
    return TrialRow(trial=trial, run=f"s/{trial}", status=status, parameters=params, objective=objective, best_epoch=1)


def test_best_so_far_follows_finished_trials_only():
    rows = [
        _row(0, "finished", 0.6),
        _row(1, "pruned", 0.9),  # a pruned trial's value is no model the sweep keeps
        _row(2, "finished", 0.7),
        _row(3, "failed", None),  # no objective: no point
        _row(4, "finished", 0.65),
    ]
    assert objective_series(rows, maximize=True) == ([0, 1, 2, 4], [0.6, 0.9, 0.7, 0.65], [0.6, 0.6, 0.7, 0.7])
    assert objective_series(rows, maximize=False)[2] == [0.6, 0.6, 0.6, 0.6]


def test_parallel_coordinates_normalise_each_axis_and_band_by_objective(tmp_path):
    write_sweep_trials(tmp_path)
    summary = sweep_summary(tmp_path, SWEEP)
    axes, lines = parallel_coordinates(summary)
    assert [a.name for a in axes] == ["batch_size", "learning_rate", "accuracy"]
    lr = axes[1]
    assert lr.log and lr.describe() == "learning_rate: 1e-05..0.01 (log)"  # three decades: log10
    assert not axes[0].log  # 8..16 is no log axis
    by_trial = {t: (band, pos) for t, band, pos in lines}
    # trial 2 (batch 16, lr 1e-3) is the best: top band, batch at the top, lr at 2/3 of the log axis
    band, pos = by_trial[2]
    assert band == 0 and pos == pytest.approx([1.0, 2 / 3, 1.0])
    assert by_trial[3][0] == 2 and by_trial[3][1][2] == 0.0  # the pruned 0.52: worst band, bottom of the objective
    categorical = [_row(0, "finished", 0.9, opt="adam"), _row(1, "finished", 0.5, opt="sgd")]
    cat_axes, cat_lines = parallel_coordinates(dataclasses.replace(summary, trials=categorical))
    # ties share their mean rank: a collapsed sweep is all middle; one good trial over five equal ones
    # is the best third, the five the middle (rank 3 of 6), none of them the best
    tied = [_row(i, "finished", 0.528, lr=10.0**-i) for i in range(6)]
    assert {band for _, band, _ in parallel_coordinates(dataclasses.replace(summary, trials=tied))[1]} == {1}
    one_good = [_row(9, "finished", 0.722, lr=3e-3), *tied[:5]]
    bands = [band for _, band, _ in parallel_coordinates(dataclasses.replace(summary, trials=one_good))[1]]
    assert bands == [0, 1, 1, 1, 1, 1]
    assert cat_axes[0].describe() == "opt: adam < sgd" and [p[0] for _, _, p in cat_lines] == [0.0, 1.0]
    # the scale the sweep declared wins over the spread: a linear warmup range of 0.002..0.2 stays linear
    spread = [_row(0, "finished", 0.9, warmup=0.002), _row(1, "finished", 0.5, warmup=0.2)]
    assert parallel_coordinates(dataclasses.replace(summary, trials=spread))[0][0].log  # undeclared: by spread
    declared, _ = parallel_coordinates(dataclasses.replace(summary, trials=spread), {"warmup": False})
    assert not declared[0].log and declared[0].describe() == "warmup: 0.002..0.2"


def test_importances_in_one_line_and_the_best_three_to_compare(tmp_path):
    assert importance_text({"learning_rate": 0.8, "batch_size": 0.2}).startswith(
        "importance: learning_rate 0.80 ████████, batch_size 0.20 ██"
    )
    assert importance_text({}, "importances need two completed trials") == (
        "importance: importances need two completed trials"
    )
    write_sweep_trials(tmp_path)
    summary = sweep_summary(tmp_path, SWEEP)
    # finished trials only, best first: 2 (0.912), 4 (0.875), 1 (0.83); never the pruned or live ones
    assert [k.rsplit("-", 1)[1] for k in top_finished(summary)] == ["0002", "0004", "0001"]
    ahead = [_row(1, "pruned", 0.95), _row(2, "finished", 0.9), _row(3, "running", 0.85), _row(4, "finished", 0.8)]
    assert top_finished(dataclasses.replace(summary, trials=ahead)) == ["s/2", "s/4"]


def _sweep_app(tmp_path):
    write_sweep_trials(tmp_path / "runs")
    return make_app(tmp_path, manifest=SWEEP_MANIFEST)


def test_experiments_tab_shows_progress_and_enter_opens_the_sweep(tmp_path):
    asyncio.run(_progress_enter_compare(tmp_path))


async def _progress_enter_compare(tmp_path):
    app = _sweep_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.screen.query_one(ExperimentsPane)
        assert await wait_for(pilot, lambda: "6/8 trials, best 0.912" in screen_text(app))
        keys = [k for k, _ in pane._rows]
        pane.table.move_cursor(row=keys.index(SWEEP), animate=False)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.summary is not None)
        sweep = app.screen
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "6/8 trials, best 0.912 (trial 2)" in text and "★  2" in text
        await pilot.press("down", "enter")  # the second best: trial 4
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.feed.run.path.name.endswith("-0004")
        await pilot.press("s")  # from a trial opened in the sweep view: back to that view
        assert await wait_for(pilot, lambda: app.screen is sweep)
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert [r.run_id[-4:] for r in app.screen.runs] == ["0002", "0004", "0001"]
        assert app.screen.labels == ["A lr-sweep trial 2", "B lr-sweep trial 4", "C lr-sweep trial 1"]
        await pilot.press("escape", "escape")
        assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        # from a trial opened anywhere else (the runs tab): its sweep's view
        trial = next(r.run for r in app.screen._rows if r.run.run_id.endswith("-0003"))
        app.screen.open_run(run=trial)
        assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("s")
        assert await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.sweep == SWEEP)
        help_keys = dict(sections(app))["Sweep view (enter on a sweep)"]
        assert ("c", "Compare best: the best three finished trials side by side") in help_keys


async def _open_sweep(pilot, keys=()):
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    screen = SweepScreen(SWEEP)
    app.push_screen(screen)
    # the trials read, and on the trials tab the importances' note too (the study: slower)
    read = (lambda: screen._importances_at >= 0) if keys == ["1"] else (lambda: True)
    assert await wait_for(pilot, lambda: app.screen is screen and screen.summary and read(), 20)
    for key in keys:
        await pilot.press(key)
    await pilot.pause(0.2)


@pytest.mark.parametrize("tab", ["1", "2", "3"], ids=["trials", "objective", "parameters"])
def test_sweep_view_at_80x24(snap_compare, tmp_path, tab):
    assert snap_compare(_sweep_app(tmp_path), terminal_size=(80, 24), run_before=lambda p: _open_sweep(p, [tab]))
