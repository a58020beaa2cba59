"""System figures: NVML through an injected fake pynvml, the no-driver path, job samples, the table."""

import sys
import types
from collections import namedtuple

import pytest

from engine.events import SystemSampled, from_json, to_json
from engine.device import visible_gpus
from engine.job.system import JobSampler, SystemProbe, gpus_of, sample_event, system_table
from engine.store.runs import RunStore
from support.nvml import fake_pynvml





def test_nvml_figures_per_gpu(monkeypatch):
    nv = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)  # what `import pynvml` finds
    probe = SystemProbe()
    gpus = probe.gpus()
    assert probe.gpu_reason == ""
    assert [g.index for g in gpus] == [0, 1]
    g0, g1 = gpus
    assert (g0.name, g1.name) == ("NVIDIA H100", "NVIDIA A100")  # bytes (old pynvml) and str both work
    assert g0.util_percent == 90.0 and g1.util_percent == 91.0
    assert g0.memory_used_mb == 20 * 1024 and g0.memory_total_mb == 80 * 1024
    assert g0.temperature_c == 61.0
    assert g0.power_w == 350.5 and g0.power_limit_w == 700.0
    probe.gpus()
    assert nv.calls["init"] == 1, "NVML is initialised once"
    assert [g.index for g in probe.gpus(only=[1])] == [1]


def test_nvml_unsupported_field_left_empty(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=1, unsupported=("power", "temp")))
    (g,) = SystemProbe().gpus()
    assert g.power_w is None and g.temperature_c is None and g.util_percent == 90.0


def test_no_driver_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init="NVML Shared Library Not Found"))
    probe = SystemProbe()
    assert probe.gpus() == []
    assert "no NVIDIA driver" in probe.gpu_reason and "NVML Shared Library Not Found" in probe.gpu_reason
    host = probe.host()
    assert host.ram_total_mb > 0 and 0 <= host.cpu_percent <= 100 and host.cpu_count >= 1


def test_real_pynvml_here_has_no_driver():
    """This machine has nvidia-ml-py but no NVIDIA driver: the real module takes the no-driver path."""
    import pynvml  # noqa: F401 - a dependency of the project: missing is a failure, not a skip
    probe = SystemProbe()
    if probe.gpus():
        pytest.skip("an NVIDIA driver is present")
    assert probe.gpu_reason.startswith("no GPU figures")


def test_nvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    probe = SystemProbe()
    assert probe.gpus() == [] and "nvidia-ml-py is not installed" in probe.gpu_reason


def test_zero_gpus(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=0))
    probe = SystemProbe()
    assert probe.gpus() == [] and "sees no GPUs" in probe.gpu_reason


def test_visible_gpus():
    assert visible_gpus({}) is None
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,3"}) == [1, 3]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8f3c"}) is None


def test_event_round_trip_and_job_sampler_rate(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=2))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    clock = {"t": 100.0}
    import engine.job.system as system

    monkeypatch.setattr(system.time, "monotonic", lambda: clock["t"])
    got = []
    sampler = JobSampler(every_s=30)
    assert sampler.maybe(got.append)  # the first call samples at once
    clock["t"] += 29
    assert not sampler.maybe(got.append)
    clock["t"] += 1
    assert sampler.maybe(got.append)
    assert len(got) == 2
    ev = got[0]
    assert isinstance(ev, SystemSampled) and [g["index"] for g in ev.gpus] == [1], "only the job's own GPUs"
    back = from_json(to_json(ev))
    assert back == ev


def _events(n, gpus=True):
    out = []
    for i in range(n):
        g = [{"index": 0, "util_percent": 50.0 + i, "memory_used_mb": 1000.0, "temperature_c": 60.0, "power_w": 300.0}]
        out.append(
            SystemSampled(
                time=1000.0 + 30 * i,
                host={"cpu_percent": 12.5, "ram_used_mb": 2048.0, "process_rss_mb": 512.0},
                gpus=g if gpus else [],
            )
        )
    return out


def test_system_table():
    t = system_table(_events(3))
    assert t.columns[:4] == ("elapsed_s", "cpu_percent", "ram_used_mb", "process_rss_mb")
    assert "gpu0_util_percent" in t.columns and "gpu0_power_w" in t.columns
    assert [r[0] for r in t.rows] == [0, 30, 60]
    assert [r[t.columns.index("gpu0_util_percent")] for r in t.rows] == [50.0, 51.0, 52.0]
    assert system_table([]) is None
    assert system_table(_events(2, gpus=False)).columns == ("elapsed_s", "cpu_percent", "ram_used_mb", "process_rss_mb")


def test_gpus_of_reads_status_then_config(tmp_path):
    from engine.files import atomic_write_json

    store = RunStore(tmp_path)
    run = store.create("x", {"gpus": 2})  # a count (the manifest key), not an assignment
    assert gpus_of(run) == []
    atomic_write_json(run.path / "status.json", {"status": "running", "gpus": [2, 3]})
    assert gpus_of(run) == [2, 3]


def test_job_records_its_gpus_and_samples(tmp_path, monkeypatch):
    from engine.store.runs import RunWriter

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    run = RunStore(tmp_path).create("x", {})
    w = RunWriter(run).open()
    try:
        w.set_status("running")
    finally:
        w.close()
    assert gpus_of(run) == [0, 2]


def test_sample_event_without_gpus(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init="Driver Not Loaded"))
    ev = sample_event(SystemProbe())
    assert ev.gpus == [] and "Driver Not Loaded" in ev.note and ev.host["ram_total_mb"] > 0
