"""The queue on disk: detached job processes, a scheduler started on demand, consoles
as clients, limits across processes, GPU scheduling, dependencies after a cancel.

Fake jobs (``support.fakes.process_runner``) go through the real run-directory machinery in real
job processes, so the SIGKILL / two-console tests take seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engine.files import atomic_write_json
from engine.manifest import load
from engine.queue.gpus import assign_gpus, device_env
from engine.queue.jobqueue import JobQueue
from engine.queue.queuefile import QueueFile
from engine.queue.schedule import advance, statuses
from engine.store.runs import RunStore
from support.fakes import MANIFEST, FakeRunner, write_manifest
from support import PYTHONPATH

REPO = Path(__file__).resolve().parents[2]
PARALLEL2 = MANIFEST.replace('runs_dir = "runs"', 'runs_dir = "runs"\nmax_parallel_jobs = 2')


@pytest.fixture
def process_jobs(monkeypatch):
    """Job processes (and the scheduler) run fake jobs; returns a setter for their options."""
    monkeypatch.setenv("LMCONSOLE_JOB_RUNNER", "support.fakes:process_runner")
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")  # no GPUs, whatever the machine has

    def options(**opts):
        monkeypatch.setenv("LMCONSOLE_FAKE", json.dumps(opts))

    options(default={"steps": 6, "delay": 0.05})
    return options


def _wait(cond, timeout=30.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def _cli(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.entry", "--manifest", str(folder / "experiments.toml"), *args],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=60,
    )


def _queue_json(folder: Path) -> list[dict]:
    proc = _cli(folder, "queue", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- the console as a client: SIGKILL it, open another -------------------------------------------------

CONSOLE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from engine.queue.jobqueue import JobQueue
    from tui.app import build_app
    from tui.lifecycle import run

    folder = Path(sys.argv[1])
    names = sys.argv[2].split(",")

    def factory(manifest):
        queue = JobQueue(manifest)  # the real client: jobs in their own processes
        queue.submit(names)
        (folder / f"submitted-{sys.argv[3]}").write_text(repr([j.experiment for j in queue.jobs]))
        return queue

    sys.exit(run(build_app(folder / "experiments.toml", factory), headless=True))
""")


def _console(folder: Path, names: str, tag: str = "a") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CONSOLE, str(folder), names, tag],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_console_while_two_jobs_run_and_two_wait(tmp_path, process_jobs):
    gate = tmp_path / "release"  # the first two jobs hold until the console is dead
    process_jobs(
        default={"steps": 30, "delay": 0.02}, baseline={"gate_file": str(gate)}, params={"gate_file": str(gate)}
    )
    write_manifest(tmp_path, PARALLEL2)
    console = _console(tmp_path, "baseline,params,finetune")  # + pretrain first: 4 jobs
    try:
        assert _wait(
            lambda: [r["status"] for r in _queue_json(tmp_path)] == ["running", "running", "queued", "queued"], 30
        )
        console.send_signal(signal.SIGKILL)
        console.wait(10)
    finally:
        if console.poll() is None:
            console.kill()
    rows = _queue_json(tmp_path)
    assert [r["status"] for r in rows] == ["running", "running", "queued", "queued"], rows
    gate.write_text("go")
    # Nobody watches now: the jobs finish, the waiting ones start (the scheduler has no console).
    assert _wait(lambda: [r["status"] for r in _queue_json(tmp_path)] == ["finished"] * 4, 60), _queue_json(tmp_path)
    rows = _queue_json(tmp_path)
    assert [r["experiment"] for r in rows] == ["baseline", "params", "pretrain", "finetune"]
    assert rows[3]["depends_on"] == [rows[2]["id"]]
    assert all(r["step"] == 30 for r in rows)
    for name in ("pretrain", "baseline", "params", "finetune"):
        assert len(RunStore(tmp_path / "runs").runs(name)) == 1  # no duplicate run
    # A new console sees the same four jobs with the right status.
    import asyncio

    from tui.app import build_app
    from tui.screens.main import MainScreen
    from support.console import screen_text, wait_for

    async def go():
        app = build_app(tmp_path / "experiments.toml")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("2")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert [j.status for j in app.queue.jobs] == ["finished"] * 4
            for name in ("pretrain", "baseline", "params", "finetune"):
                assert name in text
            assert text.count("✓ finished") >= 4

    asyncio.run(go())


def test_sigkill_console_mid_job_then_new_console_shows_running_and_queued(tmp_path, process_jobs):
    """A second console opened while the work of a killed one goes on: running and waiting rows."""
    process_jobs(
        default={"steps": 6, "delay": 0.05}, pretrain={"steps": 4, "gate_file": str(tmp_path / "never")}
    )  # runs until cancelled
    write_manifest(tmp_path)
    console = _console(tmp_path, "finetune")
    assert _wait(lambda: any(r["status"] == "running" and r["step"] for r in _queue_json(tmp_path)), 30)
    console.kill()
    console.wait(10)
    import asyncio

    from tui.app import build_app
    from tui.screens.main import MainScreen
    from support.console import screen_text, wait_for

    async def go():
        app = build_app(tmp_path / "experiments.toml")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("2")
            assert await wait_for(pilot, lambda: [j.status for j in app.queue.jobs] == ["running", "queued"])
            assert await wait_for(pilot, lambda: "▶ running" in screen_text(app) and "… queued" in screen_text(app))
            # cancel the queued dependant from here: asks, says what happens, removes it
            await pilot.press("down", "c")
            assert await wait_for(pilot, lambda: "Remove finetune from the queue?" in screen_text(app))
            await pilot.press("y")
            assert await wait_for(pilot, lambda: app.queue.jobs[1].status == "cancelled")
            # quitting with a job running: at once, no question; the job goes on
            await pilot.press("q")
            assert await wait_for(pilot, lambda: not app.is_running, timeout=3)

    asyncio.run(go())
    rows = _queue_json(tmp_path)
    assert rows[0]["status"] == "running" and rows[1]["status"] == "cancelled"
    assert "cancel requested" in _cli(tmp_path, "queue", "cancel", "1").stdout
    assert _wait(lambda: _queue_json(tmp_path)[0]["status"] == "cancelled", 20)


def test_two_consoles_started_together_share_one_queue(tmp_path, process_jobs):
    write_manifest(tmp_path)
    consoles = [_console(tmp_path, "finetune", tag) for tag in "ab"]
    try:
        assert _wait(lambda: all((tmp_path / f"submitted-{t}").exists() for t in "ab"), 30)
        assert _wait(lambda: [r["status"] for r in _queue_json(tmp_path)] == ["finished", "finished"], 60), _queue_json(
            tmp_path
        )
    finally:
        for c in consoles:
            c.kill()
            c.wait(10)
    rows = _queue_json(tmp_path)
    assert [r["experiment"] for r in rows] == ["pretrain", "finetune"]
    store = RunStore(tmp_path / "runs")
    assert len(store.runs("pretrain")) == 1 and len(store.runs("finetune")) == 1


# -- CLI ------------------------------------------------------------------------------------------------


def test_cli_detach_queue_attach_and_duplicate_guard(tmp_path, process_jobs):
    process_jobs(default={"steps": 8, "delay": 0.05})
    write_manifest(tmp_path)
    out = _cli(tmp_path, "run", "finetune", "--detach")
    assert out.returncode == 0 and "queued #1 pretrain" in out.stdout and "queued #2 finetune (after #1)" in out.stdout
    again = _cli(tmp_path, "run", "finetune", "--detach")
    assert again.returncode == 1 and "already queued or running" in again.stderr
    follow = _cli(tmp_path, "attach", "finetune")
    assert follow.returncode == 0, follow.stderr
    assert "[finetune] step 8/8" in follow.stdout and "[finetune] finished" in follow.stdout
    listing = _cli(tmp_path, "queue")
    assert "#1" in listing.stdout and "finished" in listing.stdout
    assert _cli(tmp_path, "run", "finetune", "--detach", "--again").returncode == 0
    assert _wait(lambda: [r["status"] for r in _queue_json(tmp_path)] == ["finished"] * 3, 30)
    assert len(RunStore(tmp_path / "runs").runs("pretrain")) == 1  # the dependency was satisfied already
    assert "dropped 3" in _cli(tmp_path, "queue", "clean").stdout


def test_headless_foreground_run_counts_against_max_parallel(tmp_path, process_jobs):
    """max_parallel_jobs counts every job of the runs directory, whoever started it."""
    process_jobs(default={"steps": 6, "delay": 0.02})
    m = load(write_manifest(tmp_path))
    gate = threading.Event()
    runner = FakeRunner(baseline={"gate": gate})
    t = threading.Thread(target=runner, args=(m, "baseline"))  # like `lmconsole run baseline` elsewhere
    t.start()
    try:
        assert _wait(lambda: runner.started.is_set(), 10)
        q = JobQueue(m)
        [job] = q.submit(["params"])
        # a scheduler's turn, taken here rather than waited for: with the slot held by the
        # foreground run it must start nothing (the background scheduler may have had turns too)
        assert advance(q.file, m, RecordingLauncher()) == []
        assert q.get(job.id).status == "queued"
    finally:
        gate.set()
        t.join(10)
    assert _wait(lambda: q.get(job.id).status == "finished", 30), (job.status, job.reason)


# -- dependencies ------------------------------------------------------------------------------------------


def _until(q, job, status, timeout=10):
    return _wait(lambda: q.refresh() and job.status == status, timeout, 0.02)


def test_dependant_runs_after_its_cancelled_dependency_is_resumed(tmp_path):
    """Cancel, R, finish -> the dependant runs; one row per job, one status word."""
    release = tmp_path / "release"
    runner = FakeRunner(pretrain={"gate_file": str(release), "steps": 4})
    q = JobQueue(load(write_manifest(tmp_path)), runner=runner)
    pre, fine = q.submit(["finetune"])
    assert fine.depends_on == (pre.id,)
    assert _until(q, pre, "running")
    assert "cancel requested" in q.control(pre, "cancel")
    assert _until(q, pre, "cancelled")
    assert _until(q, fine, "blocked") and "dependency pretrain cancelled" in fine.reason
    release.write_text("go")
    assert q.control(pre, "retry").startswith("resuming #1 pretrain")
    q.wait(20)
    assert [(j.id, j.experiment, j.status) for j in q.jobs] == [
        (1, "pretrain", "finished"),
        (2, "finetune", "finished"),
    ]
    assert len(RunStore(tmp_path / "runs").runs("pretrain")) == 1  # resumed, not run again


def test_cancelling_a_queued_job_says_what_becomes_of_its_dependants(tmp_path):
    gate = threading.Event()
    runner = FakeRunner(params={"gate": gate})
    q = JobQueue(load(write_manifest(tmp_path)), runner=runner)
    q.submit(["params"])
    pre, fine = q.submit(["finetune"])
    message = q.control(pre, "cancel")
    assert message == "removed #2 pretrain from the queue; finetune stays blocked until it runs (R on #2)"
    assert pre.status == "cancelled" and fine.status == "blocked"
    # the derived reason is shown by `lmconsole queue` too: an action, not a console key ("R on #2")
    assert fine.reason == "dependency pretrain cancelled; it runs once #2 is retried and finishes"
    q.wait(0.3)
    q.clean()  # ended jobs go, but not the cancelled one that finetune waits on
    assert [j.experiment for j in q.jobs] == ["params", "pretrain", "finetune"] and fine.status == "blocked"
    assert q.control(pre, "retry") == "queued #2 pretrain again"
    gate.set()
    q.wait(20)
    assert [j.status for j in q.jobs] == ["finished"] * 3


def test_pausing_a_waiting_job_holds_it_and_its_dependants_until_resumed(tmp_path):
    gate = threading.Event()
    q = JobQueue(load(write_manifest(tmp_path)), runner=FakeRunner(params={"gate": gate}))
    q.submit(["params"])  # holds the one slot until the gate opens
    pre, fine = q.submit(["finetune"])
    assert q.control(pre, "pause") == "#2 pretrain held in the queue: it does not start until resumed (p again)"
    assert pre.status == "paused" and pre.reason == "held in the queue: it starts once resumed"
    # a second client sees the same hold, from the file
    other = JobQueue(load(write_manifest(tmp_path)), runner=FakeRunner())
    assert [j.status for j in other.refresh()][1] == "paused"
    gate.set()
    q.wait(0.5)  # params finishes; the held pretrain (and finetune after it) must not start
    q.refresh()
    assert [j.status for j in q.jobs] == ["finished", "paused", "queued"] and pre.run is None
    assert q.control(pre, "pause").startswith("#2 pretrain released")  # p again: released
    q.wait(20)
    assert [j.status for j in q.jobs] == ["finished"] * 3


def test_retrying_a_held_cancelled_job_says_it_stays_held(tmp_path):
    gate = threading.Event()
    q = JobQueue(load(write_manifest(tmp_path)), runner=FakeRunner(params={"gate": gate}))
    q.submit(["params"])  # holds the one slot
    [pre] = q.submit(["pretrain"], with_deps=False)
    q.control(pre, "pause")
    assert q.control(pre, "cancel").startswith("removed #2 pretrain")
    assert q.control(q.get(2), "retry") == "queued #2 pretrain again, still held: it starts once resumed (p)"
    assert q.get(2).status == "paused"
    gate.set()
    q.shutdown(timeout=10)


def test_move_keeps_dependencies_first(tmp_path):
    gate = threading.Event()
    q = JobQueue(load(write_manifest(tmp_path)), runner=FakeRunner(params={"gate": gate}))
    q.submit(["params"])
    pre, fine = q.submit(["finetune"])
    [base] = q.submit(["baseline"])
    assert [j.experiment for j in q.jobs] == ["params", "pretrain", "finetune", "baseline"]
    assert q.move(fine, -1) == "#3 finetune stays after its dependency"
    assert q.move(base, -1) == "moved #4 baseline up"
    assert [j.experiment for j in q.jobs] == ["params", "pretrain", "baseline", "finetune"]
    gate.set()
    q.wait(20)


# -- GPUs --------------------------------------------------------------------------------------------------

GPU_MANIFEST = """
[settings]
runs_dir = "runs"
max_parallel_jobs = 6
gpus = "0,1,2,3"
""" + "".join(
    # a job uses 2 GPUs as two torchrun processes (one process uses one GPU); the jobs themselves are fakes
    f"""
[[experiment]]
name = "j{i}"
task = "pretrain"
model = "bert-micro"
dataset = "embedded:wikitext"
launcher = "torchrun"
nproc_per_node = {need}
"""
    if need > 1
    else f"""
[[experiment]]
name = "j{i}"
task = "inspect"
model = "bert-micro"
gpus = {need}
"""
    for i, need in enumerate([2, 1, 2, 1, 1, 2])
)


class RecordingLauncher:
    """Starts nothing: records which job got which GPUs (the scheduler's decisions only)."""

    def __init__(self):
        self.started: dict[int, list[int]] = {}
        self.exited: set[int] = set()

    def alive(self, entry):
        return entry.id in self.started and entry.id not in self.exited

    def start(self, queue_file, entry, devices):
        self.started[entry.id] = devices
        return 0


def _check_gpu_invariants(qf, store, launcher, gpus=(0, 1, 2, 3)):
    state = qf.read()
    st = statuses(state, store, launcher.alive)
    held = [g for e in state.jobs if st[e.id][0] == "running" for g in e.devices]
    assert len(held) == len(set(held)) and set(held) <= set(gpus), held  # never over-subscribed
    for e in state.jobs:
        if st[e.id][0] == "running":
            assert len(e.devices) == e.gpus
    free = len(gpus) - len(held)
    waiting = [e for e in state.jobs if st[e.id][0] == "queued"]
    if waiting:  # no GPU idles while a fitting job waits, except those held for the oldest waiting job
        assert waiting[0].gpus > free, (free, waiting)
        assert all(e.gpus > 0 for e in waiting[1:]), waiting  # the free GPUs are held for it
    return held


@pytest.mark.parametrize("seed", range(5))
def test_scheduler_with_four_injected_gpus_never_over_subscribes(tmp_path, seed):
    m = load(write_manifest(tmp_path, GPU_MANIFEST))
    q = JobQueue(m)
    qf, store = QueueFile(tmp_path / "runs"), RunStore(tmp_path / "runs")
    launcher = RecordingLauncher()
    import engine.queue.jobqueue as eq

    real_ensure = eq.ensure_scheduler
    eq.ensure_scheduler = lambda *a, **k: False  # this test is the scheduler
    try:
        q.submit([f"j{i}" for i in range(6)])
        assert [j.gpus for j in q.jobs] == [2, 1, 2, 1, 1, 2]
        rng = random.Random(seed)
        advance(qf, m, launcher)
        held = _check_gpu_invariants(qf, store, launcher)
        assert sorted(held) == [0, 1, 2]  # 2 + 1: GPU 3 is held for the 2-GPU j2; j3 and j4 wait behind it
        for _ in range(20):
            state = qf.read()
            st = statuses(state, store, launcher.alive)
            running = [e for e in state.jobs if st[e.id][0] == "running"]
            if not running:
                break
            done = rng.choice(running)
            atomic_write_json(store.root / done.run / "status.json", {"status": "finished"})
            launcher.exited.add(done.id)  # its process exits too: slot and GPUs free
            advance(qf, m, launcher)
            _check_gpu_invariants(qf, store, launcher)
        assert [j.status for j in q.refresh()] == ["finished"] * 6
    finally:
        eq.ensure_scheduler = real_ensure


def test_job_processes_get_disjoint_cuda_visible_devices(tmp_path, process_jobs):
    """The real path: scheduler process, job processes, CUDA_VISIBLE_DEVICES as each job sees it."""
    gate = tmp_path / "release"
    process_jobs(default={"steps": 2, "gate_file": str(gate)})
    m = load(write_manifest(tmp_path, GPU_MANIFEST))
    q = JobQueue(m)
    q.submit([f"j{i}" for i in range(6)])

    def seen():
        out = {}
        for j in q.refresh():
            if j.run is not None:
                logs = [e.message for e in j.run.events() if type(e).__name__ == "LogEmitted"]
                out.update({j.experiment: x.split("=", 1)[1] for x in logs if x.startswith("CUDA_VISIBLE_DEVICES=")})
        return out

    try:
        assert _wait(lambda: len(seen()) == 2, 30), seen()
        got = seen()
        assert set(got) == {"j0", "j1"}  # j2 needs 2 and waits, GPU 3 held for it; j3 waits behind it
        devices = [d for v in got.values() for d in v.split(",")]
        assert sorted(devices) == ["0", "1", "2"] and len(got["j0"].split(",")) == 2
        assert [j.status for j in q.jobs].count("running") == 2
    finally:
        gate.write_text("go")
    assert _wait(lambda: [j.status for j in q.refresh()] == ["finished"] * 6, 60), [
        (j.experiment, j.status) for j in q.jobs
    ]


def test_assign_gpus_backfills_and_respects_slots():
    assert assign_gpus([(1, 2), (2, 1), (3, 1)], [0, 1, 2, 3], 5) == {1: [0, 1], 2: [2], 3: [3]}
    assert assign_gpus([(1, 2), (2, 2), (3, 1)], [0, 1, 2, 3], 5, total=4) == {1: [0, 1], 2: [2, 3]}
    # a job that could never start (8 GPUs of 4) holds nothing
    assert assign_gpus([(1, 1), (2, 1)], [3, 0], 1) == {1: [0]}
    assert assign_gpus([(1, 8), (2, 1)], [0, 1, 2], 5, total=4) == {2: [0]}
    assert assign_gpus([(1, 0), (2, 0)], [], 2) == {1: [], 2: []}  # CPU jobs need no GPU


def test_assign_gpus_holds_gpus_for_the_oldest_waiting_job():
    """A stream of 1-GPU jobs must not starve a 2-GPU job: the free GPU is held for it, not backfilled."""
    assert assign_gpus([(1, 2), (2, 1)], [3], 5, total=4) == {}
    assert assign_gpus([(1, 2), (2, 1), (3, 0)], [0, 3], 5, total=4) == {1: [0, 3], 3: []}
    assert assign_gpus([(1, 2), (2, 1), (3, 0)], [3], 5, total=4) == {3: []}  # CPU jobs still start
    assert assign_gpus([(1, 4), (2, 1)], [0, 1, 2], 5, total=4) == {}


def test_job_environment_numbers_gpus_in_pci_bus_order(monkeypatch):
    """The scheduler's (and NVML's) indices are PCI bus order; CUDA's default is fastest first."""
    from engine.queue.gpus import job_env

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert job_env([1], 1) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "5"}


def test_job_gets_cuda_visible_devices_of_its_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert device_env([0, 2], 2) == "4,6"  # indices count what the scheduler sees
    assert device_env([], 0) == ""  # a CPU job on a GPU box never takes GPU 0 by accident
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")
    assert device_env([], 0) is None  # no GPUs here: leave the environment alone


def test_job_needing_more_gpus_than_offered_is_blocked_with_a_reason(tmp_path):
    m = load(write_manifest(tmp_path, GPU_MANIFEST.replace("nproc_per_node = 2", "nproc_per_node = 5", 1)))
    q = JobQueue(m, runner=FakeRunner())
    q.submit(["j0"])
    [job] = q.refresh()
    assert job.status == "blocked" and job.reason == "needs 5 GPU(s); settings.gpus offers 4"


WRITER = textwrap.dedent("""
    import sys
    from engine.queue.entry import EntryState, QueueEntry
    from engine.queue.queuefile import QueueFile

    qf = QueueFile(sys.argv[1])
    i = 0
    while True:
        with qf.change() as state:
            state.jobs.append(QueueEntry(id=state.next_id, experiment="params", state=EntryState.REMOVED,
                                         reason="x" * 2000))
            state.next_id += 1
            if len(state.jobs) > 50:
                del state.jobs[:25]
""")


def test_sigkill_while_the_queue_is_written_leaves_it_readable(tmp_path):
    """Changed under flock, written atomically: a SIGKILL at any moment leaves queue.json whole,
    and the lock dies with its holder (the next change does not hang)."""
    qf = QueueFile(tmp_path / "runs")
    rng = random.Random(3)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "runs")], cwd=REPO)
        time.sleep(0.3 + rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        data = json.loads(qf.path.read_text())  # never torn
        assert data["jobs"] and data["next_id"] == data["jobs"][-1]["id"] + 1
        with qf.change() as state:  # the dead writer's lock is gone
            state.extra["touched"] = True


def test_console_asks_before_a_second_run_of_a_queued_experiment(tmp_path):
    import asyncio

    from tui.screens.dialogs import ConfirmDialog
    from tui.screens.main import MainScreen
    from support.console import make_app, screen_text, wait_for

    gate = threading.Event()
    runner = FakeRunner(params={"gate": gate})

    async def go():
        app = make_app(tmp_path, runner, history=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("r")  # params (first row)
            assert await wait_for(pilot, lambda: [j.status for j in app.queue.jobs] == ["running"])
            await pilot.press("r")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            assert "params: already queued or running" in screen_text(app)
            await pilot.press("n")
            assert len(app.queue.jobs) == 1
            await pilot.press("r")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            assert await wait_for(pilot, lambda: [j.experiment for j in app.queue.jobs] == ["params", "params"])
            gate.set()
            assert await wait_for(pilot, lambda: [j.status for j in app.queue.jobs] == ["finished", "finished"])

    asyncio.run(go())


def test_queue_command_answers_with_shell_commands_and_fits_80_columns(tmp_path, capsys, monkeypatch):
    """`lmconsole queue cancel` names the next step as a command (`lmconsole queue retry 2`), never a
    console key; at 80 columns a long reason wraps under its own column instead of the terminal's."""
    from engine.cli.jobs import _queue_lines
    from engine.cli.main import main
    from engine.queue.jobqueue import shell_commands

    gate = threading.Event()
    q = JobQueue(load(write_manifest(tmp_path)), runner=FakeRunner(params={"gate": gate}))
    (params,) = q.submit(["params"])
    q.submit(["finetune"])
    assert _wait(lambda: q.get(params.id).status == "running", 10)
    monkeypatch.chdir(tmp_path)
    assert main(["queue", "cancel", "2"]) == 0
    out = capsys.readouterr().out
    assert "(`lmconsole queue retry 2`)" in out and "R on" not in out, out
    running = q.control(q.get(params.id), "cancel", shell_commands)
    assert running.endswith("saves a checkpoint; `lmconsole queue retry 1` resumes it"), running
    gate.set()
    q.wait(20)
    reason = "cancelled by request; resume with `lmconsole queue retry 3` to go on from the last checkpoint"
    table = [
        ["#1", "demo-params-finetuned", "running", "step 120/480", "gpu 0", "20260101-100000-000000-aaaa"],
        ["#3", "demo-params", "cancelled", "step 40/480", "", reason],
    ]
    lines = _queue_lines(table, 80)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split()[-1] == "aaaa" and " ".join(" ".join(lines[1:]).split()) == " ".join(
        [*table[1][:4], reason]
    )
    assert lines[2].startswith(" " * lines[1].index("cancelled by"))  # wrapped under its column
    assert len(_queue_lines(table, None)) == 2  # piped: one line per job
