"""Placement by memory: which waiting jobs fit which GPUs now, from their estimates and NVML's free memory.

A job's need is its memory estimate per GPU (:func:`engine.models.memory.experiment_estimate`,
CUDA context and allocator slack included); a GPU's room is what NVML says is free, less what
the queue's jobs on it have yet to allocate: each one's estimate less what NVML's process list
shows its process using (all of it when NVML cannot match the process, e.g. under a launcher or
in another pid namespace). So two jobs started in one pass, or a second job started before the
first one filled its memory, never add up to more than the GPU has. Without NVML (no driver,
``nvidia-ml-py`` missing, a GPU named by UUID in ``CUDA_VISIBLE_DEVICES``) or without an estimate
(a model whose config is not at hand) placement counts whole GPUs as before.

Four outcomes for a waiting job: it starts on GPUs with room; it waits (``queued``, with the
reason) when it fits a GPU of this machine but not now; it is refused when queued (and blocked
if it is already in the queue) when it fits no GPU here even when idle; and with
``settings.gpu_sharing = true`` it may start on a GPU another queue job uses when both estimates
fit together (off by default: two jobs on one GPU slow each other down).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from engine.models.memory import GIB, MemoryEstimate, experiment_estimate


@dataclass(frozen=True)
class GpuRoom:
    """One GPU as NVML sees it now, by the scheduler's index, in bytes."""

    index: int
    free: float
    total: float
    used: dict[int, float] = field(default_factory=dict)  # bytes each process (pid) holds, as NVML lists them


def _nvml_indices(gpus: tuple[int, ...]) -> list[int] | None:
    """NVML's index of each scheduler GPU: the scheduler counts the visible GPUs (CUDA_VISIBLE_DEVICES),
    NVML all of them in PCI order (jobs get ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). None for UUIDs."""
    env = os.environ.get("LMCONSOLE_VISIBLE_GPUS")
    if env is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(gpus)
    try:
        names = [int(p) for p in env.split(",") if p.strip()]
    except ValueError:
        return None
    return [names[g] if g < len(names) else g for g in gpus]


def gpu_rooms(gpus: tuple[int, ...], nvml=None) -> dict[int, GpuRoom] | None:
    """Free and total memory of each scheduler GPU in ``gpus``, or None when NVML cannot tell.

    ``nvml``: a pynvml stand-in (tests); else ``pynvml`` from ``nvidia-ml-py``, imported here.
    """
    if not gpus:
        return None
    indices = _nvml_indices(gpus)
    if indices is None:
        return None
    if nvml is None:
        try:
            import pynvml as nvml  # type: ignore[no-redef]
        except ImportError:
            return None
    err = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except (err, OSError):
        return None
    try:
        out = {}
        for g, i in zip(gpus, indices):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            out[g] = GpuRoom(g, float(mem.free), float(mem.total), _process_memory(nvml, handle, err))
        return out
    except (err, OSError):
        return None
    finally:
        shutdown = getattr(nvml, "nvmlShutdown", None)
        if shutdown is not None:
            try:
                shutdown()
            except (err, OSError):
                pass


def _process_memory(nvml, handle, err) -> dict[int, float]:
    """Bytes per pid of the compute processes on a GPU ({} when NVML cannot list them)."""
    listing = getattr(nvml, "nvmlDeviceGetComputeRunningProcesses", None)
    if listing is None:
        return {}
    try:
        return {int(p.pid): float(p.usedGpuMemory or 0) for p in listing(handle)}
    except (err, OSError, AttributeError, TypeError, ValueError):
        return {}


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def what_to_lower(exp) -> str:
    """The manifest keys that shrink a job's memory, with their values: the second half of a refusal."""
    keys = [f"batch_size ({exp.batch_size}, with gradient_accumulation_steps to keep the effective batch)"]
    keys.append(f"max_seq_length ({exp.max_seq_length})")
    if exp.precision == "fp32":
        keys.append('precision ("fp32"; "auto" trains in bf16)')
    return "lower " + " or ".join(keys)


def fits_machine(need: float, gpus: int, rooms: dict[int, GpuRoom]) -> bool:
    """Whether ``gpus`` GPUs of this machine each have ``need`` bytes in all (when nothing else runs)."""
    totals = sorted((r.total for r in rooms.values()), reverse=True)
    return len(totals) >= gpus and (gpus == 0 or totals[gpus - 1] >= need)


def too_big(name: str, est: MemoryEstimate, rooms: dict[int, GpuRoom], exp) -> str:
    """One line: a job that fits no GPU of this machine even when idle, how much it needs, what to lower."""
    largest = max(r.total for r in rooms.values())
    return (
        f"{name} needs about {gib(est.total)} per GPU ({est.breakdown()}) and the largest GPU here has "
        f"{gib(largest)}: "
        f"{what_to_lower(exp)}"
    )


@dataclass
class Candidate:
    """A waiting job as placement sees it: its id, GPUs it needs and its estimate per GPU (None: unknown)."""

    id: int
    gpus: int
    need: float | None = None
    name: str = ""
    exp: object = None
    estimate: MemoryEstimate | None = None


@dataclass
class Placement:
    """What one scheduler pass decided: GPUs per started job, why others wait, which can never start."""

    picks: dict[int, list[int]] = field(default_factory=dict)
    waiting: dict[int, str] = field(default_factory=dict)
    blocked: dict[int, str] = field(default_factory=dict)


def place(
    candidates: list[Candidate],
    gpus: list[int],
    on_gpu: dict[int, list[tuple[float | None, int | None]]],
    rooms: dict[int, GpuRoom] | None,
    slots: int,
    sharing: bool = False,
) -> Placement:
    """Pick jobs to start, in queue order, and say why the others wait.

    ``gpus``: the GPUs the scheduler hands out; ``on_gpu``: (estimate or None when unknown, pid or
    None) of each queue job that holds a GPU; ``rooms``: NVML's figures (None: count whole GPUs only).
    As with whole GPUs, the oldest job that fits a GPU of this machine but not now holds what is
    left (a stream of small jobs cannot starve it); a job that can never start holds nothing.
    Never hands out more than a GPU's free memory, nor a GPU twice without ``sharing``.
    """
    out = Placement()
    holders = {g: [need for need, _ in on_gpu.get(g, [])] for g in gpus}
    room: dict[int, float] = {}
    if rooms is not None:
        for g in gpus:
            if g not in rooms:
                room[g] = 0.0
                continue
            used = rooms[g].used  # what a job still has to allocate comes out of today's free memory
            pending = sum(max(0.0, need - used.get(pid or -1, 0.0)) for need, pid in on_gpu.get(g, []) if need)
            room[g] = rooms[g].free - pending
    held = False
    for c in candidates:
        if slots <= 0:
            break
        if c.gpus == 0:
            out.picks[c.id] = []
            slots -= 1
            continue
        known = rooms is not None and c.need is not None
        if c.gpus > len(gpus):
            continue  # said by the job's status (settings.gpus offers fewer)
        if known and rooms is not None and not fits_machine(c.need or 0.0, c.gpus, rooms):
            est = c.estimate
            why = too_big(c.name, est, rooms, c.exp) if est is not None else f"{c.name} fits no GPU here"
            # a blocked job is not looked at again: the user changes the manifest and queues it anew
            out.blocked[c.id] = why + ", then cancel this job and queue it again"
            continue

        need = c.need if known else None
        fit = [] if held else [g for g in gpus if _usable(holders[g], room.get(g, 0.0), need, sharing)]
        fit.sort(key=lambda g: (len(holders[g]), g))  # idle GPUs first, then the least shared
        if len(fit) < c.gpus:
            if not held:
                out.waiting[c.id] = _why_waiting(c, gpus, holders, room if known else None)
            held = True  # what is left stays for this job until it fits
            continue
        chosen = fit[: c.gpus]
        for g in chosen:
            holders[g].append(c.need)
            if known:
                room[g] -= c.need or 0
        out.picks[c.id] = chosen
        slots -= 1
    return out


def _usable(holders: list[float | None], room: float, need: float | None, sharing: bool) -> bool:
    """Whether a job needing ``need`` bytes (None: unknown, whole GPUs only) may start on a GPU held by
    queue jobs with estimates ``holders`` and ``room`` bytes left."""
    if not holders:
        return need is None or room >= need
    if not sharing or need is None or any(x is None for x in holders):
        return False  # sharing needs every estimate on the GPU: an unknown one may take all of it
    return room >= need


def _why_waiting(c: Candidate, gpus: list[int], holders: dict, room: dict[int, float] | None) -> str:
    idle = [g for g in gpus if not holders[g]]
    if room is None or c.need is None:
        return f"waiting for {c.gpus} free GPU(s)"
    best = max(gpus, key=lambda g: room[g])
    where = f"GPU {best} has {gib(max(room[best], 0.0))} free" if len(gpus) > 1 else f"{gib(max(room[best], 0.0))} free"
    if len(idle) >= c.gpus or room[best] < c.need:
        return f"waiting for GPU memory: needs {gib(c.need)} per GPU, {where}"
    return f"waiting for {c.gpus} free GPU(s) with {gib(c.need)} each"


def candidate(entry, manifest, store, cache: dict) -> Candidate:
    """The placement view of a waiting queue entry: its estimate per GPU from the manifest it was queued from."""
    key = (str(manifest.path), entry.experiment, entry.seed)
    if key not in cache:
        from engine.job.runner import experiment_for

        try:
            exp = experiment_for(manifest, entry.experiment, None, entry.seed)
            est, _ = experiment_estimate(manifest, exp, on_gpu=True, store=store)
        except Exception:  # noqa: BLE001 - an estimate that cannot be made only means "count whole GPUs"
            exp, est = None, None
        cache[key] = (exp, est)
    exp, est = cache[key]
    return Candidate(entry.id, entry.gpus, est.total if est is not None else None, entry.experiment, exp, est)
