"""Console overhead: the same training job in the console (plots live) and headless, and UI latency.

    python bench/console_overhead.py --json /tmp/console.json            # ~5 minutes on 2 cores
    python bench/console_overhead.py --reps 2 --presses 20 --json ...    # shorter

Needs tmux. The console runs in a real terminal: a detached tmux session of 80x24, driven
with ``tmux send-keys`` and read with ``tmux capture-pane``, exactly as a user over SSH
would see it. The job is ``bench-console``: demo-pretrain (bert-tiny, MLM + NSP on the
embedded corpus, its tokenizer, batch 32, seq 128) cut to ``--steps`` optimizer steps.

1. Throughput. Interleaved repetitions (H C, C H, ...) of
   - headless: ``lmconsole -m M run bench-console -q`` (a fresh process);
   - console: ``lmconsole -m M`` in tmux; keys ``r`` (run), ``2`` (Jobs tab), ``Enter`` (the
     job's run view: loss, learning-rate and perplexity plots redrawn live), then nothing
     until the run finishes (a user watching the plots).
   Real tokens/s over steps W+1..N from each run's StepLogged events (as
   ``bench/engine_pretrain.py``); the run view must be on screen before step W. Also the
   CPU time of the console's main thread (Textual's event loop: rendering, timers; the job
   trains in its own thread, and the run view's short poll workers are not counted) from
   the run view's opening to the end of the run, from /proc (Linux).
2. Latency. The console with the same job running ``--latency-steps`` steps, its run view
   open: ``--presses`` key presses alternating ``4`` (Log tab) and ``1`` (Curves tab), a
   random 100-300 ms apart; each one is timed from just before ``tmux send-keys`` until
   ``capture-pane`` shows the new tab's content ("preflight ok" of the log, "training loss"
   of the curves) below the tab bar. Then the job is cancelled and the same presses are
   timed with the console idle, for reference. The poll (one ``capture-pane`` per loop,
   ~2-5 ms, then 2 ms of sleep) bounds the resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (puts the repository on sys.path)
from common import lmconsole_cmd, percentile  # noqa: E402
from engine_pretrain import summarise  # noqa: E402

NAME = "bench-console"
MARKERS = {"4": "preflight ok", "1": "training loss"}  # key -> text its tab shows


def log(msg: str) -> None:
    print(f"[console {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Work:
    def __init__(self, root: Path, steps: int, warmup: int):
        self.root = root
        self.cache = root / "cache"
        self.env = common.bench_env(self.cache)
        self.warmup = warmup
        self.runs = root / "runs" / NAME
        self.manifest = self.with_steps(steps)

    def with_steps(self, steps: int) -> Path:
        """A manifest whose only experiment is demo-pretrain cut to ``steps`` optimizer steps."""
        exp = common.demo_experiment("demo-pretrain")
        exp.pop("description", None)
        exp.update(
            name=NAME, epochs=100, max_steps=steps, logging_steps=self.warmup, max_eval_samples=8, max_seq_length=128
        )
        return common.write_manifest(self.root / f"experiments-{steps}.toml", self.root / "runs", [exp])

    def new_run(self, before: set) -> Path:
        new = sorted(set(self.runs.glob("*")) - before) if self.runs.exists() else []
        if len(new) != 1:
            raise RuntimeError(f"expected one new run directory, found {new}")
        return new[0]

    def events(self, run: Path) -> list:
        from engine.events import from_dict
        from engine.store.runs import read_events

        return [from_dict(d) for d in read_events(run / "events.jsonl")[0]]

    def existing(self) -> set:
        return set(self.runs.glob("*")) if self.runs.exists() else set()


class Tmux:
    """One detached tmux session running the console at 80x24, on a private tmux server
    (no user configuration); the console gets exactly the headless side's environment."""

    def __init__(self, work: Work, manifest: Path):
        self.name = f"lmc-bench-{random.randrange(1 << 30)}"
        self.work = work
        script = work.root / "launch.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in work.env.items() if k.isidentifier())
        cmd = " ".join(shlex.quote(c) for c in lmconsole_cmd())
        self.pid_file = work.root / f"{self.name}.pid"
        script.write_text(
            f"cd {shlex.quote(str(work.root))}\n{exports}echo $$ > {shlex.quote(str(self.pid_file))}\n"
            f"exec {cmd} --manifest {shlex.quote(str(manifest))}\n"
        )
        self._tmux(
            "new-session", "-d", "-s", self.name, "-x", "80", "-y", "24", f"sh {shlex.quote(str(script))}", check=True
        )

    def _tmux(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.name, "-f", "/dev/null", *args], capture_output=True, text=True, check=check
        )

    def screen(self) -> list[str]:
        return self._tmux("capture-pane", "-p", "-t", self.name).stdout.splitlines()

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys, check=True)

    def wait_for(self, text: str, timeout: float = 60, below: int = 0) -> float:
        t0 = time.perf_counter()
        while True:
            if any(text in line for line in self.screen()[below:]):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"waited {timeout}s for {text!r}; screen:\n" + "\n".join(self.screen()))
            time.sleep(0.01)

    def ui_cpu_s(self) -> float | None:
        """CPU seconds (user + system) of the console's main thread: the UI (jobs run in other threads)."""
        try:
            pid = int(self.pid_file.read_text())
            fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", self.name).returncode == 0

    def close(self) -> None:
        self._tmux("kill-server")


def open_run_view(tm: Tmux) -> float:
    """From the start screen: run the job, open its run view; returns the wall clock then."""
    tm.wait_for(NAME, 30)
    tm.keys("r")
    tm.wait_for("running", 30)
    tm.keys("2")
    tm.wait_for(" progress ", 5)  # the Jobs tab's header
    time.sleep(0.3)
    tm.keys("Enter")
    tm.wait_for("1 Curves", 10)
    return time.time()


def wait_status(run_dir: Path, want: tuple, timeout: float) -> str:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            status = json.loads((run_dir / "status.json").read_text()).get("status")
        except (OSError, ValueError):
            status = None
        if status in want:
            return status
        time.sleep(0.2)
    raise RuntimeError(f"{run_dir} did not reach {want} in {timeout}s")


def headless_rep(work: Work) -> dict:
    before = work.existing()
    t0 = time.perf_counter()
    proc = subprocess.run(
        lmconsole_cmd() + ["-m", str(work.manifest), "run", NAME, "-q"],
        env=work.env,
        capture_output=True,
        text=True,
        cwd=str(work.root),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"headless run failed: {proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    out = summarise(work.events(work.new_run(before)), work.warmup)
    out.update(side="headless", process_s=time.perf_counter() - t0)
    return out


def console_rep(work: Work) -> dict:
    before = work.existing()
    t0 = time.perf_counter()
    tm = Tmux(work, work.manifest)
    try:
        view_at = open_run_view(tm)
        run = work.new_run(before)
        cpu0, t_cpu0 = tm.ui_cpu_s(), time.time()
        wait_status(run, ("finished", "failed", "cancelled"), 900)
        cpu1, t_cpu1 = tm.ui_cpu_s(), time.time()
        tm.wait_for("finished", 10, below=0)
        plots = any("training loss" in line for line in tm.screen())
        tm.keys("q")
        deadline = time.perf_counter() + 15
        while tm.alive() and time.perf_counter() < deadline:
            time.sleep(0.1)
    finally:
        tm.close()
    events = work.events(run)
    out = summarise(events, work.warmup)
    from engine.events import StepLogged

    w_time = next(e.time for e in events if isinstance(e, StepLogged) and e.step == work.warmup)
    out.update(
        side="console",
        process_s=time.perf_counter() - t0,
        plots_on_screen_at_end=plots,
        view_open_before_timed_window=view_at <= w_time,
        view_open_s_before_window=w_time - view_at,
        ui_thread_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        ui_window_s=t_cpu1 - t_cpu0,
    )
    return out


def press_times(tm: Tmux, presses: int, rng: random.Random) -> list[float]:
    """Alternate 4 / 1; each: time from send-keys to the new tab's content on screen (ms)."""
    times = []
    key = "4"
    for _ in range(presses):
        time.sleep(rng.uniform(0.1, 0.3))
        t0 = time.perf_counter()
        tm.keys(key)
        while True:
            if any(MARKERS[key] in line for line in tm.screen()[4:]):
                break
            time.sleep(0.002)  # leave the CPU to the console between polls
            if time.perf_counter() - t0 > 10:
                raise RuntimeError(f"no {MARKERS[key]!r} 10 s after key {key}")
        times.append((time.perf_counter() - t0) * 1000)
        key = "1" if key == "4" else "4"
    if key == "1":  # end on the Curves tab
        tm.keys("1")
        tm.wait_for(MARKERS["1"], 10, below=4)
    return times


def latency(work: Work, steps: int, presses: int, seed: int) -> dict:
    manifest = work.with_steps(steps)
    before = work.existing()
    rng = random.Random(seed)
    tm = Tmux(work, manifest)
    try:
        open_run_view(tm)
        run = work.new_run(before)
        from engine.events import StepLogged

        while not any(isinstance(e, StepLogged) and e.step >= work.warmup for e in work.events(run)):
            time.sleep(0.2)
        training = press_times(tm, presses, rng)
        still = json.loads((run / "status.json").read_text()).get("status")
        steps_done = max((e.step for e in work.events(run) if isinstance(e, StepLogged)), default=0)
        tm.keys("c")
        tm.wait_for("Cancel", 10)
        tm.keys("y")
        wait_status(run, ("cancelled", "finished"), 120)
        tm.wait_for("cancelled", 30)
        time.sleep(2.0)  # the job thread has ended: the console is idle
        idle = press_times(tm, presses, rng)
        tm.keys("q")
        time.sleep(1)
    finally:
        tm.close()
    if still != "running":
        raise RuntimeError(f"the job was not running during the presses (status {still}); raise --latency-steps")

    def stats(xs):
        return {
            "n": len(xs),
            "median_ms": percentile(xs, 50),
            "p95_ms": percentile(xs, 95),
            "max_ms": max(xs),
            "all_ms": [round(x, 1) for x in xs],
        }

    return {"training": stats(training), "idle": stats(idle), "steps_at_end_of_presses": steps_done}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions of each side (throughput)")
    p.add_argument("--steps", type=int, default=110, help="optimizer steps of the throughput job")
    p.add_argument("--warmup", type=int, default=10, help="steps excluded from the timed window")
    p.add_argument("--presses", type=int, default=40, help="timed key presses (each state)")
    p.add_argument("--latency-steps", type=int, default=1000, help="steps of the job that trains during the presses")
    p.add_argument("--json", required=True)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args(argv)
    if not shutil.which("tmux"):
        p.error("tmux is not installed (apt-get install -y tmux)")
    root = Path(tempfile.mkdtemp(prefix="lmconsole-console-bench-"))
    work = Work(root, a.steps, a.warmup)
    t0 = time.time()
    info = common.machine_info()
    try:
        log(f"work folder {root}; warm-up run (tokenizer and data cache)")
        headless_rep(work)
        sides = {"headless": lambda: headless_rep(work), "console": lambda: console_rep(work)}
        res = common.interleaved(sides, a.reps, progress=log)
        ratio = common.ratio_stats(
            [r["tokens_per_s"] for r in res["console"]], [r["tokens_per_s"] for r in res["headless"]]
        )
        log(f"throughput console/headless {ratio['median']:.3f} [{ratio['min']:.3f}-{ratio['max']:.3f}]")
        log(f"latency: {a.presses} presses while training, then idle")
        lat = latency(work, a.latency_steps, a.presses, seed=7)
        log(f"latency p95 training {lat['training']['p95_ms']:.0f} ms, idle {lat['idle']['p95_ms']:.0f} ms")
    finally:
        if a.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
        "command": "python bench/console_overhead.py"
        + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:])),
        "machine": info,
        "steps": a.steps,
        "warmup": a.warmup,
        "reps": a.reps,
        "headless": res["headless"],
        "console": res["console"],
        "ratio": ratio,
        "latency": lat,
        "elapsed_s": time.time() - t0,
    }
    for side in ("headless", "console"):
        for r in out[side]:
            r.pop("rss_mb_at_logs", None)
    Path(a.json).write_text(json.dumps(out, indent=1))
    print(json.dumps({"ratio": ratio, "latency_p95_ms": {k: lat[k]["p95_ms"] for k in ("training", "idle")}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
