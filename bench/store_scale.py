"""Scale of the run store: 1,000 run directories, some with 1,000,000-line events files.

Builds such a store quickly (``build``), then measures four figures
against their goals (``measure``); ``all`` does both in a temporary folder (``bench/run.py
--only store`` runs that):

1. ``lmconsole runs`` wall time (<= 1 s): a fresh process, warm page cache, median of 5;
2. the console in tmux at 80x24: time to its first frame (<= 2 s; also: until the runs are
   listed), then key presses on the Runs tab (down-arrow scrolling, typing a filter), each timed
   from just before ``tmux send-keys`` until ``capture-pane`` shows the change (p95 <= 150 ms);
3. following a growing events file (``engine.store.follow.RunFeed.poll``, the run view's reader):
   bytes the process read (``/proc/self/io`` rchar) for a poll after N new lines, against the
   size of those lines (goal: reads only what is new, not the whole file);
4. the run view's plots of a 1M-step run: points handed to plotext and the time of one plot
   refresh (``step_series`` + ``CurvePlot`` draw + plotext build at 80x24 size).

The generator writes realistic run directories in the engine's formats: ``config.json``,
``status.json`` and ``results.json`` as ``engine.store.runs.atomic_write_json`` writes them (without its
fsync: thousands of files), ``tables/`` with
``engine.tables.Table``, ``meta.json`` (tags, notes, archived), and ``events.jsonl`` whose lines
are ``engine.events.to_json`` of real events (the 1M-line files: the same line format, one
template per event type made by ``to_json`` and checked by ``from_json`` on a sample).

    python bench/store_scale.py build --root /tmp/store --runs 1000 --big 3 --big-lines 1000000
    python bench/store_scale.py measure --root /tmp/store --json /tmp/store.json
    python bench/store_scale.py all --json /tmp/store.json      # build in a temp folder, measure, delete
    python bench/store_scale.py check      # 30 runs in a temp folder, read back by the engine (exit 1 if not)

``check`` is the generator's own test (bench/ is not part of the test suite): the store it writes
must read back as real runs do (every run listed without problems, a big run's events parsed back
whole, the listing's tail read of the last step equal to a full read), or the figures of ``measure``
describe something the engine never sees.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (puts the repo on sys.path)
from common import lmconsole_cmd, percentile  # noqa: E402

from engine.events import (  # noqa: E402
    CheckpointSaved,
    EvalFinished,
    LogEmitted,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StatusChanged,
    StepLogged,
    TableWritten,
    from_json,
    json_safe,  # noqa: E402
    to_json,
)
from engine.store.listing import last_step, list_rows  # noqa: E402
from engine.store.runs import Run, RunStore, atomic_write_text  # noqa: E402
from engine.tables import Table  # noqa: E402

GOALS = {"runs_s": 1.0, "first_frame_s": 2.0, "key_p95_ms": 150.0}
# experiment name -> (task, model, headline metrics of a finished run)
EXPERIMENTS = {
    "demo-pretrain": ("pretrain", "bert-tiny", ("mlm_perplexity", 300.0)),
    "pretrain": ("pretrain", "google-bert/bert-base-uncased", ("mlm_perplexity", 8.0)),
    "demo-sst2": ("classify", "run:demo-pretrain", ("accuracy", 0.8)),
    "sst2": ("classify", "run:pretrain", ("accuracy", 0.92)),
    "demo-squad": ("qa", "run:demo-pretrain", ("f1", 40.0)),
    "squad": ("qa", "run:pretrain", ("f1", 75.0)),
    "lr-sweep": ("classify", "bert-tiny", ("accuracy", 0.7)),
    "seq-sweep": ("pretrain", "bert-mini", ("mlm_perplexity", 120.0)),
}
# status of a small run -> weight (a "running" status whose owner is gone reads as interrupted)
STATUS_MIX = {"finished": 80, "failed": 7, "cancelled": 4, "running": 4, "queued": 2, "blocked": 1, "paused": 2}
TAGS = ("baseline", "sweep", "ablation", "keep", "old", "seed-0", "seed-1", "lr:high")


def write_json(path: Path, data) -> None:
    """What ``engine.store.runs.atomic_write_json`` writes, without its fsync (thousands of files: the build stays quick)."""
    Path(path).write_text(
        json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )


def log(msg: str) -> None:
    print(f"[store {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the generator ------------------------------------------------------------------------------


def _template(event) -> tuple[str, list[str]]:
    """``to_json(event)`` with its sentinel values turned into ``str.format`` fields (in order)."""
    text = to_json(event).replace("{", "{{").replace("}", "}}")
    fields = []
    for name, sentinel in SENTINELS.items():
        if sentinel in text:
            text = text.replace(sentinel, "{" + name + "}")
            fields.append(name)
    return text, fields


SENTINELS = {
    "time": "1111111111.25",
    "step": "222222222",
    "epoch": "3.125",
    "loss": "4.0625",
    "lr": "5.5e-05",
    "gnorm": "6.75",
    "tps": "77777.5",
    "eta": "888.5",
    "mem": "999.5",
    "total": "123123123",
}


def step_template() -> str:
    ev = StepLogged(
        step=222222222,
        epoch=3.125,
        loss=4.0625,
        learning_rate=5.5e-05,
        total_steps=123123123,
        parts={"mlm_loss": 4.0625, "nsp_loss": 6.75},
        grad_norm=6.75,
        tokens_per_s=77777.5,
        samples_per_s=888.5,
        eta_s=888.5,
        memory_mb=999.5,
        time=1111111111.25,
    )
    text, _ = _template(ev)
    return text


def eval_template() -> str:
    ev = EvalFinished(
        epoch=123123123,
        step=222222222,
        split="test",
        metrics={"mlm_perplexity": 4.0625, "mlm_accuracy": 6.75, "eval_loss": 3.125},
        time=1111111111.25,
    )
    text, _ = _template(ev)
    return text


def write_big_events(path: Path, lines: int, t0: float) -> int:
    """A 1M-line events.jsonl in the engine's format (templates of ``to_json``), an evaluation every
    1% of the steps; returns its size in bytes."""
    eval_every = max(2, lines // 100)
    head = [
        RunStarted(
            run_id=path.parent.name,
            experiment=path.parent.parent.name,
            task="pretrain",
            device="cuda:0 (H200)",
            time=t0,
        ),
        StatusChanged(status="running", time=t0),
        PhaseStarted(phase="train", detail=f"{lines} steps", time=t0),
    ]
    step_t, eval_t = step_template(), eval_template()
    total = lines
    rnd = random.Random(7)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("".join(to_json(e) + "\n" for e in head))
        buf = []
        for i in range(1, lines + 1 - len(head)):
            loss = 2.0 + 8.0 / math.sqrt(i) + rnd.random() * 0.1
            t = t0 + i * 0.05
            if i % eval_every == 0:
                buf.append(
                    eval_t.format(
                        time=repr(t),
                        step=i,
                        epoch=repr(loss),
                        loss=repr(math.exp(loss)),
                        gnorm=repr(0.3),
                        total=i // eval_every,
                    )
                )
            else:
                buf.append(
                    step_t.format(
                        time=repr(t),
                        step=i,
                        epoch=repr(i / total),
                        loss=repr(loss),
                        lr=repr(1e-4 * (1 - i / total)),
                        gnorm=repr(1.0 + rnd.random()),
                        tps=repr(50000.0 + i % 977),
                        eta=repr((total - i) * 0.05),
                        mem="20480.0",
                        total=total,
                    )
                )
            if len(buf) >= 20000:
                fh.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            fh.write("\n".join(buf) + "\n")
    return path.stat().st_size


def small_events(run_id: str, exp: str, task: str, status: str, steps: int, t0: float, head: tuple) -> str:
    evs = [
        StatusChanged(status="running", time=t0),
        RunStarted(run_id=run_id, experiment=exp, task=task, device="cpu", time=t0),
        PhaseStarted(phase="data", detail="tokenising", time=t0 + 1),
        LogEmitted(level="info", message="device cpu", time=t0 + 1),
        PhaseStarted(phase="train", detail=f"{steps} steps", time=t0 + 2),
    ]
    done = steps if status == "finished" else steps // 2
    for s in range(10, done + 1, 10):
        evs.append(
            StepLogged(
                step=s,
                epoch=s / steps * 3,
                loss=3.0 + 5.0 / s,
                learning_rate=1e-4,
                total_steps=steps,
                grad_norm=1.2,
                tokens_per_s=5000.0,
                samples_per_s=40.0,
                eta_s=(steps - s) * 0.1,
                memory_mb=700.0,
                time=t0 + 2 + s * 0.1,
            )
        )
        if s % (steps // 3 or 1) == 0:
            evs.append(
                EvalFinished(
                    epoch=s * 3 // steps, step=s, split="validation", metrics={head[0]: head[1]}, time=t0 + 3 + s * 0.1
                )
            )
            evs.append(
                CheckpointSaved(step=s, epoch=s * 3 // steps, path=f"checkpoints/step-{s}", time=t0 + 3 + s * 0.1)
            )
    if status == "finished":
        evs.append(TableWritten(name="final", path="tables/final.json", time=t0 + 4 + steps * 0.1))
        evs.append(RunFinished(status="finished", results={"final": {head[0]: head[1]}}, time=t0 + 4 + steps * 0.1))
    if status in ("finished", "failed", "cancelled", "blocked"):
        evs.append(
            StatusChanged(
                status=status, reason="" if status == "finished" else f"{status} (generated)", time=t0 + 5 + steps * 0.1
            )
        )
    return "".join(to_json(e) + "\n" for e in evs)


def _config(rnd: random.Random, i: int, exp: str, task: str, model: str, lr: float) -> dict:
    """A run's config.json (three random draws, in this order: batch size, sequence length, seed)."""
    return {
        "name": exp,
        "task": task,
        "model": model,
        "learning_rate": lr,
        "batch_size": rnd.choice((8, 16, 32)),
        "epochs": 3,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "max_seq_length": rnd.choice((128, 256)),
        "seed": rnd.randrange(5),
        "logging_steps": 10,
        "precision": "auto",
        "dataset": "glue" if task == "classify" else "wikitext",
        "description": f"generated run {i} of the store-scale benchmark",
    }


def _write_results(path: Path, exp: str, task: str, metric: str, value: float) -> None:
    """results.json and tables/final.json of a finished run."""
    final = {metric: value, "eval_split": "validation", "n": 500}
    if task == "classify":
        final.update(f1=value * 0.98, confusion_matrix=[[229, 7], [8, 256]], class_names=["negative", "positive"])
    write_json(
        path / "results.json",
        {"final": final, "history": [{"epoch": e, metric: value * (1 + 0.1 / e)} for e in (1, 2, 3)]},
    )
    table = Table(
        name="final",
        columns=("metric", "value"),
        rows=tuple((k, v) for k, v in final.items() if isinstance(v, (int, float))),
        title=f"{exp}: final metrics",
    )
    (path / "tables" / "final.json").write_text(table.to_json(), encoding="utf-8")


def _write_meta(rnd: random.Random, path: Path, is_big: bool) -> None:
    """meta.json: tags, a note, archived (random draws in this order)."""
    write_json(
        path / "meta.json",
        {
            "tags": sorted(rnd.sample(TAGS, rnd.randrange(1, 3))) + (["big"] if is_big else []),
            "note": rnd.choice(("", "", "re-run after the tokenizer fix", "best so far", "diverged at epoch 2")),
            "archived": rnd.random() < 0.1 and not is_big,
        },
    )


def _check_big_events(big_paths: list) -> None:
    """The big files' format is the engine's: every sampled line reads back as an event."""
    for p in big_paths:
        with open(Path(p) / "events.jsonl", "rb") as fh:
            for raw in [fh.readline() for _ in range(5)] + fh.read(1 << 20).splitlines()[1:200]:
                if raw.strip():
                    from_json(raw.decode())


def build(root: Path, runs: int = 1000, big: int = 3, big_lines: int = 1_000_000, seed: int = 0) -> dict:
    """Write ``runs`` run directories under ``root`` (``big`` of them, the newest, with ``big_lines`` events)."""
    t_start = time.perf_counter()
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = list(EXPERIMENTS)
    statuses = [s for s, w in STATUS_MIX.items() for _ in range(w)]
    base = time.mktime((2026, 6, 1, 8, 0, 0, 0, 0, -1))
    big_paths, total_bytes = [], 0
    for i in range(runs):
        t = base + i * 3600 * 4 + rnd.randrange(3600)
        exp = names[i % len(names)] if i < runs - big else "pretrain"
        task, model, head = EXPERIMENTS[exp]
        run_id = (
            time.strftime("%Y%m%d-%H%M%S", time.localtime(t))
            + f"-{rnd.randrange(10**6):06d}-{rnd.randrange(16**4):04x}"
        )
        path = root / exp / run_id
        (path / "tables").mkdir(parents=True)
        is_big = i >= runs - big
        status = "finished" if is_big else rnd.choice(statuses)
        lr = rnd.choice((1e-5, 3e-5, 5e-5, 1e-4, 3e-4, 1e-3))
        steps = big_lines if is_big else rnd.choice((60, 120, 300, 600))
        write_json(path / "config.json", _config(rnd, i, exp, task, model, lr))
        st = {
            "status": status,
            "reason": {
                "failed": "CUDA out of memory; lower batch_size",
                "cancelled": "cancelled by request; resume to continue from the checkpoint",
                "blocked": "dependency demo-pretrain has no finished run",
            }.get(status, ""),
            "pid": 10000 + i,
            "host": "gpu-box",
        }
        write_json(path / "status.json", st)
        value = head[1] * (0.8 + 0.4 * rnd.random())
        value = min(value, 0.99) if head[0] == "accuracy" else value
        if status == "finished":
            _write_results(path, exp, task, head[0], value)
        if rnd.random() < 0.4 or is_big:
            _write_meta(rnd, path, is_big)
        if is_big:
            total_bytes += write_big_events(path / "events.jsonl", big_lines, t)
            big_paths.append(str(path))
        else:
            text = small_events(run_id, exp, task, status, steps, t, (head[0], value))
            (path / "events.jsonl").write_text(text, encoding="utf-8")
            total_bytes += len(text)
    _check_big_events(big_paths)
    elapsed = time.perf_counter() - t_start
    log(
        f"built {runs} runs ({big} with {big_lines:,} event lines) under {root} in {elapsed:.0f} s, {total_bytes / 2**20:,.0f} MiB of events"
    )
    info = {
        "runs": runs,
        "big": big,
        "big_lines": big_lines,
        "big_runs": big_paths,
        "events_mib": total_bytes / 2**20,
        "build_s": elapsed,
    }
    (root / ".store-scale.json").write_text(json.dumps(info, indent=1))
    return info


# -- check: the generator writes what the engine reads ----------------------------------------------

FULL_SIZE = {"runs": 1000, "big": 3, "big_lines": 1_000_000}  # build and all: the store the measurements need
CHECK_SIZE = {"runs": 30, "big": 1, "big_lines": 3000}  # check: seconds to build, yet every kind of run and a big one


def full_read_last_step(run: Run) -> tuple[int, int] | None:
    """(step, total_steps) of the run's last StepLogged from a read of every event: what ``last_step`` must match."""
    steps = [e for e in run.events() if isinstance(e, StepLogged)]
    return (steps[-1].step, steps[-1].total_steps) if steps else None


def check(root: Path, runs: int, big: int, big_lines: int) -> list[str]:
    """Build a store under ``root`` and read it back with the engine; what disagrees, one sentence each.

    The measurements mean something only on runs the engine reads as it reads real ones: the store
    lists every run without problems, with finished runs among several tasks, and a big run's
    ``events.jsonl`` parses back event by event (evaluations included) to the step that the
    listing's tail read reports.
    """
    info = build(root, runs=runs, big=big, big_lines=big_lines)
    failures = []
    rows = list_rows(RunStore(root), archived=None)
    if len(rows) != runs:
        failures.append(f"list_rows found {len(rows)} runs under {root}, the generator wrote {runs}")
    for r in rows:
        if r.problems:
            failures.append(f"{r.key} has problems: {r.problems}")
    tasks = {r.task for r in rows}
    if not any(r.status == "finished" for r in rows):
        failures.append(f"no finished run among the statuses {sorted({r.status for r in rows})}")
    if len(tasks) < 3:
        failures.append(f"runs of {len(tasks)} task(s) {sorted(tasks)}, expected at least 3")
    for path in info["big_runs"]:
        run = Run(Path(path))
        events = run.events()
        if len(events) < big_lines - 10:
            failures.append(f"{path}: {len(events):,} events read back, {big_lines:,} lines written")
        if not any(isinstance(e, EvalFinished) for e in events):
            failures.append(f"{path}: no EvalFinished among its events")
        tail, full = last_step(run), full_read_last_step(run)
        if tail != full:
            failures.append(f"{path}: last_step (from the tail) says {tail}, a full read says {full}")
    return failures


# -- measurements -------------------------------------------------------------------------------


def manifest_for(root: Path, work: Path) -> Path:
    exps = [{"name": name, "task": "inspect", "model": "bert-tiny"} for name in EXPERIMENTS]
    return common.write_manifest(work / "experiments.toml", root, exps)


def measure_runs_cli(manifest: Path, reps: int = 5) -> dict:
    cmd = lmconsole_cmd() + ["-m", str(manifest), "runs"]
    env = common.bench_env(manifest.parent / "cache")
    times, lines = [], 0
    for i in range(reps + 1):  # the first one warms the page cache and is not counted
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(manifest.parent))
        dt = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {out.stderr[-500:]}")
        lines = len(out.stdout.splitlines())
        if i:
            times.append(dt)
    help_t = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(lmconsole_cmd() + ["--help"], env=env, capture_output=True)
        help_t.append(time.perf_counter() - t0)
    return {
        "command": shlex.join(cmd),
        "times_s": times,
        "median_s": statistics.median(times),
        "lines": lines,
        "help_median_s": statistics.median(help_t),
    }


def measure_export_report(manifest: Path, reps: int = 2) -> dict:
    """``lmconsole export --all`` (all four formats) and ``lmconsole report`` (md, LaTeX, HTML) on the store:
    wall time of each fresh process, ``reps`` times (each export makes a new folder; the report is rewritten)."""
    env = common.bench_env(manifest.parent / "cache")
    out: dict = {}
    for key, args in (
        ("export_all", ["export", "--all", "--out", str(manifest.parent / "exports")]),
        ("report", ["report", "--out", str(manifest.parent / "report")]),
    ):
        cmd = lmconsole_cmd() + ["-m", str(manifest), *args]
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(manifest.parent))
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"{shlex.join(cmd)} failed: {proc.stderr[-500:]}")
        files = sum(1 for p in Path(args[-1]).rglob("*") if p.is_file())
        out[key] = {"command": shlex.join(cmd), "times_s": times, "median_s": statistics.median(times), "files": files}
    return out


class Tmux:
    """The console in a detached tmux session of 80x24 on a private server (no user configuration)."""

    def __init__(self, manifest: Path, env: dict):
        self.name = f"lmc-store-{random.randrange(1 << 30)}"
        script = manifest.parent / "launch.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.isidentifier())
        script.write_text(
            f"cd {shlex.quote(str(manifest.parent))}\n{exports}"
            f"exec {shlex.join(lmconsole_cmd())} --manifest {shlex.quote(str(manifest))}\n"
        )
        self._pid: int | None = None
        self.key_cpu_ms = []
        self.t_start = time.perf_counter()
        self._tmux(
            "new-session", "-d", "-s", self.name, "-x", "80", "-y", "24", f"sh {shlex.quote(str(script))}", check=True
        )

    def _tmux(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.name, "-f", "/dev/null", *args], capture_output=True, text=True, check=check
        )

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", self.name).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys, check=True)

    def wait(self, pred, timeout: float = 60) -> float:
        t0 = time.perf_counter()
        while True:
            text = self.screen()
            if pred(text):
                return time.perf_counter()
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"waited {timeout}s; screen:\n{text}")
            time.sleep(0.005)

    def timed_key(self, key: str, timeout: float = 10) -> float:
        """ms from sending ``key`` until the screen (with colours: the cursor row) differs; the console's
        UI-thread CPU time over the same interval goes to ``self.key_cpu_ms``."""
        before = self.screen(escapes=True)
        cpu0 = self.ui_cpu_ns()
        t0 = time.perf_counter()
        self.keys(key)
        while True:
            if self.screen(escapes=True) != before:
                dt = (time.perf_counter() - t0) * 1000
                break
            if time.perf_counter() - t0 > timeout:
                dt = timeout * 1000
                break
            time.sleep(0.002)
        cpu1 = self.ui_cpu_ns()
        if cpu0 is not None and cpu1 is not None:
            self.key_cpu_ms.append((cpu1 - cpu0) / 1e6)
        return dt

    key_cpu_ms: list

    def ui_cpu_ns(self) -> int | None:
        """Nanoseconds on a CPU of the console's main thread (``/proc/<pid>/task/<pid>/schedstat``)."""
        try:
            if self._pid is None:
                self._pid = int(self._tmux("display-message", "-p", "-t", self.name, "#{pane_pid}").stdout.strip())
            return int(Path(f"/proc/{self._pid}/task/{self._pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def ui_cpu_s(self) -> float | None:
        """CPU seconds (user + system) of the console's main thread (the UI: key handling and drawing)."""
        try:
            pid = int(self._tmux("display-message", "-p", "-t", self.name, "#{pane_pid}").stdout.strip())
            fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self._tmux("kill-server")


FILTER_WORDS = ("sst2", "tag:keep", "lr<1e-4", "failed")


def measure_console(manifest: Path, root: Path, presses: int = 40, seed: int = 0) -> dict:
    from engine.store.listing import list_rows, parse_filter, sort_rows
    from engine.store.runs import RunStore

    rows = sort_rows(list_rows(RunStore(root)), "started", descending=True)  # the Runs tab's rows and order

    def visible(text: str) -> list:
        terms = parse_filter(text)
        return [r.key for r in rows if all(t.matches(r) for t in terms)][:12]

    filt_text = [""]
    env = common.bench_env(manifest.parent / "cache")
    tm = Tmux(manifest, env)
    rng = random.Random(seed)
    try:
        first = tm.wait(lambda s: "lmconsole" in s and "Experiments" in s) - tm.t_start
        # the title bar counts the runs once the runs directory has been read
        listed = tm.wait(lambda s: re.search(r"\b\d+ runs\b", s) is not None and " 0 runs" not in s) - tm.t_start
        tm.keys("3")
        tm.wait(lambda s: "experiment" in s and "started" in s and "status" in s, 20)
        time.sleep(1.0)
        cpu0 = tm.ui_cpu_s()
        scroll = []
        for i in range(presses):
            scroll.append(tm.timed_key("Down" if i % 8 < 6 else "Up"))
            time.sleep(rng.uniform(0.1, 0.3))
        if len(rows) >= 200:  # room below for 6 pages at 80x24 (a page at the end changes nothing)
            for _ in range(3):
                tm.keys("PageDown")
                time.sleep(0.2)
            scroll += [tm.timed_key("PageDown") for _ in range(3)]
        cpu1 = tm.ui_cpu_s()
        scroll_cpu, tm.key_cpu_ms = tm.key_cpu_ms, []
        tm.keys("/")
        time.sleep(0.5)
        cpu2 = tm.ui_cpu_s()
        filt, untimed = [], 0
        for word in FILTER_WORDS:
            typed = [word[:i] for i in range(1, len(word) + 1)]
            for text, key in [(t, t[-1]) for t in typed] + [(t, "BSpace") for t in reversed([""] + typed[:-1])]:
                # a key whose new filter shows the same rows changes nothing on screen: sent, not timed
                if visible(text) != visible(filt_text[0]):
                    filt.append(tm.timed_key(key))
                else:
                    tm.keys(key)
                    untimed += 1
                filt_text[0] = text
                time.sleep(rng.uniform(0.1, 0.25))
        time.sleep(0.3)
        cpu3 = tm.ui_cpu_s()
        filter_cpu = tm.key_cpu_ms
        tm.keys("Escape")
        shown = tm.screen()
    finally:
        tm.close()

    def stats(xs):
        return {"n": len(xs), "median_ms": statistics.median(xs), "p95_ms": percentile(xs, 95), "max_ms": max(xs)}

    n_filter = len(filt) + untimed
    # UI-thread CPU per key (with the 1 Hz timers and a runs re-read every 3 s in the same window): less
    # sensitive to other processes' load than wall times
    cpu = (
        {
            "scroll_ms_per_key": (cpu1 - cpu0) * 1000 / (len(scroll) + (3 if len(rows) >= 200 else 0)),
            "filter_ms_per_key": (cpu3 - cpu2) * 1000 / n_filter,
        }
        if None not in (cpu0, cpu1, cpu2, cpu3)
        else {}
    )
    if scroll_cpu and filter_cpu:  # per timed key: UI-thread CPU until the screen changed
        cpu.update(
            scroll_key_cpu=stats(scroll_cpu),
            filter_key_cpu=stats(filter_cpu),
            all_key_cpu=stats(scroll_cpu + filter_cpu),
        )
    return {
        "first_frame_s": first,
        "runs_listed_s": listed,
        "scroll": stats(scroll),
        "filter": stats(filt),
        "ui_cpu": cpu,
        "all_keys": stats(scroll + filt),
        "filter_keys_untimed": untimed,
        "screen_at_end": shown,
    }


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def measure_follow(big_run: Path, new_lines: int = 1000) -> dict:
    """``RunFeed.poll`` on a 1M-line run, then after ``new_lines`` appended lines: bytes read each time."""
    from engine.store.follow import RunFeed
    from engine.store.runs import OwnerLock, Run
    from engine.store.runs import atomic_write_json as write

    run = Run(big_run)
    events = run.events_path
    size0 = events.stat().st_size
    status_before = (run.path / "status.json").read_text()
    lock = OwnerLock(run.path / "owner.lock")
    lock.acquire()  # the run looks live (running, owner alive), as a job writing its events
    try:
        write(run.path / "status.json", {"status": "running", "reason": "", "pid": os.getpid(), "host": "bench"})
        feed = RunFeed(run=run)
        r0, t0 = _rchar(), time.perf_counter()
        state = feed.poll()
        first = {
            "s": time.perf_counter() - t0,
            "bytes_read": _rchar() - r0,
            "file_bytes": size0,
            "steps_kept": len(state.steps),
            "last_step": state.last_step.step if state.last_step else None,
        }
        first_steps = state.steps
        polls = []
        step = state.last_step.step if state.last_step else 0
        for rep in range(3):
            lines = []
            for k in range(new_lines):
                step += 1
                lines.append(
                    to_json(
                        StepLogged(
                            step=step,
                            epoch=1.0,
                            loss=2.0,
                            learning_rate=1e-5,
                            total_steps=step + 10,
                            grad_norm=1.0,
                            tokens_per_s=5e4,
                            eta_s=1.0,
                            memory_mb=2e4,
                        )
                    )
                )
            blob = ("\n".join(lines) + "\n").encode()
            with open(events, "ab") as fh:
                fh.write(blob)
            r0, t0 = _rchar(), time.perf_counter()
            state = feed.poll()
            polls.append(
                {
                    "s": time.perf_counter() - t0,
                    "bytes_read": _rchar() - r0,
                    "bytes_new": len(blob),
                    "last_step": state.last_step.step,
                    "expected_last_step": step,
                }
            )
        # an idle poll: nothing new
        r0, t0 = _rchar(), time.perf_counter()
        feed.poll()
        idle = {"s": time.perf_counter() - t0, "bytes_read": _rchar() - r0}
    finally:
        with open(events, "rb+") as fh:
            fh.truncate(size0)  # the store as it was
        atomic_write_text(run.path / "status.json", status_before)
        lock.release()
    ok = all(p["last_step"] == p["expected_last_step"] and p["bytes_read"] < 4 * p["bytes_new"] + 65536 for p in polls)
    return {
        "first_poll": first,
        "polls": polls,
        "idle_poll": idle,
        "new_lines": new_lines,
        "reads_only_new": ok,
        "_steps": first_steps,
    }


def measure_plot(big_run: Path, reps: int = 5, steps: list | None = None) -> dict:
    """One refresh of the run view's loss plot of a 1M-step run, at its 80x24 size, in a headless app.

    ``steps``: the MetricStore's steps of that run when the caller has read them already
    (``RunFeed.poll`` of a 1M-line file takes a while)."""
    import asyncio

    from textual.app import App

    from engine.store.follow import RunFeed
    from engine.store.runs import Run
    from tui.data import step_series
    from tui.widgets.plots import CurvePlot, Series

    if steps is None:
        steps = RunFeed(run=Run(big_run)).poll().steps
    result: dict = {}

    class PlotApp(App):
        def compose(self):
            yield CurvePlot("loss", id="p")

    async def go():
        app = PlotApp()
        async with app.run_test(size=(80, 10)) as pilot:  # the run view's loss plot at 80x24
            await pilot.pause()
            plot = app.query_one(CurvePlot)
            times, npts = [], 0
            for i in range(reps):
                t0 = time.perf_counter()
                xs, ys = step_series(steps, "loss")  # as RunScreen._draw_curves
                npts = len(xs)
                plot.show([Series("loss", xs, ys)], key=("rep", i))
                plot.render()  # what a refresh draws (plotext build at the widget's size)
                times.append((time.perf_counter() - t0) * 1000)
                await pilot.pause()
            kept = getattr(plot, "series", None)  # a CurvePlot that thins what it keeps (min/max buckets)
            result.update(
                refresh_ms=times,
                median_ms=statistics.median(times),
                series_points=npts,
                widget_points=sum(len(x.xs) for x in kept) if kept else npts,
                width=plot.size.width,
            )

    asyncio.run(go())
    last = steps[-1].step if steps else 0
    result.update(
        run_steps=last,
        steps_in_memory=len(steps),
        downsampled=bool(result.get("series_points")) and result["series_points"] * 10 <= last,
    )
    return result


def measure(root: Path, work: Path | None = None, presses: int = 40) -> dict:
    info = json.loads((root / ".store-scale.json").read_text())
    work = work or Path(tempfile.mkdtemp(prefix="lmconsole-store-work-"))
    manifest = manifest_for(root, work)
    out: dict = {"store": info, "load_avg_at_start": list(os.getloadavg()), "cores": os.cpu_count()}
    log("lmconsole runs")
    out["runs_cli"] = measure_runs_cli(manifest)
    log(f"  median {out['runs_cli']['median_s']:.2f} s")
    log("lmconsole export --all, lmconsole report")
    out["export_report"] = measure_export_report(manifest)
    log(
        "  export --all "
        + ", ".join(f"{t:.1f}" for t in out["export_report"]["export_all"]["times_s"])
        + " s; report "
        + ", ".join(f"{t:.1f}" for t in out["export_report"]["report"]["times_s"])
        + " s"
    )
    if shutil.which("tmux"):
        log("console in tmux")
        out["console"] = measure_console(manifest, root, presses)
        c = out["console"]
        log(
            f"  first frame {c['first_frame_s']:.2f} s, runs listed {c['runs_listed_s']:.2f} s, keys p95 {c['all_keys']['p95_ms']:.0f} ms"
        )
    else:
        log("console: skipped, tmux is not installed")
    big = Path(info["big_runs"][0]) if info["big_runs"] else None
    if big is not None:
        log("follow")
        out["follow"] = measure_follow(big)
        log(
            f"  first poll {out['follow']['first_poll']['s']:.1f} s; new polls read {[p['bytes_read'] for p in out['follow']['polls']]} bytes"
        )
        log("plot")
        out["plot"] = measure_plot(big, steps=out["follow"].pop("_steps"))
        log(f"  refresh {out['plot']['median_ms']:.0f} ms, {out['plot']['series_points']} points")
    out["load_avg_at_end"] = list(os.getloadavg())
    return out


def summary_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(figure, goal, measured, status) rows for BENCHMARKS.md's summary."""
    s = r["store"]
    rows = []
    c = r["runs_cli"]
    rows.append(
        (
            f"`lmconsole runs`, {s['runs']:,} runs ({s['big']} with {s['big_lines']:,}-line events files)",
            "<= 1 s",
            f"{c['median_s']:.2f} s (median of {len(c['times_s'])}; `lmconsole --help` {c['help_median_s']:.2f} s)",
            "met" if c["median_s"] <= GOALS["runs_s"] else "NOT met",
        )
    )
    if "console" in r:
        k = r["console"]
        rows.append(
            (
                "console first frame on that store, tmux 80x24",
                "<= 2 s",
                f"{k['first_frame_s']:.2f} s (runs listed at {k['runs_listed_s']:.2f} s)",
                "met" if k["first_frame_s"] <= GOALS["first_frame_s"] else "NOT met",
            )
        )
        a = k["all_keys"]
        rows.append(
            (
                f"runs list: keypress to screen (scroll, filter), {s['runs']:,} runs",
                "p95 <= 150 ms",
                f"p95 {a['p95_ms']:.0f} ms (scroll p95 {k['scroll']['p95_ms']:.0f}, filter p95 {k['filter']['p95_ms']:.0f}; {a['n']} presses)"
                + (
                    f"; the console's own CPU per key p95 {k['ui_cpu']['all_key_cpu']['p95_ms']:.0f} ms"
                    if k.get("ui_cpu", {}).get("all_key_cpu")
                    else ""
                ),
                "met" if a["p95_ms"] <= GOALS["key_p95_ms"] else "NOT met",
            )
        )
    if "follow" in r:
        f = r["follow"]
        p = f["polls"][-1]
        rows.append(
            (
                f"following a growing {s['big_lines']:,}-line events file: bytes read per poll ({f['new_lines']:,} new lines)",
                "only what is new",
                f"{p['bytes_read']:,} B read for {p['bytes_new']:,} B new (file {f['first_poll']['file_bytes'] / 2**20:,.0f} MiB)",
                "met" if f["reads_only_new"] else "NOT met",
            )
        )
    if "plot" in r:
        p = r["plot"]
        rows.append(
            (
                f"run view plot of a {p['run_steps']:,}-step run",
                "downsampled",
                f"{p['series_points']:,} points to the plot ({p['steps_in_memory']:,} steps kept), refresh {p['median_ms']:.0f} ms",
                "met" if p["downsampled"] else "NOT met",
            )
        )
    return rows


def render_section(add, r: dict) -> None:
    """The "Scale of the run store" section of BENCHMARKS.md."""
    s = r["store"]
    add("## Scale of the run store")
    add("")
    add(
        f"`python bench/store_scale.py all` (`bench/run.py --only store`): a generated store of {s['runs']:,} run directories "
        f"({len(EXPERIMENTS)} experiments, pretrain/classify/qa, finished/failed/cancelled/interrupted/queued/blocked runs, tags, "
        f"notes and archived runs in meta.json, tables/, results.json); {s['big']} of them with {s['big_lines']:,}-line "
        f"events.jsonl ({s['events_mib']:,.0f} MiB of events in all; built in {s['build_s']:.0f} s). Load average "
        f"{r['load_avg_at_start'][0]:.1f} at the start, {r['load_avg_at_end'][0]:.1f} at the end ({r['cores']} cores): "
        "the machine was shared, absolute times move with its load. Warm page cache."
    )
    add("")
    add("| figure | goal | measured |")
    add("|---|---|---|")
    c = r["runs_cli"]
    add(
        f"| `lmconsole runs` ({c['lines']:,} lines out) | <= 1 s | median {c['median_s']:.2f} s of "
        f"{len(c['times_s'])} ({', '.join(f'{t:.2f}' for t in c['times_s'])}); `lmconsole --help` {c['help_median_s']:.2f} s |"
    )
    for key, label in (
        ("export_all", "`lmconsole export --all` (csv, md, LaTeX, JSON)"),
        ("report", "`lmconsole report`"),
    ):
        if key in r.get("export_report", {}):
            x = r["export_report"][key]
            add(
                f"| {label} ({x['files']:,} files written) | - | {', '.join(f'{t:.1f}' for t in x['times_s'])} s "
                f"({len(x['times_s'])} runs) |"
            )
    if "console" in r:
        k = r["console"]
        add(
            f"| console: first frame (title and tabs on screen, from starting tmux) | <= 2 s | {k['first_frame_s']:.2f} s |"
        )
        add(f"| console: runs read and listed (title shows the count) | - | {k['runs_listed_s']:.2f} s |")
        for name, label in (
            ("scroll", "Runs tab: Down/Up/PageDown, key to changed screen"),
            ("filter", "Runs tab: typing a filter (`sst2`, `tag:keep`, `lr<1e-4`, `failed`) and deleting it"),
        ):
            x = k[name]
            add(
                f"| {label} | p95 <= 150 ms | p95 {x['p95_ms']:.0f} ms, median {x['median_ms']:.0f}, max {x['max_ms']:.0f} ({x['n']} presses) |"
            )
        cpu = k.get("ui_cpu", {})
        for name, label in (("scroll_key_cpu", "scroll"), ("filter_key_cpu", "filter")):
            if name in cpu:
                x = cpu[name]
                add(
                    f"| Runs tab {label} keys: the console's UI-thread CPU from key to changed screen (load-independent part) | - | "
                    f"p95 {x['p95_ms']:.0f} ms, median {x['median_ms']:.0f}, max {x['max_ms']:.0f} |"
                )
        if k.get("filter_keys_untimed"):
            add(
                f"| filter keys that change nothing on screen (same rows shown): sent, not timed | - | {k['filter_keys_untimed']} |"
            )
    if "follow" in r:
        f = r["follow"]
        fp = f["first_poll"]
        add(
            f"| following: first poll of the {fp['file_bytes'] / 2**20:,.0f} MiB file (the run view opening it) | - | "
            f"{fp['s']:.1f} s, {fp['bytes_read'] / 2**20:,.0f} MiB read, {fp['steps_kept']:,} steps kept |"
        )
        for i, p in enumerate(f["polls"]):
            add(
                f"| following: poll after {f['new_lines']:,} new lines ({i + 1}) | reads only what is new | "
                f"{p['bytes_read']:,} B read for {p['bytes_new']:,} B new, {p['s'] * 1000:.0f} ms; last step {p['last_step']:,} "
                f"(expected {p['expected_last_step']:,}) |"
            )
        add(
            f"| following: poll with nothing new | - | {f['idle_poll']['bytes_read']:,} B read, {f['idle_poll']['s'] * 1000:.1f} ms |"
        )
    if "plot" in r:
        p = r["plot"]
        add(
            f"| run view loss plot of a {p['run_steps']:,}-step run: points to the plot | downsampled | {p['series_points']:,} "
            f"(of {p['steps_in_memory']:,} steps kept by the MetricStore; {p['widget_points']:,} kept by the widget, drawn "
            f"at most 2 per column of its {p['width']} where it thins to the width); refresh {p['median_ms']:.0f} ms median "
            f"({', '.join(f'{t:.0f}' for t in p['refresh_ms'])}) |"
        )
    add("")
    add(
        "Keys are timed from just before `tmux send-keys` until `capture-pane -e` (with colours: the cursor row) differs "
        "from the screen before, polled every 2 ms; a filter key whose new filter shows the same top rows is sent untimed "
        "(the engine's filter computes which). Bytes read = `rchar` of `/proc/self/io` around `RunFeed.poll()` (the run "
        "view's reader) with the run live (status running, owner lock held). Plot refresh = `step_series` + "
        "`CurvePlot.show` + its `render()` (plotext build) in a headless 80x10 Textual app."
    )
    add("")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "what",
        choices=("build", "measure", "all", "check"),
        help="check: build a small store in a temporary folder (30 runs, 1 with 3,000 event lines) and read it "
        "back with the engine; exit status 1 if anything disagrees",
    )
    p.add_argument("--root", help="the store (build: created; measure: read); all, check: a temporary folder")
    p.add_argument("--runs", type=int, help="(default 1000; check: 30)")
    p.add_argument("--big", type=int, help="runs with --big-lines events (default 3; check: 1)")
    p.add_argument("--big-lines", type=int, help="(default 1000000; check: 3000)")
    p.add_argument("--presses", type=int, default=40)
    p.add_argument("--json", help="write the measurements here")
    a = p.parse_args(argv)
    if a.what in ("build", "measure") and not a.root:
        p.error("--root is required")
    if a.what == "check" and a.root:
        p.error("check builds its store in a temporary folder: no --root")
    for k, v in (CHECK_SIZE if a.what == "check" else FULL_SIZE).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    tmp = None
    root = Path(a.root) if a.root else None
    if a.what in ("all", "check") and root is None:
        tmp = Path(tempfile.mkdtemp(prefix="lmconsole-store-"))
        root = tmp / "runs"
    try:
        if a.what == "check":
            failures = check(root, a.runs, a.big, a.big_lines)
            for f in failures:
                print(f"FAILED: {f}")
            if not failures:
                print(f"ok: {a.runs} generated runs ({a.big} with {a.big_lines:,} event lines) read back by the engine")
            return 1 if failures else 0
        if a.what in ("build", "all"):
            if root.exists() and any(root.iterdir()):
                p.error(f"{root} is not empty: build writes a new store")
            build(root, a.runs, a.big, a.big_lines)
        if a.what in ("measure", "all"):
            res = measure(root, presses=a.presses)
            for row in summary_rows(res):
                print(" | ".join(row))
            if a.json:
                Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
