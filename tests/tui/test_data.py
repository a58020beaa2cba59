"""The console's data layer (no UI): run feeds, the runs list's rows, formatting."""

from __future__ import annotations

import threading
import time

import pytest

from engine.events import StepLogged
from engine.manifest import load
from engine.queue.jobqueue import JobQueue
from engine.store.follow import FeedState, RunFeed
from engine.store.listing import RowCache, primary_result
from engine.store.runs import RunStore
from tui.data import compact_value, progress_text, short_id, status_line
from support.fakes import FakeRunner, write_history, write_manifest, write_run


def test_feed_follows_a_run_directory_and_settles(tmp_path):
    run = write_run(tmp_path, "pretrain", "20260101-100000-000000-bbbb", steps=30)
    feed = RunFeed(run=run)
    state = feed.poll()
    assert [s.step for s in state.steps][:3] == [2, 4, 6] and len(state.steps) == 15
    assert [e.epoch for e in state.evals] == [0, 1, 2]
    assert state.status == "finished" and state.device == "cpu, fp32" and state.tables == ("epochs",)
    assert state.results["global_step"] == 30
    feed.poll()
    assert feed._settled  # finished and not growing: no more reading
    assert "✓ finished · step 30/30 (100%) · epoch 2.00 · 5.0k tok/s · cpu, fp32 512 MB" == status_line(state)


def test_feed_survives_bad_lines(tmp_path):
    run = write_run(tmp_path, "pretrain", "20260101-100000-000000-bbbb", steps=8, corrupt_line=True)
    with open(run.events_path, "a") as fh:
        fh.write('"a json string, not an event"\n[1, 2]\n{"event": "NoSuchEvent"}\n')
    state = RunFeed(run=run).poll()
    assert len(state.steps) == 4 and state.status == "finished"


def test_feed_notices_a_rewound_events_file(tmp_path):
    """A resumed job cuts events.jsonl back to its checkpoint; a follower must start over."""
    run = write_run(tmp_path, "pretrain", "20260101-100000-000000-bbbb", steps=30)
    feed = RunFeed(run=run)
    assert len(feed.poll().steps) == 15
    data = run.events_path.read_bytes()
    cut = data.rfind(b"\n", 0, data.index(b'"step":10,')) + 1
    with open(run.events_path, "r+b") as fh:
        fh.truncate(cut)
        fh.seek(0, 2)
        fh.write(data[cut:].replace(b'"loss":', b'"loss": ') * 2)  # longer than before
    state = feed.poll()
    assert feed.generation == 1 and len(state.steps) == 4 + 2 * 11


def test_feed_of_a_job_follows_its_run_directory(tmp_path):
    """Every job runs outside the console, so a job's feed reads its run directory (the engine's
    RunFollower) and takes its status from the queue until the run has one."""
    gate = threading.Event()
    manifest = load(write_manifest(tmp_path))
    queue = JobQueue(manifest, runner=FakeRunner(params={"gate": gate}))
    [job] = queue.submit(["params"])
    feed = RunFeed(job=job)
    queue.wait(0.5)
    state = feed.poll()
    assert state.status == "running" and state.last_step.step == 6 and state.phase == "data: fake data"
    gate.set()
    queue.wait(10)
    state = feed.poll()
    assert state.status == "finished" and state.tables == ("epochs",) and state.results["global_step"] == 6


def _starting_job(tmp_path):
    """A job that is running but has not announced its run yet (as under a launcher)."""
    start = threading.Event()
    queue = JobQueue(load(write_manifest(tmp_path)), runner=FakeRunner(params={"start_gate": start, "block": True}))
    [job] = queue.submit(["params"])
    deadline = time.time() + 5
    while time.time() < deadline and job.status != "running":
        queue.refresh()
        time.sleep(0.01)
    # The queue creates the run directory before it starts the job: requests have somewhere to go.
    assert job.status == "running" and job.reason == "starting" and job.run is not None
    return queue, job, start


def _finish(queue, job, start):
    """Never leave the blocking fake job running (its thread is not a daemon)."""
    start.set()
    queue.refresh()
    queue.control(job, "cancel")
    queue.wait(10)


def _until(queue, job, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and job.status != want:
        queue.refresh()
        time.sleep(0.02)
    return job.status == want


@pytest.mark.parametrize("action", ["cancel", "pause"])
def test_control_before_the_run_starts_is_delivered_when_it_does(tmp_path, action):
    """Under a launcher a job runs for seconds before its run announces itself: a cancel or
    pause pressed then goes to its run directory and takes effect at its first step, not dropped."""
    queue, job, start = _starting_job(tmp_path)
    try:
        if action == "pause":
            assert queue.pause(job) == "sent"
        else:
            assert "cancel requested" in queue.control(job, "cancel")
        start.set()
        want = "cancelled" if action == "cancel" else "paused"
        assert _until(queue, job, want), (job.status, job.reason)
        if action == "pause":
            assert job.run.status()["status"] == "paused"
            assert queue.pause(job) == ""  # paused already: resume is the way on
    finally:
        _finish(queue, job, start)
    assert _until(queue, job, "cancelled"), (job.status, job.reason)


def test_pause_then_cancel_before_the_start_cancel_wins(tmp_path):
    queue, job, start = _starting_job(tmp_path)
    try:
        assert queue.pause(job) == "sent"
        queue.control(job, "cancel")
        start.set()
        queue.wait(10)
    finally:
        _finish(queue, job, start)
    assert _until(queue, job, "cancelled")


def test_summaries_and_formatting(tmp_path):
    write_history(tmp_path)
    cache = RowCache()
    rows = cache.load(RunStore(tmp_path).runs())
    by_id = {s.run.run_id[-4:]: s for s in rows}
    assert by_id["aaaa"].result_text == ""  # an inspect run's parameter counts are no headline metric
    assert by_id["bbbb"].result_text == "mlm_perplexity 180"
    assert by_id["cccc"].status == "interrupted"
    assert by_id["dddd"].status == "failed" and "label column" in by_id["dddd"].reason
    assert cache.load(RunStore(tmp_path).runs())[0] is rows[0]  # unchanged finished runs come from the cache
    assert RunStore(tmp_path / "nothing").runs() == [] and cache.load(RunStore(tmp_path / "nothing").runs()) == []
    assert short_id("20261129-152312-160143-abe0") == "11-29 15:23:12"
    assert primary_result({"final": {"accuracy": 0.91234, "f1": 0.5}}) == ("accuracy", 0.91234)
    assert (
        compact_value({"matrix": [[50, 3], [4, 43]], "labels": ["neg", "pos"]})
        == "matrix: [50 3; 4 43], labels: [neg, pos]"
    )
    step = StepLogged(step=20, epoch=0.5, loss=1.0, learning_rate=1e-3, total_steps=168, eta_s=218.0)
    assert progress_text(step) == "step 20/168 11% ETA 3m38s"
    assert progress_text(step, active=False) == "step 20/168 11%"
    failed = FeedState(status="failed", reason="RuntimeError: boom", last_step=step)
    assert status_line(failed).startswith("✗ failed: RuntimeError: boom · step 20/168")


def test_status_line_fits_one_line_and_a_paused_run_has_no_eta():
    """At 80 columns the run view's status line is one line: the memory, throughput, device and
    epoch give way, the status, step and ETA stay; a paused run shows no ETA (it is not moving)."""
    from dataclasses import replace

    from engine.events import StepLogged
    from engine.store.follow import FeedState

    step = StepLogged(
        step=20,
        total_steps=168,
        epoch=0.48,
        loss=2.0,
        learning_rate=1e-4,
        eta_s=218.0,
        tokens_per_s=5000.0,
        memory_mb=12345.0,
    )
    state = FeedState(status="running", last_step=step, device="cuda:0 bf16 (NVIDIA H100 80GB HBM3)")
    full = status_line(state)
    assert len(full) > 78 and "ETA 3m38s" in full
    fitted = status_line(state, 78)
    assert len(fitted) <= 78 and "step 20/168 (11%)" in fitted and "ETA 3m38s" in fitted, fitted
    assert "ETA" not in status_line(replace(state, status="paused"))


def test_pause_resume_and_cancel_show_in_the_log():
    """The Log tab reads the feed's log lines: a pause, its resume and a cancel are among them."""
    from engine.events import LogEmitted, MetricStore, StatusChanged

    store = MetricStore()
    for status in ("running", "paused", "running", "cancelled"):
        store.emit(StatusChanged(status=status, reason="cancelled by request" if status == "cancelled" else ""))
    store.emit(LogEmitted(level="info", message="checkpoint saved"))
    assert [ev.message for ev in store.logs] == [
        "paused",
        "resumed",
        "cancelled: cancelled by request",
        "checkpoint saved",
    ]


def test_numbers_read_side_by_side_share_one_format():
    """A results row writes every float with the same decimals (0.970 beside 0.972, 36.0 beside
    40.2); ints, empty cells and numbers too large or small for decimals keep fmt_num's form."""
    from engine.tables import fmt_same
    from tui.widgets.results import results_rows
    from support.fakes import TASK_EVAL
    from engine.events import EvalFinished

    assert fmt_same([0.97, 0.972, None, 0.48, 1]) == ["0.970", "0.972", "", "0.480", "1"]
    assert fmt_same([69.6, 36.0, 40.2]) == ["69.6", "36.0", "40.2"]
    assert fmt_same([1e-7, 0.5]) == ["1e-07", "0.5"]
    assert fmt_same([320.8, 3400.0, 1545.5, 1480]) == ["320.8", "3,400.0", "1,545.5", "1,480"]  # thousands as ints have them
    evals = [EvalFinished(step=10 * e, epoch=e, split="validation", metrics=TASK_EVAL["classify"](e)) for e in (1, 2)]
    _, rows, _ = results_rows(evals, {"final": {**evals[-1].metrics, "accuracy": 0.97}})
    accuracy = next(r for r in rows if r[0] == "accuracy")
    cells = [str(c) for c in accuracy[1:] if str(c)]
    assert len({len(c.split(" ")[0].split(".")[1]) for c in cells}) == 1, cells


def test_console_and_report_name_classes_alike():
    """One function names classes for the console's confusion matrix and the report's."""
    from engine.metrics.classification import class_labels
    from tui.widgets.results import class_labels as console_labels

    sst2 = {"dataset": "embedded:sst2"}
    assert class_labels([0, 1], None, sst2) == ["0 negative", "1 positive"]
    assert class_labels([0, 1], ["neg", "pos"]) == ["0 neg", "1 pos"]
    assert class_labels([0, 1, 2]) == ["class 0", "class 1", "class 2"]
    assert console_labels({"classes": [0, 1]}, 2, sst2) == ["0 negative", "1 positive"]  # no class_names saved


def test_a_run_stopped_early_shows_why_it_finished_before_its_end():
    step = StepLogged(step=24, epoch=4.0, loss=1.0, learning_rate=1e-3, total_steps=60)
    why = "early stopping: accuracy did not improve for 2 evaluation(s)"
    assert status_line(FeedState(status="finished", reason=why, last_step=step)).startswith(f"✓ finished: {why} · ")
    assert status_line(FeedState(status="finished", last_step=step)).startswith("✓ finished · step 24/60")
