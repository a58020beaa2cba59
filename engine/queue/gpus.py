"""GPUs and the queue: which devices this machine shows, how many a job takes, which it gets.

No torch import: the driver's list and ``CUDA_VISIBLE_DEVICES`` are enough, and the
scheduler and every console call these on each pass.
"""

from __future__ import annotations

import os


def machine_gpus() -> tuple[int, ...]:
    """GPU indices this machine shows (no torch import): CUDA_VISIBLE_DEVICES, else the driver's list."""
    env = os.environ.get("LMCONSOLE_VISIBLE_GPUS")  # tests and odd setups: an explicit list
    if env is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        try:
            return tuple(range(len([p for p in env.split(",") if p.strip() and int(p) >= 0])))
        except ValueError:
            return tuple(range(len([p for p in env.split(",") if p.strip()])))
    try:
        return tuple(range(len(os.listdir("/proc/driver/nvidia/gpus"))))
    except OSError:
        return ()


def scheduler_gpus(settings) -> tuple[int, ...]:
    """The devices the scheduler may hand out (``settings.gpus``)."""
    from engine.manifest import parse_gpu_list

    chosen = parse_gpu_list(getattr(settings, "gpus", "all"))
    return machine_gpus() if chosen in ("all", None) or isinstance(chosen, str) else tuple(chosen)


def gpus_needed(exp, has_gpus: bool) -> int:
    """GPUs one job of ``exp`` takes: ``nproc_per_node`` under a launcher, else ``gpus`` (auto: 1 or 0)."""
    if getattr(exp, "device", "auto") == "cpu":
        return 0
    if getattr(exp, "launcher", "none") != "none":
        return exp.nproc_per_node if has_gpus else 0
    n = getattr(exp, "gpus", -1)
    return (1 if has_gpus else 0) if n is None or n < 0 else n


def assign_gpus(
    waiting: list[tuple[int, int]], free: list[int], slots: int, total: int | None = None
) -> dict[int, list[int]]:
    """Pick jobs to start: ``waiting`` is (job id, GPUs needed) in queue order; ``total``: the GPUs
    the scheduler hands out in all (None: no limit known).

    Goes down the queue and starts every job that fits the free GPUs and the free slots. The oldest
    job that does not fit holds the GPUs still free (it needs more than that): later jobs may not take
    them, so a stream of 1-GPU jobs cannot keep a waiting 2-GPU job from ever starting (jobs that need
    no GPU still start). The price: those GPUs idle until enough come free. A job that needs more GPUs
    than ``total`` could never start and holds nothing. Never hands out a GPU twice.
    """
    free = sorted(free)
    out: dict[int, list[int]] = {}
    held = False
    for job_id, need in waiting:
        if slots <= 0:
            break
        if need > len(free):
            if not held and (total is None or need <= total):
                free, held = [], True  # held for this job until enough GPUs come free
            continue
        out[job_id], free = free[:need], free[need:]
        slots -= 1
    return out


def device_env(devices: list[int] | tuple[int, ...], needed: int) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for a job given scheduler indices; None = leave it alone (no GPUs here).

    Indices count the GPUs the scheduler sees: under ``CUDA_VISIBLE_DEVICES=2,3`` index 0 is device 2.
    A job that needs no GPU on a GPU machine gets an empty list, so it never takes GPU 0 by accident.
    """
    if not devices and (needed or not machine_gpus()):
        return None
    parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [p.strip() for p in parent.split(",") if p.strip()] if parent else None
    return ",".join(names[g] if names and g < len(names) else str(g) for g in devices)


def job_env(devices: list[int] | tuple[int, ...], needed: int) -> dict[str, str]:
    """The GPU variables of a job's environment: ``CUDA_VISIBLE_DEVICES`` (see :func:`device_env`) and
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.

    The scheduler's indices, like NVML's (the system view), count GPUs in PCI bus order; CUDA's default
    order is fastest first, so on a box with mixed GPUs a job would run on another GPU than it was given.
    """
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    cuda = device_env(devices, needed)
    if cuda is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda
    return env
