"""The queue folder as untrusted input: ``runs/.queue`` is shared, hand-edited and damaged.

A bad entry is set apart (quarantined) with a one-line reason, shown by ``lmconsole queue`` and kept
in ``quarantine.json``, never run; a file that is not a queue is moved aside, never overwritten;
duplicate ids and dependency cycles never make the scheduler spin; jobs and the scheduler never
import from the manifest's folder; nothing under ``.queue`` is written through a link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.events import json_safe
from engine.manifest import load
from engine.queue.entry import EntryState, QueueEntry
from engine.queue.jobqueue import JobQueue
from engine.queue.queuefile import QueueDirError, QueueFile
from engine.queue.schedule import advance
from support import PYTHONPATH
from support.fakes import MANIFEST, write_manifest

GOOD = {
    "depends_on": [],
    "devices": [],
    "experiment": "params",
    "gpus": 0,
    "id": 1,
    "manifest": "/work/exp/experiments.toml",
    "pid": None,
    "reason": "",
    "resume": False,
    "run": None,
    "state": "queued",
    "submitted": 1767261590.5,
}


def _write(qf: QueueFile, data) -> None:
    qf.dir.mkdir(parents=True, exist_ok=True)
    qf.path.write_text(data if isinstance(data, str) else json.dumps(data))


def _reasons(qf: QueueFile) -> list[str]:
    return [q.reason for q in qf.quarantined()]


class Recorder:
    """A launcher that starts nothing and records what the scheduler would start."""

    def __init__(self):
        self.started: list[int] = []

    def alive(self, entry):
        return False

    def start(self, queue_file, entry, devices):
        self.started.append(entry.id)
        return 0


# -- entries: validated, set apart, never run ------------------------------------------------------

BAD_ENTRIES = {
    "absolute run": (
        GOOD | {"id": 2, "run": "/some/other/folder", "resume": True},
        "run must be <experiment>/<run id>",
    ),
    "dotdot run": (GOOD | {"id": 2, "run": "../../elsewhere/tp/r1", "resume": True}, "run must be"),
    "run of another experiment": (GOOD | {"id": 2, "run": "pretrain/20260101-x"}, "belongs to another experiment"),
    "no id": ({k: v for k, v in GOOD.items() if k != "id"}, "no id"),
    "gpus a string": (GOOD | {"id": 2, "gpus": "x"}, "gpus must be a whole number"),
    "experiment a number": (GOOD | {"id": 2, "experiment": 5}, "experiment must be an experiment name"),
    "experiment a path": (GOOD | {"id": 2, "experiment": "../x"}, "experiment must be an experiment name"),
    "relative manifest": (GOOD | {"id": 2, "manifest": "evil/experiments.toml"}, "manifest must be an absolute"),
    "started without run": (GOOD | {"id": 2, "state": "started"}, "started without a run directory"),
    "resume a string": (GOOD | {"id": 2, "resume": "yes"}, "resume must be true or false"),
    "escape in reason": (GOOD | {"id": 2, "pid": "\x1b]0;T\x07"}, "pid must be a whole number"),
}


@pytest.mark.parametrize("bad,reason", BAD_ENTRIES.values(), ids=list(BAD_ENTRIES))
def test_a_bad_entry_is_quarantined_and_the_good_one_stays(tmp_path, bad, reason):
    qf = QueueFile(tmp_path / "runs")
    _write(qf, {"format": 1, "next_id": 3, "jobs": [GOOD, bad]})
    state = qf.read()
    assert [e.id for e in state.jobs] == [1]
    [q] = state.quarantined
    assert reason in q.reason and "\x1b" not in q.reason and "\n" not in q.reason
    with qf.change() as state:  # the change moves it to quarantine.json, beside the queue
        assert [e.id for e in state.jobs] == [1]
    assert [e["id"] for e in json.loads(qf.path.read_text())["jobs"]] == [1]
    kept = json.loads(qf.quarantine_path.read_text())["entries"]
    assert [k["entry"] for k in kept] == [bad] and reason in kept[0]["reason"]
    assert _reasons(qf) == [kept[0]["reason"]]  # shown once, from the file now


def test_non_objects_in_jobs_are_quarantined_not_a_type_error(tmp_path):
    qf = QueueFile(tmp_path / "runs")
    _write(qf, {"jobs": [1, "x", None, GOOD]})
    state = qf.read()
    assert [e.id for e in state.jobs] == [1] and len(state.quarantined) == 3
    assert state.next_id == 2


@pytest.mark.parametrize("next_id", [None, "7", -1, 1])
def test_a_missing_or_bad_next_id_never_reuses_an_id(tmp_path, next_id):
    qf = QueueFile(tmp_path / "runs")
    data = {"jobs": [GOOD | {"id": 5}]} | ({} if next_id is None else {"next_id": next_id})
    _write(qf, data)
    with qf.change() as state:
        assert state.add("params", "/m.toml", gpus=0).id == 6


def test_an_entry_whose_run_folder_links_outside_is_quarantined(tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "r1").mkdir(parents=True)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "params").symlink_to(outside)
    qf = QueueFile(runs)
    _write(qf, {"jobs": [GOOD | {"run": "params/r1", "resume": True, "state": "queued"}]})
    state = qf.read()
    assert state.jobs == [] and "leads outside the runs directory" in state.quarantined[0].reason


def test_escaping_run_entries_are_never_started(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))
    (tmp_path / "elsewhere" / "tp" / "r1").mkdir(parents=True)
    qf = QueueFile(m.runs_dir)
    manifest = str(Path(m.path).resolve())
    _write(
        qf,
        {
            "jobs": [
                GOOD | {"id": 1, "manifest": manifest, "run": "/" + str(tmp_path / "elsewhere/tp/r1"), "resume": True},
                GOOD | {"id": 2, "manifest": manifest, "run": "../../elsewhere/tp/r1", "resume": True},
                GOOD | {"id": 3, "manifest": manifest},
            ]
        },
    )
    launcher = Recorder()
    assert advance(qf, m, launcher) == [3] and launcher.started == [3]
    assert list((tmp_path / "elsewhere" / "tp" / "r1").iterdir()) == []


def test_duplicate_ids_start_one_job_and_quarantine_the_other(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))
    qf = QueueFile(m.runs_dir)
    manifest = str(Path(m.path).resolve())
    _write(qf, {"jobs": [GOOD | {"manifest": manifest}, GOOD | {"manifest": manifest, "experiment": "pretrain"}]})
    launcher = Recorder()
    assert advance(qf, m, launcher) == [1]
    assert advance(qf, m, launcher) == []  # not again on the next pass (the scheduler's twice a second)
    assert _reasons(qf) == ["job #1: a second entry with id 1"]


def test_a_dependency_cycle_is_quarantined_and_nothing_waits_forever(tmp_path):
    qf = QueueFile(tmp_path / "runs")
    _write(
        qf,
        {
            "jobs": [
                GOOD | {"id": 1, "depends_on": [2]},
                GOOD | {"id": 2, "depends_on": [1]},
                GOOD | {"id": 3, "depends_on": [3]},
                GOOD | {"id": 4, "depends_on": [1]},  # waits on a quarantined job: set apart too
                GOOD | {"id": 5, "depends_on": [9]},  # on a job that is not in the queue
                GOOD | {"id": 6},
            ]
        },
    )
    state = qf.read()
    assert [e.id for e in state.jobs] == [6]
    reasons = [q.reason for q in state.quarantined]
    assert "job #1: its dependencies go round in a circle back to it" in reasons
    assert "job #3: its dependencies go round in a circle back to it" in reasons
    assert "job #5: depends on job #9, which is not in the queue" in reasons
    assert "job #4: depends on job #1, which is not in the queue" in reasons


# -- a queue.json that is not a queue: moved aside, told, never overwritten ---------------------------------

DAMAGED = {
    "truncated": '{"format": 1, "next_id": 3, "jobs": [{"id": 1, "experiment": "params", "sta',
    "binary": "\x00\xff\xfe garbage",
    "a list": "[1, 2]",
    "null": "null",
    "jobs a dict": '{"jobs": {"1": {"experiment": "params"}}}',
    "nested too deep": "[" * 100000 + "]" * 100000,
}


@pytest.mark.parametrize("text", DAMAGED.values(), ids=list(DAMAGED))
def test_an_unreadable_queue_file_is_moved_aside_and_a_new_queue_starts(tmp_path, text):
    qf = QueueFile(tmp_path / "runs")
    _write(qf, text)
    assert qf.read().jobs == [] and qf.read().damaged  # readers see why, nothing moves yet
    with qf.change() as state:
        state.add("pretrain", "/m.toml", gpus=0)
    [aside] = [p for p in qf.dir.iterdir() if p.name.startswith("queue.json.damaged-")]
    assert aside.read_bytes() == text.encode()  # what it held, kept
    assert [e["experiment"] for e in json.loads(qf.path.read_text())["jobs"]] == ["pretrain"]
    [note] = _reasons(qf)
    assert note.startswith("queue.json ") and aside.name in note
    if "truncated" in text or '"experiment": "params"' in text:
        assert "it named params" in note  # what it held, as far as it can be read


def test_queue_lists_quarantined_entries_and_a_damaged_file_without_a_traceback(tmp_path):
    manifest = write_manifest(tmp_path, MANIFEST)
    qf = QueueFile(tmp_path / "runs")
    _write(qf, {"jobs": [1, GOOD | {"id": 2, "run": "/etc", "pid": 1}, {"experiment": "params"}]})
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, HF_HUB_OFFLINE="1")
    cli = [sys.executable, "-m", "tui.entry", "--manifest", str(manifest), "queue"]
    proc = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all("blocked" in ln and "quarantined:" in ln for ln in lines), proc.stdout
    assert "run must be <experiment>/<run id>" in proc.stdout and "no id" in proc.stdout
    rows = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True, env=env).stdout)
    assert [r["quarantined"] for r in rows] == [True, True, True]


# -- random damage: never a traceback, an escape, a run, or a lost good entry ---------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True), st.text(max_size=8))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3))
KEYS = sorted(GOOD) + ["seed", "group", "held", "seen_seq", "started"]
DAMAGE = st.fixed_dictionaries({}, optional={k: values for k in KEYS}) | values
RUN_REFS = st.sampled_from(["/tmp/x", "../../x/y", "params/../../x", "params/r1", "params", "", ".queue/x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    good_ids=st.lists(st.integers(1, 40), min_size=1, max_size=4, unique=True),
    damage=st.lists(st.tuples(st.integers(0, 4), DAMAGE, RUN_REFS), max_size=4),
    top=st.dictionaries(st.sampled_from(["next_id", "format", "x"]), values, max_size=2),
)
def test_random_damage_never_raises_escapes_or_loses_a_good_entry(tmp_path_factory, good_ids, damage, top):
    qf = QueueFile(tmp_path_factory.mktemp("q") / "runs")
    jobs: list = [GOOD | {"id": i} for i in good_ids]
    for where, bad, ref in damage:
        if isinstance(bad, dict) and "run" in bad:
            bad["run"] = ref
        jobs.insert(min(where, len(jobs)), bad)
    _write(qf, top | {"jobs": jobs})
    state = qf.read()
    for e in state.jobs:
        assert isinstance(e.id, int) and e.id > 0
        assert e.run is None or (qf.dir.parent / e.run).resolve().is_relative_to(qf.dir.parent.resolve())
    assert len({e.id for e in state.jobs}) == len(state.jobs)  # no id twice
    assert state.next_id > max(e.id for e in state.jobs)
    with qf.change() as changed:
        kept = [e.to_json() for e in changed.jobs]
    # every well-formed entry is still in the queue, or (a bad one took its id first) in quarantine
    held = [q.data for q in qf.quarantined()]
    for i in good_ids:
        assert GOOD | {"id": i} in kept or GOOD | {"id": i} in held
    # nothing dropped silently (as the file stores it: NaN and infinity become strings)
    assert all(j in held or j in kept for j in json_safe(jobs))
    advance(qf, load_cached(), Recorder())  # the scheduler's pass copes too


_MANIFEST_CACHE: list = []


def load_cached():
    """A manifest for the scheduler pass of the property test (written once per session)."""
    if not _MANIFEST_CACHE:
        import tempfile

        folder = Path(tempfile.mkdtemp())
        _MANIFEST_CACHE.append(load(write_manifest(folder, MANIFEST)))
    return _MANIFEST_CACHE[0]


# -- neighbours of queue.json: links and folders in place of files -------------------------------------------


def test_a_linked_scheduler_lock_is_never_written_through(tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("mine")
    qf = QueueFile(tmp_path / "runs")
    qf.dir.mkdir(parents=True)
    qf.scheduler_lock.symlink_to(victim)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.queue.scheduler", "--runs-dir", str(qf.dir.parent), "--manifest", "/x.toml"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=PYTHONPATH),
        timeout=30,
    )
    assert victim.read_text() == "mine"
    assert proc.returncode == 2 and "scheduler.lock" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["queue.lock", "scheduler.lock", "logs"])
def test_a_folder_or_link_in_place_of_a_queue_file_is_one_clear_message(tmp_path, name):
    m = load(write_manifest(tmp_path, MANIFEST))
    qf = QueueFile(m.runs_dir)
    qf.dir.mkdir(parents=True)
    if name == "logs":
        (tmp_path / "elsewhere").mkdir()
        qf.logs.symlink_to(tmp_path / "elsewhere")
    else:
        (qf.dir / name).mkdir()
    with pytest.raises(QueueDirError, match=f"{name} is not a"):
        JobQueue(m).submit(["params"])
    assert not list((tmp_path / "elsewhere").iterdir()) if name == "logs" else True


def test_queue_dir_as_a_file_reads_as_a_damaged_queue_and_refuses_changes(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))
    Path(m.runs_dir).mkdir()
    (Path(m.runs_dir) / ".queue").write_text("x")
    q = JobQueue(m)
    [job] = q.refresh()  # the console starts and shows why
    assert job.quarantined and ".queue is not a folder" in job.reason
    with pytest.raises(QueueDirError):
        q.submit(["params"])


# -- jobs and the scheduler never import from the manifest's folder ---------------------------------------------


def test_modules_beside_the_manifest_change_nothing_in_queued_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_JOB_RUNNER", "support.fakes:process_runner")
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")
    monkeypatch.setenv("LMCONSOLE_FAKE", json.dumps({"default": {"steps": 2, "delay": 0.01}}))
    boom = (  # leaves a trace if imported, then stops whoever imported it
        "import pathlib; pathlib.Path(__file__).with_name('IMPORTED-' + __name__).write_text('x')\n"
        "raise SystemExit(9)\n"
    )
    for name in ("datasets.py", "torch.py", "secrets.py", "support.py"):
        (tmp_path / name).write_text(boom)
    (tmp_path / "engine" / "queue").mkdir(parents=True)
    (tmp_path / "engine" / "__init__.py").write_text(boom)
    (tmp_path / "engine" / "queue" / "__init__.py").write_text(boom)
    m = load(write_manifest(tmp_path, MANIFEST))
    q = JobQueue(m)
    q.submit(["params"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and q.refresh()[0].status in ("queued", "running"):
        time.sleep(0.2)
    assert [j.status for j in q.refresh()] == ["finished"], (q.jobs[0].reason, _logs(QueueFile(m.runs_dir)))
    assert not list(tmp_path.rglob("IMPORTED-*"))


def _logs(qf: QueueFile) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(qf.logs.glob("*.log")))


def test_an_entry_built_here_reads_back_unchanged():
    e = QueueEntry(id=3, experiment="params", state=EntryState.STARTED, run="params/20260101-x", manifest="/m.toml")
    assert QueueEntry.from_json(e.to_json()) == e


# -- liveness: a pid is the job's only if its process started with the job --------------------------------


def test_a_started_entry_naming_an_older_process_is_not_running(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))
    q = JobQueue(m)
    run = q.store.create("params", {})
    qf = QueueFile(m.runs_dir)
    manifest = str(Path(m.path).resolve())
    entry = GOOD | {"manifest": manifest, "state": "started", "run": f"params/{run.run_id}", "started": time.time()}
    _write(qf, {"jobs": [entry | {"pid": 1}]})  # pid 1 lives, but started long before this job
    [job] = q.refresh()
    assert job.status == "failed" and "exited before it started" in job.reason


def test_a_finished_jobs_lingering_process_still_holds_its_slot(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))  # max_parallel_jobs = 1
    store = JobQueue(m).store
    run = store.create("params", {})
    (run.path / "status.json").write_text(json.dumps({"status": "finished"}))
    qf = QueueFile(m.runs_dir)
    manifest = str(Path(m.path).resolve())
    started = GOOD | {"manifest": manifest, "state": "started", "run": f"params/{run.run_id}", "pid": 5}
    _write(qf, {"jobs": [started, GOOD | {"id": 2, "manifest": manifest}]})

    class Lingering(Recorder):
        def alive(self, entry):
            return entry.id == 1  # its run says finished, its process has not exited yet

    assert advance(qf, m, Lingering()) == []
    assert advance(qf, m, Recorder()) == [2]  # once it exits, the next one starts


# -- an entry's manifest: the user's own, keeping its runs in this runs directory ---------------------------


def _foreign_manifest(tmp_path: Path, runs_dir: str) -> str:
    other = tmp_path / "other"
    other.mkdir()
    return str(write_manifest(other, MANIFEST.replace('runs_dir = "runs"', f'runs_dir = "{runs_dir}"')).resolve())


def test_an_entry_naming_a_manifest_of_another_runs_directory_never_starts(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))
    qf = QueueFile(m.runs_dir)
    _write(qf, {"jobs": [GOOD | {"manifest": _foreign_manifest(tmp_path, "elsewhere")}]})
    launcher = Recorder()
    assert advance(qf, m, launcher) == [] and launcher.started == []
    [entry] = qf.read().jobs
    assert entry.state is EntryState.REMOVED and "keeps its runs elsewhere" in entry.reason


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_naming_another_users_manifest_never_starts(tmp_path):
    m = load(write_manifest(tmp_path, MANIFEST))
    qf = QueueFile(m.runs_dir)
    foreign = _foreign_manifest(tmp_path, str(Path(m.runs_dir).resolve()))
    os.chown(foreign, 4242, -1)
    _write(qf, {"jobs": [GOOD | {"manifest": foreign}]})
    assert advance(qf, m, Recorder()) == []
    [entry] = qf.read().jobs
    assert entry.state is EntryState.REMOVED and "belongs to another user" in entry.reason


NEIGHBOURS = ["queue.json", "queue.lock", "scheduler.lock", "quarantine.json", "logs"]
KINDS = ["folder", "link to a file", "link to a folder", "fifo", "file", "dangling link"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(NEIGHBOURS), st.sampled_from(KINDS), min_size=1, max_size=3))
def test_links_folders_and_fifos_beside_the_queue_never_raise_or_write_through(tmp_path_factory, damage):
    base = tmp_path_factory.mktemp("n")
    qf = QueueFile(base / "runs")
    qf.dir.mkdir(parents=True)
    target_file, target_dir = base / "victim.txt", base / "victim"
    target_file.write_text("mine")
    target_dir.mkdir()
    for name, kind in damage.items():
        path = qf.dir / name
        if kind == "folder":
            path.mkdir()
        elif kind == "link to a file":
            path.symlink_to(target_file)
        elif kind == "link to a folder":
            path.symlink_to(target_dir)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dangling link":
            path.symlink_to(base / "nowhere")
        else:
            path.write_text("not what it should be")
    qf.read()  # readers never raise, never hang on a FIFO
    qf.quarantined()
    try:
        with qf.change() as state:
            state.add("params", "/m.toml", gpus=0)
    except QueueDirError as exc:
        assert "\n" not in str(exc) and str(qf.dir) in str(exc)
    assert target_file.read_text() == "mine" and list(target_dir.iterdir()) == []
    assert not (base / "nowhere").exists()
