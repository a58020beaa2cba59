"""A pynvml stand-in with fixed figures, for the system view and job samples."""

from __future__ import annotations

import types
from collections import namedtuple

Util = namedtuple("Util", "gpu memory")
Mem = namedtuple("Mem", "total free used")


def fake_pynvml(count=2, fail_init=None, unsupported=(), memory=None):
    """A pynvml stand-in: ``count`` GPUs with fixed figures; ``unsupported`` names calls that raise.

    ``memory``: a list of [free GiB, total GiB] per GPU, read at each call (a test changes it
    between scheduler passes); default 60 of 80 GiB free on every GPU.
    """
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nv.NVMLError = NVMLError
    nv.NVML_TEMPERATURE_GPU = 0
    nv.calls = {"init": 0}

    def init():
        nv.calls["init"] += 1
        if fail_init:
            raise NVMLError(fail_init)

    def guard(name, fn):
        def call(*args):
            if name in unsupported:
                raise NVMLError("Not Supported")
            return fn(*args)

        return call

    nv.nvmlInit = init
    nv.nvmlDeviceGetCount = lambda: count
    nv.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)
    nv.nvmlDeviceGetName = guard("name", lambda h: b"NVIDIA H100" if h[1] == 0 else "NVIDIA A100")
    nv.nvmlDeviceGetUtilizationRates = guard("util", lambda h: Util(gpu=90 + h[1], memory=40))

    def mem(h):
        free, total = memory[h[1]] if memory is not None else (60, 80)
        return Mem(total=total * 2**30, free=free * 2**30, used=(total - free) * 2**30)

    nv.nvmlDeviceGetMemoryInfo = guard("mem", mem)
    nv.nvmlDeviceGetTemperature = guard("temp", lambda h, sensor: 61 + h[1])
    nv.nvmlDeviceGetPowerUsage = guard("power", lambda h: 350_500)
    nv.nvmlDeviceGetEnforcedPowerLimit = guard("limit", lambda h: 700_000)
    return nv
