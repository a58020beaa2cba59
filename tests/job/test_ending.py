"""A job's end written for it, by the process that started or followed it."""

import pytest

from engine.events import JobFailed, StatusChanged
from engine.job.ending import failure_events, record_end
from engine.store.runs import RunStore, RunUnavailable, RunWriter


def test_failure_events_name_the_hint_in_the_status():
    failed, status = failure_events("sbatch refused the job", "check slurm_partition")
    assert (failed.reason, failed.hint, failed.traceback) == ("sbatch refused the job", "check slurm_partition", "")
    assert (status.status, status.reason) == ("failed", "sbatch refused the job (hint: check slurm_partition)")
    assert failure_events("gone")[1].reason == "gone"


def test_record_end_writes_the_run_and_tells_the_sinks(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    seen = []

    class Sink:
        def emit(self, event):
            seen.append(event)

    events = failure_events("the job died", "see launcher.log")
    record_end(run, events, [Sink()])
    assert [type(e) for e in run.events()] == [JobFailed, StatusChanged]
    assert list(seen) == list(events)
    assert run.raw_status()["status"] == "failed"
    assert run.raw_status()["reason"] == "the job died (hint: see launcher.log)"
    RunWriter(run).open().close()  # the owner lock was given back


def test_record_end_never_writes_beside_a_live_owner(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    owner = RunWriter(run).open()
    try:
        with pytest.raises(RunUnavailable):
            record_end(run, [StatusChanged(status="interrupted", reason="stopped")])
    finally:
        owner.close()
    assert run.events() == []
