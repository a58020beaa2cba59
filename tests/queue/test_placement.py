"""Placement by memory: the scheduler with fake GPUs of given free memory (a pynvml stand-in).

The four cases: a job that fits no GPU is refused when queued; one that fits but not now waits
(with the reason as its status line) until memory frees; small jobs share a GPU only with
``settings.gpu_sharing = true``; and never more than the free memory is handed out.
"""

from __future__ import annotations

import sys

import pytest

from engine.errors import UserError
from engine.manifest import load
from engine.models.memory import GIB, experiment_estimate
from engine.queue.fit import Candidate, GpuRoom, gpu_rooms, place
from engine.queue.jobqueue import JobQueue
from engine.queue.queuefile import QueueFile
from engine.queue.schedule import advance
from support.fakes import write_manifest
from support.nvml import fake_pynvml


def _manifest(sharing: bool = False, parallel: int = 4, batch: int = 8) -> str:
    head = f'[settings]\nruns_dir = "runs"\nmax_parallel_jobs = {parallel}\ngpu_sharing = {str(sharing).lower()}\n'
    jobs = "".join(
        f'\n[[experiment]]\nname = "{name}"\ntask = "classify"\nmodel = "{model}"\ndataset = "embedded:sst2"\n'
        f'text_column = "sentence"\nbatch_size = {b}\nmax_seq_length = 128\n'
        for name, model, b in [
            ("small1", "bert-tiny", batch),
            ("small2", "bert-tiny", batch),
            ("small3", "bert-tiny", batch),
            ("big", "bert-base", 4096),
        ]
    )
    return head + jobs


class RecordingLauncher:
    """Starts nothing: records which job got which GPUs (the scheduler's decisions only)."""

    def __init__(self):
        self.started: dict[int, list[int]] = {}

    def alive(self, entry):
        return entry.id in self.started

    def start(self, queue_file, entry, devices):
        self.started[entry.id] = devices
        return 0


@pytest.fixture
def gpus(monkeypatch):
    """One fake GPU (80 GiB) whose free memory the test sets: ``memory[0][0]`` in GiB."""
    memory = [[60.0, 80.0]]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=1, memory=memory))
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    import engine.queue.jobqueue as jq

    monkeypatch.setattr(jq, "ensure_scheduler", lambda *a, **k: False)  # the test is the scheduler
    return memory


def _need(m, name: str) -> float:
    est = experiment_estimate(m, m.get(name), on_gpu=True)[0]
    assert est is not None
    return est.total / GIB


def test_a_job_that_fits_no_gpu_is_refused_when_queued_with_what_it_needs_and_what_to_lower(tmp_path, gpus):
    m = load(write_manifest(tmp_path, _manifest()))
    q = JobQueue(m)
    with pytest.raises(UserError) as err:
        q.submit(["big"])
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"big needs about {_need(m, 'big'):.1f} GiB per GPU (bf16: ")
    assert "the largest GPU here has 80.0 GiB: lower batch_size (4096, with gradient_accumulation_steps" in line
    assert "max_seq_length (128)" in line
    assert q.file.read().jobs == []  # nothing queued
    q.submit(["small1"])  # one that fits is queued as ever
    assert [e.experiment for e in q.file.read().jobs] == ["small1"]


def test_a_queued_job_found_to_fit_no_gpu_is_blocked_with_the_reason_and_holds_nothing(tmp_path, gpus, monkeypatch):
    m = load(write_manifest(tmp_path, _manifest()))
    q, launcher = JobQueue(m), RecordingLauncher()
    fake = sys.modules["pynvml"]
    monkeypatch.setitem(sys.modules, "pynvml", None)  # queued where NVML could not say (e.g. another client)
    q.submit(["big", "small1"])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    started = advance(q.file, m, launcher)
    big, small = q.refresh()
    assert started == [small.id] and big.status == "blocked"
    assert big.reason.startswith("big needs about") and big.reason.endswith("then cancel this job and queue it again")


def test_a_job_that_fits_but_not_now_waits_with_the_reason_until_memory_frees(tmp_path, gpus):
    m = load(write_manifest(tmp_path, _manifest()))
    need = _need(m, "small1")
    gpus[0][0] = need - 0.2  # another process holds the rest of the GPU
    q, launcher = JobQueue(m), RecordingLauncher()
    q.submit(["small1"])
    assert advance(q.file, m, launcher) == []
    [job] = q.refresh()
    assert job.status == "queued"
    assert job.reason == f"waiting for GPU memory: needs {need:.1f} GiB per GPU, {need - 0.2:.1f} GiB free"
    gpus[0][0] = 60.0
    assert advance(q.file, m, launcher) == [job.id]
    assert launcher.started == {job.id: [0]}
    assert QueueFile(tmp_path / "runs").read().jobs[0].waiting is None  # the reason goes when it starts


@pytest.mark.parametrize("sharing", [False, True])
def test_small_jobs_share_a_gpu_only_when_allowed_and_never_over_its_free_memory(tmp_path, gpus, sharing):
    m = load(write_manifest(tmp_path, _manifest(sharing=sharing)))
    need = _need(m, "small1")
    gpus[0][0] = 2.5 * need  # room for two of the three
    q, launcher = JobQueue(m), RecordingLauncher()
    q.submit(["small1", "small2", "small3"])
    started = advance(q.file, m, launcher)
    statuses = {j.experiment: (j.status, j.reason) for j in q.refresh()}
    if not sharing:
        assert len(started) == 1 and launcher.started == {started[0]: [0]}
        assert statuses["small2"] == ("queued", "waiting for 1 free GPU(s) with %.1f GiB each" % need)
        return
    assert len(started) == 2 and all(d == [0] for d in launcher.started.values())
    assert statuses["small3"] == (
        "queued",
        f"waiting for GPU memory: needs {need:.1f} GiB per GPU, {0.5 * need:.1f} GiB free",
    )
    # the two started jobs have not allocated yet (NVML still shows 2.5x free): their estimates count
    assert advance(q.file, m, launcher) == []
    gpus[0][0] = 0.6 * need  # they allocated what they said: still no room for the third
    assert advance(q.file, m, launcher) == []


def test_place_units_refuse_hold_share_and_count_whole_gpus_without_nvml():
    rooms = {0: GpuRoom(0, 10 * GIB, 16 * GIB), 1: GpuRoom(1, 16 * GIB, 16 * GIB)}
    too_big, big, small = Candidate(1, 1, 20 * GIB, "huge"), Candidate(2, 2, 12 * GIB, "pair"), Candidate(3, 1, 3 * GIB)
    out = place([too_big, small], [0, 1], {}, rooms, slots=4)
    assert out.picks == {3: [0]}  # never fits: holds nothing, later jobs start
    assert out.blocked == {1: "huge fits no GPU here, then cancel this job and queue it again"}
    out = place([big, small], [0, 1], {}, rooms, slots=4)
    assert out.picks == {} and out.waiting == {
        2: "waiting for GPU memory: needs 12.0 GiB per GPU, GPU 1 has 16.0 GiB free"
    }
    # the oldest waiting job holds what is left; a CPU job still starts
    assert place([big, small, Candidate(4, 0)], [0, 1], {}, rooms, slots=4).picks == {4: []}
    # sharing: a GPU held by a job with an estimate takes another while both fit; an unknown estimate never shares
    room = {0: GpuRoom(0, 15 * GIB, 16 * GIB, used={77: 4 * GIB})}
    # job 77 holds 4 of its 5 GiB: 1 GiB still to come, so 14 GiB of room for the 3 GiB job
    assert place([small], [0], {0: [(5 * GIB, 77)]}, room, slots=2, sharing=True).picks == {3: [0]}
    assert place([small], [0], {0: [(5 * GIB, 77)]}, room, slots=2).picks == {}  # sharing off
    assert place([small], [0], {0: [(None, 77)]}, room, slots=2, sharing=True).picks == {}  # unknown estimate
    # a job NVML does not list (not started yet, or under a launcher) may still take all of its estimate
    assert place([small], [0], {0: [(13 * GIB, 5)]}, room, slots=2, sharing=True).picks == {}
    # no NVML: whole GPUs, as before
    assert place([big, small], [0, 1, 2], {0: [(None, None)]}, None, slots=4).picks == {2: [1, 2]}


def test_gpu_rooms_follow_cuda_visible_devices_and_give_up_without_nvml(monkeypatch):
    nv = fake_pynvml(count=4, memory=[[1, 8], [2, 8], [3, 8], [4, 8]])
    monkeypatch.delenv("LMCONSOLE_VISIBLE_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_rooms((0, 1), nvml=nv) == {0: GpuRoom(0, 3 * GIB, 8 * GIB), 1: GpuRoom(1, 4 * GIB, 8 * GIB)}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234")
    assert gpu_rooms((0,), nvml=nv) is None  # a UUID: NVML's index is not known here
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_rooms((0,), nvml=fake_pynvml(fail_init="no driver")) is None
    assert gpu_rooms((), nvml=nv) is None
