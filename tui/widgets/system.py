"""The system pane: CPU and RAM, then one row per GPU (utilisation, memory, temperature, power, job).

A view like the other panes: the main screen samples (engine/job/system.py, in a
worker thread, about every two seconds while this tab is shown) and passes a
:class:`SystemView` down. Without NVML figures the GPU table is replaced by the
reason (no driver, nvidia-ml-py missing, no GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from .panes import sync_rows

if TYPE_CHECKING:
    from engine.job.system import GpuSample, HostSample
    from engine.store.listing import RunRow


@dataclass
class SystemView:
    host: HostSample | None = None
    gpus: list[GpuSample] = field(default_factory=list)
    gpu_reason: str = ""
    host_reason: str = ""
    holders: dict = field(default_factory=dict)  # GPU index -> ["experiment", ...]
    jobs: list = field(default_factory=list)  # [(experiment, [gpu indices])] of running/paused runs


def sample_view(probe, rows: list[RunRow]) -> SystemView:
    """Read the figures now and who holds which GPU (call from a worker thread); ``rows``: the runs on disk."""
    from engine.job.system import gpus_of
    from engine.status import ACTIVE

    jobs = [(r.run.experiment, gpus_of(r.run)) for r in rows if r.status in ACTIVE]
    holders: dict[int, list[str]] = {}
    for name, gpus in jobs:
        for g in gpus:
            holders.setdefault(g, []).append(name)
    return SystemView(
        host=probe.host(),
        gpus=probe.gpus(),
        gpu_reason=probe.gpu_reason,
        host_reason=probe.host_reason,
        holders=holders,
        jobs=jobs,
    )


def _num(v, fmt: str, unit: str = "") -> str:
    return "?" if v is None else f"{v:{fmt}}{unit}"


def host_text(view: SystemView) -> str:
    h = view.host
    if h is None:
        return view.host_reason or "no CPU or RAM figures"
    cores = f" of {h.cpu_count} cores" if h.cpu_count else ""
    ram = (
        f"{_num(h.ram_used_mb / 1024 if h.ram_used_mb is not None else None, '.1f')}/"
        f"{_num(h.ram_total_mb / 1024 if h.ram_total_mb is not None else None, '.1f')} GiB"
    )
    console = _num(h.process_rss_mb, ",.0f", " MB")
    return f"CPU {_num(h.cpu_percent, '.0f', '%')}{cores} · RAM {ram} · this console {console}"


def jobs_text(view: SystemView) -> str:
    if not view.jobs:
        return "no job running"
    parts = [
        f"{name} → " + (("GPU " + ",".join(map(str, gpus))) if gpus else "no GPU recorded") for name, gpus in view.jobs
    ]
    return "running: " + " · ".join(parts)


def gpu_rows(view: SystemView) -> list[tuple[str, list]]:
    rows = []
    for g in view.gpus:
        mem = (
            f"{g.memory_used_mb / 1024:.1f}/{g.memory_total_mb / 1024:.0f}G"
            if g.memory_used_mb is not None and g.memory_total_mb is not None
            else "?"
        )
        power = _num(g.power_w, ".0f") + ("/" + _num(g.power_limit_w, ".0f") if g.power_limit_w else "") + "W"
        job = ", ".join(view.holders.get(g.index, [])) or "-"
        rows.append(
            (
                str(g.index),
                [
                    str(g.index),
                    g.name.replace("NVIDIA ", ""),
                    _num(g.util_percent, ".0f", "%"),
                    mem,
                    _num(g.temperature_c, ".0f", "C"),
                    power,
                    job,
                ],
            )
        )
    return rows


class SystemPane(Vertical):
    COLUMNS = ("gpu", "name", "util", "memory", "temp", "power", "job")

    DEFAULT_CSS = """
    SystemPane { height: 1fr; }
    SystemPane > Static { height: auto; padding: 0 1; }
    SystemPane > .reason { color: $text-muted; }
    SystemPane > DataTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("reading system figures…", id="sys-host")
        yield Static("", id="sys-jobs")
        yield Static("", id="sys-reason", classes="reason")
        table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True, id="sys-gpus")
        for col in self.COLUMNS:
            table.add_column(col, key=col)
        yield table

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def focus_table(self) -> None:
        self.table.focus()

    def set_view(self, view: SystemView) -> None:
        self.view = view
        self.query_one("#sys-host", Static).update(host_text(view))
        self.query_one("#sys-jobs", Static).update(jobs_text(view))
        reason = self.query_one("#sys-reason", Static)
        reason.update("" if view.gpus else (view.gpu_reason or "no GPU figures") + "; CPU and RAM only")
        reason.display = not view.gpus
        self.table.display = bool(view.gpus)
        sync_rows(self.table, gpu_rows(view))
