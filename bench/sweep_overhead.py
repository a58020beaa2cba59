"""Sweeps: what a trial costs over a plain run of the same config, and trials per hour at parallel 1 vs 2.

    HF_HUB_OFFLINE=1 python bench/sweep_overhead.py [--reps 2] [--trials 4] [--json out.json]

The config is a small bert-micro classifier on the embedded SST-2-like set (its tokenizer trained
and cached by the first run, so every measured run finds it cached). *Plain*: ``lmconsole run cls``
in the foreground, timed from the command's start to its exit. *One trial*: a sweep of the same
config with ``trials = 1``, timed from ``lmconsole run sw`` to the trial's run ending (queue write,
scheduler start, the study's creation and ask, the job process, reports and the tell). The
overhead is the difference of the medians, with the trial's own split: submit to RunStarted
(scheduler, study, process start) and RunStarted to the end. *Trials per hour*: a grid of
``--trials`` learning rates with ``parallel = 1`` and ``parallel = 2`` (``max_parallel_jobs = 2``,
no GPUs), timed from submit to the last trial's end. Sides alternate between repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import bench_env, lmconsole_cmd, machine_info  # noqa: E402

CLS = """
[[experiment]]
name = "{name}"
task = "classify"
model = "bert-micro"
tokenizer = "train"
vocab_size = 2000
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
epochs = 2
batch_size = 16
max_seq_length = 32
max_train_samples = 64
max_eval_samples = 32
logging_steps = 2
"""


def manifest(folder: Path, trials: int, parallel: int) -> Path:
    lrs = ", ".join(repr(1e-4 * 3**i) for i in range(max(trials, 2)))
    text = '[settings]\nruns_dir = "runs"\ngpus = "none"\nmax_parallel_jobs = 2\n'
    text += CLS.format(name="cls")
    text += CLS.format(name="sw")
    text += (
        f'[experiment.sweep]\nmethod = "grid"\ntrials = {trials}\nparallel = {parallel}\n'
        f"[experiment.sweep.parameters]\nlearning_rate = [{lrs}]\n"
    )
    path = folder / "experiments.toml"
    path.write_text(text)
    return path


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def plain(folder: Path, env: dict) -> dict:
    path = manifest(folder, 1, 1)
    t0 = time.time()
    subprocess.run([*lmconsole_cmd(), "--manifest", str(path), "run", "cls", "-q"], env=env, check=True, cwd=folder)
    end = time.time()
    run_dir = sorted((folder / "runs" / "cls").iterdir())[-1]
    started = next(e["time"] for e in _events(run_dir) if e["event"] == "RunStarted")
    return {"wall_s": end - t0, "to_start_s": started - t0, "run_s": end - started}


def sweep(folder: Path, env: dict, trials: int, parallel: int) -> dict:
    from engine.status import RUN_FINAL
    from engine.store.runs import RunStore
    from engine.store.trials import trial_runs

    path = manifest(folder, trials, parallel)
    store = RunStore(folder / "runs")
    before = {r.run_id for r in store.runs("sw")}
    t0 = time.time()
    subprocess.run(
        [*lmconsole_cmd(), "--manifest", str(path), "run", "sw"],
        env=env,
        check=True,
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    while True:
        mine = [r for r, _ in trial_runs(store, "sw") if r.run_id not in before]
        if len(mine) == trials and all(r.status().get("status") in RUN_FINAL for r in mine):
            break
        time.sleep(0.2)
    end = max(os.stat(r.path / "status.json").st_mtime for r in mine)
    first = min(mine, key=lambda r: r.run_id)
    started = next(e["time"] for e in _events(first.path) if e["event"] == "RunStarted")
    return {"wall_s": end - t0, "to_start_s": started - t0, "trials_per_hour": trials / (end - t0) * 3600}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--json", default="")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lmconsole-bench-sweep-"))
    env = bench_env(folder / "cache")
    plain(folder, env)  # warm-up: trains and caches the tokenizer and the data
    out: dict = {"machine": machine_info(), "plain": [], "one_trial": [], "parallel_1": [], "parallel_2": []}
    for rep in range(args.reps):
        order = ["plain", "one_trial"] if rep % 2 == 0 else ["one_trial", "plain"]
        for side in order:
            out[side].append(plain(folder, env) if side == "plain" else sweep(folder, env, 1, 1))
        order = ["parallel_1", "parallel_2"] if rep % 2 == 0 else ["parallel_2", "parallel_1"]
        for side in order:
            out[side].append(sweep(folder, env, args.trials, int(side[-1])))
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in out.items() if k != "machine"}
    out["median"] = med
    print(f"load average at the end: {os.getloadavg()}")
    print(f"plain run: {med['plain']['wall_s']:.1f} s (to RunStarted {med['plain']['to_start_s']:.1f} s)")
    print(
        f"one trial: {med['one_trial']['wall_s']:.1f} s (to RunStarted {med['one_trial']['to_start_s']:.1f} s); "
        f"overhead {med['one_trial']['wall_s'] - med['plain']['wall_s']:+.1f} s"
    )
    for k in ("parallel_1", "parallel_2"):
        what = f"{args.trials} trials, {k.replace('_', ' = ')}"
        print(f"{what}: {med[k]['wall_s']:.1f} s, {med[k]['trials_per_hour']:.0f} trials/hour")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
