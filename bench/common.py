"""Helpers shared by the benchmark scripts: machine facts, temp manifests, child processes, statistics.

Nothing here is part of the test suite. Every benchmark runs its workloads in
child processes (a fresh interpreter each, so one side never inherits the
other's threads, caches or allocator state), offline, with a temporary
``LMCONSOLE_CACHE`` and a temporary runs directory.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


# -- machine ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import torch
    import transformers

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (float("nan"),) * 3
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "memory_gib": mem_gib,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load_avg_at_start": [round(x, 2) for x in load],
    }


# -- manifests --------------------------------------------------------------------


def demo_experiment(name: str = "demo-pretrain") -> dict:
    """An experiment table of the project's ``experiments.toml`` as a dict (the source of the demo settings)."""
    data = tomllib.loads((REPO / "experiments.toml").read_text(encoding="utf-8"))
    for exp in data.get("experiment", []):
        if exp.get("name") == name:
            return dict(exp)
    raise KeyError(f"experiment {name!r} not in experiments.toml")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def manifest_text(runs_dir: Path, experiments: list[dict]) -> str:
    lines = ["[settings]", f"runs_dir = {_toml_value(str(runs_dir))}", "max_parallel_jobs = 1", ""]
    for exp in experiments:
        lines.append("[[experiment]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in exp.items()]
        lines.append("")
    return "\n".join(lines)


def write_manifest(path: Path, runs_dir: Path, experiments: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest_text(runs_dir, experiments), encoding="utf-8")
    return path


class BenchCtx:
    """The slice of a job context that data preparation needs (no run directory)."""

    def __init__(self, manifest, name: str, verbose: bool = False):
        from engine.store.runs import RunStore

        self.manifest = manifest
        self.exp = manifest.get(name)
        self.store = RunStore(manifest.runs_dir)  # where model = "run:..." is looked up
        self.logs: list[str] = []
        self.verbose = verbose

    def emit(self, event) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append(message)
        if self.verbose:
            print(f"  [{level}] {message}", file=sys.stderr)


def exported_engine_side(manifest_path: str, name: str, data_dir: str):
    """What ``prepare_data.py --export`` wrote, loaded, and the engine's model and optimizer built from it.

    Returns (exp, tokenizer, train pairs, config, model, optimizer); the model is seeded with
    ``exp.seed`` just before it is built, so a peer seeded the same way starts from the same weights.
    """
    import datasets
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    from engine.manifest import load
    from engine.train.loop import make_optimizer

    exp = BenchCtx(load(manifest_path), name).exp
    d = Path(data_dir)
    tok = AutoTokenizer.from_pretrained(str(d / "tokenizer"))
    train = datasets.load_from_disk(str(d / "train-pairs"))
    config = BertConfig.from_json_file(str(d / "config.json"))
    torch.manual_seed(exp.seed)
    model = BertForPreTraining(config).train()
    return exp, tok, train, config, model, make_optimizer(model, exp, torch.device("cpu"))


# -- environment and child processes ------------------------------------------------


def bench_env(cache: Path, **extra) -> dict:
    """Environment of a child: offline, its own lmconsole and datasets caches."""
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env["LMCONSOLE_CACHE"] = str(cache)
    env["HF_DATASETS_CACHE"] = str(Path(cache) / "hf-datasets")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def lmconsole_cmd() -> list[str]:
    """The ``lmconsole`` command of this interpreter: its console script, or ``python -m tui.entry``."""
    exe = Path(sys.executable).parent / "lmconsole"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.entry"]


def run_child(
    args: list[str], env: dict, out_json: Path | None = None, timeout: float = 1800, log: Path | None = None
) -> dict:
    """Run ``args``; return its JSON result (``out_json``) plus ``wall_s``, ``rc`` and the child's peak RSS."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    fh = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.run(
            args,
            env=env,
            cwd=str(REPO),
            stdout=fh,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            timeout=timeout,
        )
    finally:
        if log:
            fh.close()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict = {}
    if out_json is not None and Path(out_json).exists():
        result = json.loads(Path(out_json).read_text())
    result.update(
        rc=proc.returncode,
        wall_s=wall,
        child_user_s=after.ru_utime - before.ru_utime,
        child_sys_s=after.ru_stime - before.ru_stime,
    )
    if proc.returncode != 0:
        tail = (
            (proc.stderr or b"").decode(errors="replace")[-3000:]
            if not log
            else Path(log).read_text(errors="replace")[-3000:]
        )
        raise RuntimeError(f"child failed (rc {proc.returncode}): {' '.join(args)}\n{tail}")
    return result


def interleaved(sides: dict, reps: int, progress=None) -> dict[str, list]:
    """Run each side's callable ``reps`` times, interleaved; the order alternates each repetition (ABAB, BABA...)."""
    names = list(sides)
    results: dict[str, list] = {n: [] for n in names}
    for r in range(reps):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            if progress:
                progress(f"rep {r + 1}/{reps}: {n}")
            results[n].append(sides[n]())
    return results


# -- statistics ----------------------------------------------------------------------


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(round(q / 100 * len(s), 9)) - 1))
    return s[k]


def ratio_stats(num: list[float], den: list[float]) -> dict:
    """Pairwise ratios (repetition i of A over repetition i of B): median, min, max."""
    pairs = [a / b for a, b in zip(num, den) if a and b]
    return {
        "median": median(pairs),
        "min": min(pairs) if pairs else float("nan"),
        "max": max(pairs) if pairs else float("nan"),
        "n": len(pairs),
    }


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"
