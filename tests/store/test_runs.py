"""Run store: unique sortable ids, atomic status, torn lines, following from another process, liveness."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from engine.events import EvalFinished, LogEmitted, StepLogged, from_json, to_json
from engine.files import atomic_write_json
from engine.store.runs import OwnerLock, RunStore, RunWriter, read_events, repair_events


def test_event_json_round_trip():
    ev = StepLogged(step=3, epoch=0.5, loss=float("nan"), learning_rate=1e-4, parts={"mlm_loss": 2.0})
    back = from_json(to_json(ev))
    assert back.step == 3 and back.parts == {"mlm_loss": 2.0} and back.loss != back.loss
    ev2 = EvalFinished(epoch=1, step=10, split="test", metrics={"mlm_perplexity": 12.5})
    assert from_json(to_json(ev2)) == ev2


def test_run_ids_unique_and_sortable(tmp_path):
    store = RunStore(tmp_path)
    runs = [store.create("exp", {"i": i}) for i in range(20)]
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == 20 and ids == sorted(ids)
    assert [r.run_id for r in store.runs("exp")] == ids


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    atomic_write_json(path, {"status": "running"})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(path, {"status": "finished"})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_torn_last_line_tolerated_and_repaired(tmp_path):
    path = tmp_path / "events.jsonl"
    good = to_json(LogEmitted(level="info", message="a"))
    path.write_text(good + "\n" + good[:15])
    events, offset = read_events(path)
    assert len(events) == 1 and offset == len(good) + 1
    assert repair_events(path) == 15
    assert path.read_text() == good + "\n"


@pytest.mark.parametrize("torn", [0, 15, 70_000, 200_000])
def test_repair_reads_back_from_the_end_only(tmp_path, torn):
    """The torn tail may span several 64 KiB chunks; a well-formed big file costs a few bytes of reading."""
    path = tmp_path / "events.jsonl"
    good = (to_json(LogEmitted(level="info", message="a")) + "\n") * 40_000  # about 3 MB
    path.write_bytes(good.encode() + b"x" * torn)
    with open("/proc/self/io") as fh:
        before = int(next(line for line in fh if line.startswith("rchar:")).split()[1])
    assert repair_events(path) == torn
    with open("/proc/self/io") as fh:
        read = int(next(line for line in fh if line.startswith("rchar:")).split()[1]) - before
    assert path.read_bytes() == good.encode()
    assert read < torn + 2 * 65536 + 4096, read  # the tail only, not the file's 3 MB
    path.write_bytes(b"no newline at all")
    assert repair_events(path) == 17 and path.read_bytes() == b""


def test_writer_status_and_liveness(tmp_path):
    store = RunStore(tmp_path)
    run = store.create("exp", {})
    assert run.status()["status"] == "queued"
    w = RunWriter(run).open()
    w.set_status("running")
    assert run.status()["status"] == "running" and run.owner_alive()
    w.close()
    # the owner is gone without a final status: that reads as interrupted, not running
    assert run.status()["status"] == "interrupted"


def test_second_owner_refused(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    w = RunWriter(run).open()
    try:
        with pytest.raises(RuntimeError, match="owned by another live process"):
            RunWriter(run).open()
    finally:
        w.close()


def test_killed_owner_detected(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    code = textwrap.dedent(f"""
        import sys, time
        from engine.store.runs import Run, RunWriter
        from pathlib import Path
        w = RunWriter(Run(Path({str(run.path)!r}))).open()
        w.set_status("running")
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert run.status()["status"] == "running"
    proc.kill()
    proc.wait()
    assert run.status()["status"] == "interrupted"
    assert not OwnerLock.is_held(run.path / "owner.lock")


def test_follow_from_another_process(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    code = textwrap.dedent(f"""
        import time
        from engine.events import LogEmitted
        from engine.store.runs import Run, RunWriter
        from pathlib import Path
        w = RunWriter(Run(Path({str(run.path)!r}))).open()
        for i in range(5):
            w.emit(LogEmitted(level="info", message=str(i)))
            time.sleep(0.05)
        w.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    seen, offset = [], 0
    deadline = time.time() + 30
    while len(seen) < 5 and time.time() < deadline:
        events, offset = run.follow(offset)
        seen += [e.message for e in events]
        time.sleep(0.02)
    proc.wait()
    assert seen == ["0", "1", "2", "3", "4"]


def test_get_refuses_paths_outside_store(tmp_path):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError):
        store.get("../x/y")
    with pytest.raises(ValueError):
        store.create("../evil", {})


def test_control_requests_numbered(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    run.request("pause")
    run.request("resume")
    assert run.pending_request() == {"action": "resume", "seq": 2}
    with pytest.raises(ValueError):
        run.request("explode")


def test_non_event_lines_skipped(tmp_path):
    run = RunStore(tmp_path).create("exp", {})
    good = to_json(LogEmitted(level="info", message="ok"))
    run.events_path.write_text('"x"\n[1, 2]\n{"event": "Nope"}\n' + good + "\n")
    assert [e.message for e in run.events()] == ["ok"]
    events, _ = run.follow(0)
    assert len(events) == 1
