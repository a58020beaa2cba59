"""Console main screen (Pilot, 80x24): experiments, jobs, runs, marks, filter, control keys.

Jobs run through a fake runner (support.fakes.FakeRunner) that writes real run
directories and obeys pause/resume/cancel through the engine's control path.
"""

from __future__ import annotations

import asyncio

from tui.data import short_id
from tui.screens.dialogs import ConfirmDialog
from tui.screens.main import MainScreen
from support.console import make_app, screen_text, wait_for
from support.fakes import FakeRunner
from tui.widgets.experiments import ExperimentsPane
from tui.widgets.jobs import JobsPane
from tui.widgets.runs import RunsPane

SIZE = (80, 24)


def drive(coro):
    return asyncio.run(coro)


def statuses(app):
    return [(j.experiment, j.status) for j in app.queue.jobs]


def test_startup_lists_experiments_with_latest_run_status(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            pane = app.screen.query_one(ExperimentsPane)
            assert await wait_for(pilot, lambda: "failed" in screen_text(app))
            text = screen_text(app)
            for name in ("params", "pretrain", "finetune", "baseline"):
                assert name in text
            assert "inspect" in text and "bert-micro" in text and "wikitext" in text
            assert pane.statuses["params"][0] == "finished"
            assert pane.statuses["pretrain"][0] == "interrupted"  # running on disk, owner gone
            assert pane.statuses["finetune"][0] == "failed"
            assert "pretrain" in text.split("finetune", 1)[1]  # its dependency column
            assert app.focused is pane.table

    drive(go())


def test_filter_and_escape(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            pane = app.screen.query_one(ExperimentsPane)
            await pilot.press("slash", *"tiny")
            assert pane.table.row_count == 1  # only bert-tiny's baseline
            await pilot.press("enter")
            assert app.focused is pane.table and pane.filter_text == "tiny"
            await pilot.press("escape")
            assert pane.table.row_count == 4
            await pilot.press("slash", *"zzz")
            assert "no match" in screen_text(app)
            await pilot.press("escape")  # esc in the filter line drops it
            assert pane.table.row_count == 4 and app.focused is pane.table

    drive(go())


def test_run_queues_missing_dependency_first(tmp_path):
    async def go():
        app = make_app(tmp_path, history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("down", "down", "r")  # finetune: needs pretrain
            assert [j.experiment for j in app.queue.jobs] == ["pretrain", "finetune"]
            assert "dependencies first: pretrain" in screen_text(app)
            assert await wait_for(pilot, lambda: all(j.status == "finished" for j in app.queue.jobs))
            await pilot.press("2")
            assert await wait_for(pilot, lambda: "finished" in screen_text(app))
            assert app.screen.query_one(JobsPane).table.row_count == 2

    drive(go())


def test_marks_queue_several(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("space", "down", "down", "space")  # params, baseline (cursor moves on mark)
            pane = app.screen.query_one(ExperimentsPane)
            assert pane.marked == {"params", "baseline"}
            assert "●" in screen_text(app)
            await pilot.press("r")
            assert [j.experiment for j in app.queue.jobs] == ["params", "baseline"]
            assert pane.marked == set()

    drive(go())


def test_pause_resume_cancel_retry_from_jobs_tab(tmp_path):
    async def go():
        runner = FakeRunner(pretrain={"block": True, "steps": 4})
        app = make_app(tmp_path, runner)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("down", "r", "2")
            job = app.queue.jobs[0]
            assert await wait_for(pilot, lambda: job.run is not None and job.metrics.last_step is not None)
            await pilot.press("p")
            assert await wait_for(pilot, lambda: job.status == "paused")
            assert await wait_for(pilot, lambda: "paused" in screen_text(app))
            await pilot.press("p")
            assert await wait_for(pilot, lambda: job.status == "running")
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("n")  # no: nothing happens
            assert job.status == "running"
            await pilot.press("c", "y")
            assert await wait_for(pilot, lambda: job.status == "cancelled")
            assert job.run.status()["status"] == "cancelled"
            # the row says what to do, whole at 80 columns (it was cut to "cancelled by request; resume t")
            assert await wait_for(pilot, lambda: f"{short_id(job.run.run_id)} · R retries" in screen_text(app))
            run_path, n_runs = job.run.path, len(app.queue.store.runs("pretrain"))
            await pilot.press("R")  # resume the cancelled run from its checkpoint: the same job, one row
            assert len(app.queue.jobs) == 1
            assert await wait_for(pilot, lambda: job.status == "running" and job.run.path == run_path)
            assert len(app.queue.store.runs("pretrain")) == n_runs  # resumed, no new run
            await pilot.press("c", "y")
            assert await wait_for(pilot, lambda: job.status == "cancelled")

    drive(go())


def test_failed_job_shows_reason_and_queue_goes_on(tmp_path):
    async def go():
        runner = FakeRunner(baseline={"fail": "CUDA out of memory"})
        app = make_app(tmp_path, runner)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            app.screen.run_experiments(["baseline", "params"])
            assert await wait_for(pilot, lambda: [s for _, s in statuses(app)] == ["failed", "finished"])
            await pilot.press("2")
            assert await wait_for(pilot, lambda: "RuntimeError: CUDA out of memory" in screen_text(app))
            # the failed job's whole reason on the status line when highlighted
            await pilot.press("down", "up")
            assert "baseline failed: RuntimeError: CUDA out of memory" in screen_text(app)

    drive(go())


def test_move_queued_jobs(tmp_path):
    async def go():
        runner = FakeRunner(params={"block": True})
        app = make_app(tmp_path, runner)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            app.screen.run_experiments(["params", "pretrain", "baseline"])
            await pilot.press("2")
            jobs = app.screen.query_one(JobsPane)
            assert await wait_for(pilot, lambda: jobs.table.row_count == 3)
            await pilot.press("down", "down", "K")  # baseline up
            assert [j.experiment for j in app.queue.jobs] == ["params", "baseline", "pretrain"]
            assert jobs.cursor_key == str(app.queue.jobs[1].id)
            await pilot.press("shift+down")
            assert [j.experiment for j in app.queue.jobs] == ["params", "pretrain", "baseline"]
            await pilot.press("J")  # already last
            assert [j.experiment for j in app.queue.jobs] == ["params", "pretrain", "baseline"]
            await pilot.press("up", "up", "K")  # the running job does not move
            assert "only waiting jobs move" in screen_text(app)
            await pilot.press("c", "y")
            assert await wait_for(pilot, lambda: app.queue.jobs[0].status == "cancelled")
            assert await wait_for(pilot, lambda: all(j.done for j in app.queue.jobs))

    drive(go())


def test_runs_tab_history_select_control(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("3")
            runs = app.screen.query_one(RunsPane)
            assert await wait_for(pilot, lambda: runs.table.row_count == 4)
            text = screen_text(app)
            assert "interrupted" in text and "mlm_perplexity 180" in text and "01-02 11:00:00" in text
            assert app.focused is runs.table
            await pilot.press("space", "space")
            assert len(runs.marked) == 2
            await pilot.press("escape")
            assert runs.marked == set()
            await pilot.press("slash", *"params", "enter")
            assert runs.table.row_count == 1
            await pilot.press("p")  # finished: nothing to pause
            assert "nothing to pause" in screen_text(app)
            await pilot.press("c")
            assert "nothing to cancel" in screen_text(app)
            await pilot.press("escape", "up", "up")  # cursor stays on params (last); up twice: the interrupted run
            await pilot.press("R")
            assert await wait_for(pilot, lambda: app.queue.jobs and app.queue.jobs[0].done)
            assert app.queue.jobs[0].run.run_id == "20260102-100000-000000-cccc"  # that run, resumed
            assert app.queue.jobs[0].status == "finished"

    drive(go())


def test_runs_of_another_process_are_controlled_via_requests(tmp_path):
    async def go():
        import threading

        from engine.manifest import load
        from engine.queue.jobqueue import JobQueue

        app = make_app(tmp_path, history=False)
        # "another process": a second client of the same queue on disk, with its own runner
        other = JobQueue(load(tmp_path / "experiments.toml"), runner=FakeRunner(default={"block": True}))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            other.submit(["params"])
            job = other.jobs[0]
            assert await wait_for(pilot, lambda: other.get(job.id).run is not None)
            await pilot.press("3")
            runs = app.screen.query_one(RunsPane)
            assert await wait_for(pilot, lambda: "running" in screen_text(app), timeout=8)
            await pilot.press("p")
            assert await wait_for(pilot, lambda: other.get(job.id).status == "paused")
            await pilot.press("p")
            assert await wait_for(pilot, lambda: other.get(job.id).status == "running")
            await pilot.press("c", "y")
            assert await wait_for(pilot, lambda: other.get(job.id).status == "cancelled")
            assert runs.table.row_count == 1
        other.shutdown(timeout=5)
        assert not any(t.name.startswith("job-") and t.is_alive() for t in threading.enumerate())

    drive(go())


def test_empty_runs_dir_and_no_experiments_runs(tmp_path):
    async def go():
        app = make_app(tmp_path, history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("enter")  # params has no runs yet
            assert "has no runs yet" in screen_text(app)
            await pilot.press("2")
            assert "no jobs yet" in screen_text(app)
            await pilot.press("3")
            assert await wait_for(pilot, lambda: "no runs on disk yet" in screen_text(app))
            await pilot.press("v", "e", "p", "c", "R", "space")  # nothing selected: no-ops, no crash
            assert isinstance(app.screen, MainScreen)

    drive(go())


def test_experiments_tab_at_80_columns_keeps_data_and_after_and_counts_study_steps(tmp_path):
    """Hub ids shrink to their name (the whole id is on the line below when highlighted), so the
    data and after columns are whole at 80x24; a study counts a step done once it has a finished
    run, even when a later retry of it failed."""
    import asyncio

    from support.console import make_app, screen_text, wait_for
    from support.fakes import MANIFEST, write_run
    from tui.screens.main import MainScreen
    from tui.widgets.experiments import study_cell

    manifest = MANIFEST + (
        '\n[[experiment]]\nname = "sst2-base"\ntask = "classify"\nmodel = "google-bert/bert-base-uncased"\n'
        'dataset = "stanfordnlp/sst2"\ntext_column = "sentence"\ndepends_on = ["baseline"]\n'
        '\n[[experiment]]\nname = "all"\ntask = "study"\nsteps = ["pretrain", "finetune"]\n'
    )
    write_run(tmp_path / "runs", "pretrain", "20260101-100000-000000-aaaa")
    write_run(tmp_path / "runs", "pretrain", "20260102-100000-000000-bbbb", status="failed")

    async def go():
        app = make_app(tmp_path, manifest=manifest, history=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            assert await wait_for(pilot, lambda: "1/2 done" in screen_text(app))
            text = screen_text(app)
            row = next(line for line in text.splitlines() if "sst2-base" in line)
            assert "bert-base-uncased" in row and "sst2" in row and row.rstrip().endswith("baseline"), row
            study = next(line for line in text.splitlines() if " all " in line)
            assert "1/2 done" in study and "✗" not in study, study

    asyncio.run(go())

    class Study:
        steps = ("a", "b", "c")

    statuses = {"a": ("failed", ""), "b": ("failed", ""), "c": ("finished", "")}
    assert study_cell(Study, statuses, {"a", "c"}) == "2/3 done, 1 ✗"


def test_experiments_of_the_real_manifest_fit_80_columns(tmp_path):
    """Every cell of the shipped manifest's experiments whole at 80 columns: the `after` column (cut to
    two characters, with a horizontal scrollbar) gives way and the dependencies move to the status line;
    a wider terminal shows it again."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "experiments.toml").read_text()

    async def go():
        app = make_app(tmp_path, manifest=text, history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.pause(0.2)
            lines = screen_text(app).splitlines()
            row = next(line for line in lines if "demo-params-finetuned" in line)
            assert "run:demo-sst2" in row and not row.rstrip().endswith("demo")
            assert not any(glyph in line for line in lines[3:-4] for glyph in "▁▂▃▄▅▆▇▉▊▋▌▍▎▏")
            pane = app.screen.query_one(ExperimentsPane)
            assert not pane.show_after
            pane.table.move_cursor(row=[k for k, _ in pane._rows].index("demo-params-finetuned"))
            assert await wait_for(pilot, lambda: "after demo-sst2, demo-squad" in screen_text(app))
            await pilot.resize_terminal(120, 24)
            assert await wait_for(pilot, lambda: pane.show_after and pane.cursor_key == "demo-params-finetuned")
            assert await wait_for(
                pilot,
                lambda: any(
                    "demo-params-finetuned" in line and line.rstrip().endswith("demo-sst2, demo-squad")
                    for line in screen_text(app).splitlines()
                ),
            )

    drive(go())


def test_a_sweep_progress_cell_keeps_every_name_whole_at_80_columns(tmp_path):
    """A sweep's progress (``12/12 trials, best 0.9406``) widens the last-run column: the data and task
    columns give way after `after`, and no name or cell is cut nor a horizontal scrollbar shown."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "experiments.toml").read_text()
    sweep = """
[[experiment]]
name = "lr-sweep"
task = "classify"
model = "run:demo-pretrain"
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
[experiment.sweep]
method = "tpe"
objective = "accuracy"
trials = 12
[experiment.sweep.parameters]
learning_rate = { low = 1e-5, high = 3e-3, log = true }
"""

    async def go():
        app = make_app(tmp_path, manifest=text + "\n" + sweep, history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            pane = app.screen.query_one(ExperimentsPane)
            pane.set_experiments(pane.experiments, pane.statuses, sweeps={"lr-sweep": "12/12 trials, best 0.9406"})
            await pilot.pause(0.2)
            assert pane.shown == (" ", "experiment", "last run", "model")
            pane.table.move_cursor(row=len(pane._rows) - 1, animate=False)  # the sweep, the last row
            assert await wait_for(pilot, lambda: "lr-sweep" in screen_text(app))
            lines = screen_text(app).splitlines()
            row = next(line for line in lines if "lr-sweep" in line)
            assert "12/12 trials, best 0.9406" in row and "run:demo-pretrain" in row
            names = {e.name for e in pane.experiments} | {"experiment"}
            firsts = [line.split()[0] for line in lines[3:-4] if line.strip() and line.split()[0][0].isalpha()]
            assert firsts and set(firsts) <= names, firsts  # every name on screen whole
            assert not any(glyph in line for line in lines[3:-4] for glyph in "▁▂▃▄▅▆▇▉▊▋▌▍▎▏")
            await pilot.resize_terminal(140, 24)
            assert await wait_for(pilot, lambda: pane.shown == ExperimentsPane.COLUMNS)

    drive(go())


def test_queueing_a_sweep_says_its_trials_once():
    from engine.manifest import parse_text
    from tui.screens.base import queued_words

    manifest = parse_text(
        '[[experiment]]\nname = "sw"\ntask = "classify"\nmodel = "bert-micro"\ndataset = "embedded:sst2"\n'
        '[experiment.sweep]\nmethod = "grid"\n[experiment.sweep.parameters]\nlearning_rate = [1e-4, 1e-3]\n'
        '[[experiment]]\nname = "cls"\ntask = "classify"\nmodel = "bert-micro"\ndataset = "embedded:sst2"\n'
    )
    assert queued_words(["pre", "sw", "sw", "cls", "cls", "cls"], manifest) == "pre, sw (2 trials), cls (3 jobs)"
    assert queued_words([], manifest) == ""
