"""Plot ticks, log-y, smoothing and downsampling; metric scales; results rows (no Textual app needed)."""

from __future__ import annotations

import math
import re
import time

from engine.events import EvalFinished
from tui.metricinfo import best_of, headline, metric_scale
from tui.screens.compare import common_scale, run_differences
from tui.widgets.plots import downsample, ema, nice_ticks, tick_label
from tui.widgets.results import confusion_text, results_rows


def test_ticks_are_round_and_evenly_spaced():
    ticks = nice_ticks(437.6, 3430.1, 4)  # the 3430.1 / 2931.3 / 1933.8 ... on equal rows
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and ticks[0] <= 437.6 and ticks[-1] >= 3430.1
    assert [tick_label(t, ticks[1] - ticks[0]) for t in ticks] == ["0", "1,000", "2,000", "3,000", "4,000"]
    lr = nice_ticks(0.0, 1e-3, 4)
    assert [tick_label(t, lr[1] - lr[0]) for t in lr] == ["0", "2.5e-4", "5.0e-4", "7.5e-4", "1.0e-3"]
    flat = nice_ticks(5.0, 5.0, 3)  # a constant series still gets a range around it
    assert flat[0] < 5.0 < flat[-1]


def test_ema_is_debiased_and_downsampling_keeps_spikes_of_a_million_points():
    assert ema([1.0, 1.0, 1.0], 0.9) == [1.0, 1.0, 1.0]  # no pull towards 0 at the start
    assert ema([0.0, 10.0], 0.0) == [0.0, 10.0]
    xs = list(range(1_000_000))
    ys = [math.sin(x / 1000) for x in xs]
    ys[123_456] = 50.0  # one spike
    start = time.perf_counter()
    dx, dy = downsample(xs, ys, 4000)
    assert time.perf_counter() - start < 2.0
    assert len(dx) <= 4000 and max(dy) == 50.0 and dx == sorted(dx)


def test_metric_scales_and_best():
    assert metric_scale("f1", "qa") == "percent" and metric_scale("final.HasAns_f1", "qa") == "percent"
    assert metric_scale("f1", "classify") == "fraction" and metric_scale("bleu", "qa") == "fraction"
    assert metric_scale("mlm_perplexity", "pretrain") == "" and metric_scale("NoAns_total", "qa") == ""
    # a classifier's f1 (0-1) next to squad's f1 (0-100): one 0-100 scale
    assert common_scale("final.f1", ["classify", "qa"]) == (100.0, 1.0)
    assert common_scale("final.f1", ["classify", "qa"], [True, False]) is None  # only one run has it
    assert common_scale("accuracy", ["classify", "classify"]) is None
    assert best_of([3.0, 1.0, 2.0], "mlm_perplexity") == (1, 1.0)
    assert best_of([0.5, 0.9, 0.7], "accuracy") == (1, 0.9)
    assert best_of([500, 500], "n") is None


def test_results_rows_final_best_history_and_headline():
    evals = [
        EvalFinished(epoch=e, step=e, split="validation", metrics={"accuracy": a, "n": 500})
        for e, a in enumerate([0.5, 0.9, 0.8])
    ]
    results = {"final": {"accuracy": 0.8, "n": 500, "majority_baseline": 0.528, "note": "x" * 40}}
    headers, rows, texts = results_rows(evals, results)
    assert headers == ["metric", "final", "best (ep)", "ep 0", "ep 1", "ep 2"]
    acc = rows[0]
    assert acc[0] == "accuracy" and str(acc[1]) == "0.8" and str(acc[2]) == "0.9 (1)"
    assert texts == {"note": "x" * 40}
    assert headline("classify", results) == "final accuracy 0.800 (majority 0.528)"
    matrix = confusion_text([[227, 9], [7, 257]], ["negative", "positive"]).splitlines()
    assert matrix[0].startswith("true \\ predicted") and matrix[0].split()[-2:] == ["negative", "positive"]
    assert matrix[1].split() == ["negative", "227", "9"] and matrix[2].split() == ["positive", "7", "257"]


def test_run_differences_list_what_lmconsole_diff_lists_for_every_run(tmp_path):
    """Each run against the first: config keys (typed), then code, data, environment and packages."""
    import json
    from types import SimpleNamespace

    def run(name, config, commit, torch):
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps(config))
        (path / "environment.json").write_text(json.dumps({"git": {"commit": commit}, "python": "3.11.7"}))
        (path / "packages.txt").write_text(f"numpy==2.1.0\ntorch=={torch}\n")
        return SimpleNamespace(path=path, config=lambda: config)

    a = run("a", {"name": "a", "lr": 1e-3, "epochs": 3, "seed": 1}, "abc", "2.13.0")
    b = run("b", {"name": "b", "lr": 3e-4, "epochs": 3}, "abc", "2.13.0")
    c = run("c", {"name": "c", "lr": 1e-3, "epochs": 3, "seed": 1}, "def", "2.14.0")
    assert run_differences([a, b, c]) == [
        ("config", "lr", 1e-3, 3e-4, 1e-3),
        ("config", "seed", 1, None, 1),
        ("code", "commit", "abc", "abc", "def"),
        ("packages", "torch", "2.13.0", "2.13.0", "2.14.0"),
    ]


def test_a_one_point_curve_draws():
    """A metric with one evaluation so far (x range 0) is drawn, not a ZeroDivisionError in plotext."""
    from tui.widgets.plots import CurvePlot, Series

    for xs, ys in (([0], [0.5]), ([1, 1], [0.5, 0.5])):
        plot = CurvePlot("evaluation", xlabel="epoch")
        plot.series = [Series("accuracy", xs, ys)]
        plot._draw(60, 10)
        canvas = re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build())  # what the widget's render() does next
        # the point itself (one braille dot) on the 0.500 row, and the axis labelled
        point_rows = [line for line in canvas.splitlines() if any(0x2800 < ord(c) <= 0x28FF for c in line)]
        assert len(point_rows) == 1 and point_rows[0].startswith("0.500"), canvas
        assert "epoch" in canvas and "last 0.500" in canvas


def test_one_evaluation_gets_an_axis_from_zero_and_every_metric_title_keeps_best():
    """One point at epoch 0 is drawn on 0..1 (no negative epochs); a long metric title at 80
    columns keeps "best" (the extreme and then "last" give way first), for accuracy as for f1."""
    from tui.widgets.plots import CurvePlot, Series

    plot = CurvePlot("evaluation", xlabel="epoch")
    plot.series = [Series("accuracy", [0], [0.5])]
    plot._draw(78, 10)
    ticks = plot.plt.build()
    assert "-0." not in ticks, ticks
    for metric in ("accuracy", "recall", "f1"):
        plot = CurvePlot("evaluation", xlabel="epoch")
        plot.best = "max"
        plot.title = f"{metric} on validation (m: next)"  # as the run view names it
        title = plot._title([Series(metric, list(range(12)), [0.4 + 0.05 * i for i in range(12)])], 80)
        assert "best 0.950 @ep 11" in title and "last 0.950" in title, (metric, title)
        narrow = plot._title([Series(metric, list(range(12)), [0.4 + 0.05 * i for i in range(12)])], 66)
        assert "best 0.950 @ep 11" in narrow, (metric, narrow)


def test_several_series_keep_their_legend_out_of_the_canvas():
    """The `v` "all together" panel: plotext's legend covered the top left of the canvas, where the
    losses start; the markers and names are on the axis line instead, every point drawn."""
    from tui.widgets.plots import MARKERS, CurvePlot, Series

    plot = CurvePlot("training loss (all)")
    steps = list(range(0, 81, 2))
    plot.series = [
        Series("loss", steps, [10 - 0.1 * x for x in steps]),
        Series("mlm_loss", steps, [9 - 0.1 * x for x in steps]),
        Series("nsp_loss", steps, [0.7] * len(steps)),
    ]
    plot._draw(38, 10)
    canvas = re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build()).splitlines()
    inside = [line.split("│")[1] if line.count("│") >= 2 else line.split("┤", 1)[-1] for line in canvas[2:-4]]
    assert not any(name in line for line in inside for name in ("loss", "mlm", "nsp")), canvas
    assert f"{MARKERS[0]} loss  {MARKERS[1]} mlm_loss  {MARKERS[2]} nsp_loss" in canvas[-1], canvas
    top = inside[0]  # the highest row holds the first points of the falling losses
    assert top.strip() and top.lstrip()[0] in MARKERS[:2], canvas
