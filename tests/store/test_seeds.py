"""Seeds: one experiment over ``seeds = [...]``, grouped runs, mean ± sample std and n.

Fixed result files give exact numbers: accuracy 0.90 / 0.92 / 0.97 has mean 0.93 and
sample std sqrt(((-.03)^2 + (-.01)^2 + .04^2) / 2) = sqrt(0.0013) = 0.036055512...
(the population std would be 0.029439...). A failed run of the group does not count.
"""

import asyncio
import json
import math

import pytest

from engine.cli.main import main
from engine.files import atomic_write_json
from engine.manifest import ManifestError, parse_text
from engine.store.runs import RunStore
from engine.store.seeds import fmt_stat, group_stats, metric_stats
from engine.study.export import comparison_table, export_runs
from support.fakes import write_run

GROUP = "cls-seeds-20260101-120000-000000-abcd"
ACC = {1: 0.90, 2: 0.92, 3: 0.97}
SAMPLE_STD = math.sqrt(0.0013)

MANIFEST = """
[settings]
runs_dir = "runs"

[[experiment]]
name = "cls"
task = "classify"
model = "bert-micro"
tokenizer = "train"
vocab_size = 400
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
eval_split = "validation"
epochs = 1
max_steps = 2
batch_size = 8
max_seq_length = 32
max_train_samples = 32
max_eval_samples = 16
logging_steps = 1
seeds = [1, 2]
"""


def grouped_runs(root):
    """Three finished seeds of one group, a failed fourth, and an ungrouped run."""
    runs = []
    for i, (seed, acc) in enumerate(ACC.items()):
        run = write_run(root, "cls", f"20260101-12000{i}-000000-000{i}", task="classify")
        atomic_write_json(
            run.path / "config.json",
            {
                "name": "cls",
                "task": "classify",
                "model": "bert-micro",
                "seed": seed,
                "seeds": [1, 2, 3, 4],
                "group": GROUP,
            },
        )
        atomic_write_json(
            run.path / "results.json",
            {"final": {"accuracy": acc, "n": 872, "eval_split": "validation"}, "global_step": 100 + seed},
        )
        runs.append(run)
    bad = write_run(root, "cls", "20260101-120009-000000-0009", "failed", task="classify")
    atomic_write_json(bad.path / "config.json", {"name": "cls", "task": "classify", "seed": 4, "group": GROUP})
    lone = write_run(root, "cls", "20260101-130000-000000-0010", task="classify")
    atomic_write_json(lone.path / "results.json", {"final": {"accuracy": 0.5}})
    return runs, bad, lone


def test_exact_mean_and_sample_std():
    stats = metric_stats([{"final": {"accuracy": a}} for a in ACC.values()])["final.accuracy"]
    assert stats["mean"] == pytest.approx(0.93, abs=1e-12)
    assert stats["std"] == pytest.approx(SAMPLE_STD, abs=1e-12) and stats["n"] == 3
    assert fmt_stat(stats) == "0.93 ± 0.03606 (n=3)"
    one = metric_stats([{"final": {"accuracy": 0.9}}])["final.accuracy"]
    assert one["std"] is None and fmt_stat(one) == "0.9 (n=1)"  # no sample std from one run


def test_comparison_and_exports_show_group_columns(tmp_path):
    runs, bad, lone = grouped_runs(tmp_path / "runs")
    stats = group_stats(runs + [bad])
    assert stats["final.accuracy"]["n"] == 3  # the failed run is left out
    table = comparison_table(runs + [bad, lone])
    label = "cls seeds 1,2,3,4"
    assert table.columns[4:8] == (f"cls/{bad.run_id}", f"{label}: mean", f"{label}: std", f"{label}: n")
    row = dict(zip(table.columns, next(r for r in table.rows if r[0] == "final.accuracy")))
    assert row[f"{label}: mean"] == pytest.approx(0.93) and row[f"{label}: std"] == pytest.approx(SAMPLE_STD)
    assert row[f"{label}: n"] == 3 and row[f"cls/{lone.run_id}"] == 0.5
    assert any("sample standard deviation" in n for n in table.notes)
    written = export_runs(runs + [bad, lone], tmp_path / "exports", ("csv", "json"))
    folder = written[0].parent  # each export has a folder of its own
    seeds = json.loads((folder / f"seeds_{GROUP}.json").read_text())
    rec = dict(zip(seeds["columns"], next(r for r in seeds["rows"] if r[0] == "accuracy")))
    assert rec["mean"] == pytest.approx(0.93) and rec["std"] == pytest.approx(SAMPLE_STD) and rec["n"] == 3
    assert [rec["seed 1"], rec["seed 2"], rec["seed 3"]] == [0.90, 0.92, 0.97]
    assert folder / "comparison.csv" in written and folder / f"seeds_{GROUP}.csv" in written


def test_cli_compare_expands_an_experiment_to_its_seed_group(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments.toml").write_text(MANIFEST)
    runs, _, lone = grouped_runs(tmp_path / "runs")
    atomic_write_json(lone.path / "config.json", {"name": "cls", "task": "classify", "seed": 2, "group": GROUP})
    assert main(["compare", "cls", "--format", "csv"]) == 0  # latest run is in the group: all of it
    out = capsys.readouterr().out
    header, acc = out.splitlines()[0], next(l for l in out.splitlines() if l.startswith("final.accuracy"))
    assert header.count("cls/") == 5 and "cls seeds 1,2,3,4,2: mean" in header
    assert f",{statistics_mean([0.9, 0.92, 0.97, 0.5])!r}," in acc + ","


def statistics_mean(xs):
    import statistics

    return statistics.fmean(xs)


def test_seeds_keys_are_validated():
    bad = MANIFEST.replace("seeds = [1, 2]", "seeds = [1, 1]")
    with pytest.raises(ManifestError, match="seed 1 is listed twice"):
        parse_text(bad)
    with pytest.raises(ManifestError, match="set seed or seeds, not both"):
        parse_text(MANIFEST + "seed = 3\n")
    with pytest.raises(ManifestError, match="expected a list of integers"):
        parse_text(MANIFEST.replace("seeds = [1, 2]", 'seeds = ["a"]'))


def test_cli_runs_each_seed_in_one_group(tmp_path, monkeypatch, capsys):
    """A real (micro) classifier over seeds 1 and 2: two runs, one group, the seeds applied."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments.toml").write_text(MANIFEST)
    assert main(["run", "cls"]) == 0
    out = capsys.readouterr().out
    runs = RunStore(tmp_path / "runs").runs("cls")
    assert [r.config()["seed"] for r in runs] == [1, 2]
    assert len({r.config()["group"] for r in runs}) == 1 and all(r.status()["status"] == "finished" for r in runs)
    stats = group_stats(runs)
    accs = [r.results()["final"]["accuracy"] for r in runs]
    assert stats["final.accuracy"]["mean"] == pytest.approx(sum(accs) / 2) and stats["final.accuracy"]["n"] == 2
    assert "seeds 1, 2: accuracy " in out and "(n=2)" in out and "sample std" in out


def test_queue_submits_one_job_per_seed(tmp_path):
    from engine.manifest import load
    from engine.queue.jobqueue import JobQueue
    from support.fakes import FakeRunner

    (tmp_path / "experiments.toml").write_text(
        MANIFEST.replace('runs_dir = "runs"', f'runs_dir = "{tmp_path / "runs"}"')
    )
    q = JobQueue(load(tmp_path / "experiments.toml"), runner=FakeRunner())
    jobs = q.submit(["cls"])
    q.wait(30)
    assert [j.seed for j in jobs] == [1, 2] and len({j.group for j in jobs}) == 1
    runs = RunStore(tmp_path / "runs").runs("cls")
    assert sorted(r.config()["seed"] for r in runs) == [1, 2] and {r.config()["group"] for r in runs} == {jobs[0].group}


def test_console_compare_and_results_show_mean_std_n(tmp_path, monkeypatch):
    from textual.widgets import DataTable

    from tui.screens.compare import CompareScreen
    from tui.screens.run import RunScreen
    from support.console import make_app, wait_for

    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, history=False)
    runs, _, _ = grouped_runs(tmp_path / "runs")

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(CompareScreen(runs))
            screen = app.screen
            await pilot.press("2")
            grid = screen.query_one("#cmp-table", DataTable)
            assert await wait_for(pilot, lambda: grid.row_count > 0)
            heads = [str(c.label) for c in grid.columns.values()]
            assert heads[:2] == ["metric", "ABC mean ± std (n=3)"]  # every metric has n = 3
            assert [h.split()[-1] for h in heads[2:]] == ["A", "B", "C"]  # each run's plot marker, then its letter
            row = next(grid.get_row_at(i) for i in range(grid.row_count) if grid.get_row_at(i)[0] == "final.accuracy")
            assert str(row[1]) == "0.93 ± 0.03606"
            await pilot.press("escape")
            app.push_screen(RunScreen(run=runs[0]))
            view = app.screen
            await pilot.press("2")
            table = view.query_one("#results-table", DataTable)
            labels = lambda: [str(c.label) for c in table.columns.values()]  # noqa: E731
            assert await wait_for(pilot, lambda: any("seeds" in h for h in labels()))
            at = labels().index("seeds mean ± std (n=3)")  # beside the run's own final and best values
            assert labels()[:at] == ["metric", "final", "best (ep)"]
            row = next(table.get_row_at(i) for i in range(table.row_count) if table.get_row_at(i)[0] == "accuracy")
            assert str(row[at]) == "0.93 ± 0.03606"

    asyncio.run(go())


def test_console_compare_cells_carry_n_when_metrics_differ_in_n(tmp_path):
    from tui.screens.compare import group_columns

    runs, _, _ = grouped_runs(tmp_path / "runs")
    res = runs[0].results()
    res["final"]["f1"] = 0.5  # reported by one run only: n = 1, no std
    atomic_write_json(runs[0].path / "results.json", res)
    table = comparison_table(runs)
    groups = group_columns(table, runs)
    assert [(h, with_n) for h, _, with_n in groups] == [("ABC mean ± std", True)]
    at = groups[0][1]
    stat = {r[0]: fmt_stat({"mean": r[at], "std": r[at + 1], "n": r[at + 2]}) for r in table.rows if r[at] is not None}
    assert stat["final.accuracy"] == "0.93 ± 0.03606 (n=3)" and stat["final.f1"] == "0.5 (n=1)"


def test_a_resumed_or_launched_run_keeps_its_own_seed(tmp_path):
    from engine.job.runner import experiment_for

    m = parse_text(MANIFEST.replace("seeds = [1, 2]", "seeds = [5, 6, 7]"), tmp_path / "experiments.toml")
    assert experiment_for(m, "cls").seed == 5 and experiment_for(m, "cls", seed=7).seed == 7
    run = RunStore(tmp_path / "runs").create("cls", experiment_for(m, "cls", seed=6).to_dict() | {"group": GROUP})
    assert experiment_for(m, "cls", run).seed == 6  # what --resume and the launcher's worker ranks use
