"""System figures: CPU and RAM (psutil) and, per GPU, utilisation, memory, temperature, power (NVML).

One :class:`SystemProbe` serves both the console's system view (sampled about
every two seconds while the view is shown) and each job, which records a
:class:`~engine.events.SystemSampled` event every :data:`SAMPLE_EVERY_S`
seconds at an optimizer-step boundary, so the figures can be plotted and
exported like metrics (``tables/system.json``, rewritten after each sample).

NVML comes from ``nvidia-ml-py`` (module ``pynvml``). Without it, or without an
NVIDIA driver, :attr:`SystemProbe.gpu_reason` says why and only CPU and RAM
are reported. Which job holds which GPU is read from a run's ``status.json``
or ``config.json`` key ``gpus`` when it is a list of device indices (the
scheduler records it; a job started with ``CUDA_VISIBLE_DEVICES`` records its
own), see :func:`gpus_of`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from engine.device import visible_gpus

SAMPLE_EVERY_S = 30.0


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    util_percent: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True)
class HostSample:
    cpu_percent: float | None = None  # all cores, 0-100
    cpu_count: int | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    process_rss_mb: float | None = None  # this process


def _nvml_error(pynvml) -> type[Exception]:
    return getattr(pynvml, "NVMLError", Exception)


class SystemProbe:
    """Reads host and GPU figures. NVML is initialised once, on first use; ``nvml`` injects a fake for tests."""

    def __init__(self, nvml=None, psutil_module=None):
        self._nvml = nvml
        self._nvml_ready: bool | None = None
        self._psutil = psutil_module
        self.gpu_reason = ""
        self.host_reason = ""
        self._process = None
        self._init_psutil()

    # -- host ---------------------------------------------------------------------------
    def _init_psutil(self) -> None:
        if self._psutil is None:
            try:
                import psutil
            except ImportError:
                self.host_reason = "psutil is not installed (pip install psutil): no CPU or RAM figures"
                return
            self._psutil = psutil
        self._process = self._psutil.Process()
        self._psutil.cpu_percent(interval=None)  # the first reading is always 0: prime it

    def host(self) -> HostSample | None:
        ps = self._psutil
        if ps is None:
            return None
        mem = ps.virtual_memory()
        try:
            rss = self._process.memory_info().rss / 2**20 if self._process is not None else None
        except Exception:  # noqa: BLE001 - a vanished /proc entry must not break sampling
            rss = None
        return HostSample(
            cpu_percent=float(ps.cpu_percent(interval=None)),
            cpu_count=ps.cpu_count(),
            ram_used_mb=(mem.total - mem.available) / 2**20,
            ram_total_mb=mem.total / 2**20,
            process_rss_mb=rss,
        )

    # -- GPUs -----------------------------------------------------------------------------
    def _init_nvml(self) -> bool:
        if self._nvml_ready is not None:
            return self._nvml_ready
        self._nvml_ready = False
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self.gpu_reason = "no GPU figures: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
                return False
            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
            count = self._nvml.nvmlDeviceGetCount()
        except _nvml_error(self._nvml) as exc:
            self.gpu_reason = f"no GPU figures: no NVIDIA driver here (NVML: {exc})"
            return False
        except OSError as exc:  # the shared library is missing or unloadable
            self.gpu_reason = f"no GPU figures: no NVIDIA driver here ({exc})"
            return False
        if not count:
            self.gpu_reason = "no GPU figures: NVML sees no GPUs"
            return False
        self._nvml_ready = True
        return True

    def gpus(self, only: list[int] | None = None) -> list[GpuSample]:
        """Every GPU NVML sees (NVML indices), or those in ``only``."""
        if not self._init_nvml():
            return []
        nv = self._nvml
        err = _nvml_error(nv)

        def read(fn, *args):
            try:
                return fn(*args)
            except err:  # not supported on this board, or a transient failure: leave the cell empty
                return None

        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            if only is not None and i not in only:
                continue
            h = read(nv.nvmlDeviceGetHandleByIndex, i)
            if h is None:
                continue
            name = read(nv.nvmlDeviceGetName, h) or f"GPU {i}"
            util = read(nv.nvmlDeviceGetUtilizationRates, h)
            mem = read(nv.nvmlDeviceGetMemoryInfo, h)
            temp = read(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
            power = read(nv.nvmlDeviceGetPowerUsage, h)  # milliwatts
            limit = read(nv.nvmlDeviceGetEnforcedPowerLimit, h)
            out.append(
                GpuSample(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    util_percent=float(util.gpu) if util is not None else None,
                    memory_used_mb=mem.used / 2**20 if mem is not None else None,
                    memory_total_mb=mem.total / 2**20 if mem is not None else None,
                    temperature_c=float(temp) if temp is not None else None,
                    power_w=power / 1000 if power is not None else None,
                    power_limit_w=limit / 1000 if limit is not None else None,
                )
            )
        return out


def gpus_of(run) -> list[int]:
    """The GPU indices a run holds: ``gpus`` in its status, else in its config, when a list of indices."""
    for source in (run.raw_status(), run.config()):
        value = source.get("gpus")
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return value
    return []


def sample_event(probe: SystemProbe, only: list[int] | None = None):
    """A :class:`~engine.events.SystemSampled` with what ``probe`` reads now."""
    from engine.events import SystemSampled

    host = probe.host()
    return SystemSampled(
        host=asdict(host) if host is not None else {}, gpus=[asdict(g) for g in probe.gpus(only)], note=probe.gpu_reason
    )


class JobSampler:
    """Emits a SystemSampled event at most every ``every_s`` seconds (call it at step boundaries).

    ``samples`` holds the run's samples so far (set from its events on the first call,
    earlier attempts' included), for the ``system`` table written after each sample.
    """

    def __init__(self, every_s: float = SAMPLE_EVERY_S, probe: SystemProbe | None = None):
        self.every_s = every_s
        self.probe = probe or SystemProbe()
        self.only = visible_gpus()
        self._last = float("-inf")
        self.samples: list | None = None

    def maybe(self, emit, earlier=None) -> bool:
        """Sample if due; ``earlier()`` gives the run's earlier SystemSampled events (read once)."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return False
        self._last = now
        if self.samples is None:
            self.samples = list(earlier()) if earlier is not None else []
        event = sample_event(self.probe, self.only)
        emit(event)
        self.samples.append(event)
        return True


SYSTEM_COLUMNS = ("elapsed_s", "cpu_percent", "ram_used_mb", "process_rss_mb")
GPU_COLUMNS = ("util_percent", "memory_used_mb", "temperature_c", "power_w")


def system_table(events):
    """``tables/system.json``: one row per SystemSampled event (CPU, RAM, then each GPU's figures)."""
    from engine.events import SystemSampled
    from engine.tables import Table

    samples = [e for e in events if isinstance(e, SystemSampled)]
    if not samples:
        return None
    indices = sorted({g["index"] for s in samples for g in s.gpus})
    cols = SYSTEM_COLUMNS + tuple(f"gpu{i}_{c}" for i in indices for c in GPU_COLUMNS)
    t0 = samples[0].time
    rows = []
    for s in samples:
        by_index = {g["index"]: g for g in s.gpus}
        row = [round(s.time - t0, 1)] + [s.host.get(c) for c in SYSTEM_COLUMNS[1:]]
        for i in indices:
            row += [by_index.get(i, {}).get(c) for c in GPU_COLUMNS]
        rows.append(tuple(round(v, 2) if isinstance(v, float) else v for v in row))
    return Table(
        name="system",
        columns=cols,
        rows=rows,
        title="System samples",
        notes=(
            f"one row per SystemSampled event (about every {SAMPLE_EVERY_S:.0f} s at optimizer-step "
            "boundaries); percentages 0-100, memory in MiB, temperature in °C, power in W",
        ),
    )
