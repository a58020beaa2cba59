"""One engine pretraining run, timed from its own StepLogged events.

    python bench/engine_pretrain.py --manifest M --experiment E --warmup-steps W --json OUT [--in-process]

By default the run goes through the real command line, ``lmconsole -m M run E -q``
in a child process (so whatever the console-script entry sets up before torch is
imported applies, as for a user), and is timed from the run's ``events.jsonl``.
``--in-process`` calls ``engine.job.runner.run_experiment`` in this process instead.
Either way it is the engine's real path: data from the cache, ``train_loop.train``
with the pretraining task's batching and forward. The experiment must set
``logging_steps = W`` and ``max_steps = N`` within the first epoch: the training
loop then logs at step W, 2W, ... and N, and each StepLogged carries the real
(non-padding) tokens/s of its window. The timed window is steps W+1..N: it starts
at the StepLogged of step W, so the warm-up steps, the evaluation before training,
and the evaluation and checkpoint after the last step are all outside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import lmconsole_cmd  # noqa: E402  (common puts the repository on sys.path)


def summarise(events: list, warmup_steps: int) -> dict:
    """Tokens/s over steps W+1..N from a run's events (each with its ``time``).

    Training time only: a window that holds an epoch end (its evaluation and
    checkpoint, which a Trainer with ``save_strategy="no"`` does not do) is timed from
    the last ``EvalFinished``/``CheckpointSaved`` inside it, so two-epoch runs that
    time the second epoch compare training with training.
    """
    from engine.events import CheckpointSaved, EvalFinished, StepLogged

    steps = [e for e in events if isinstance(e, StepLogged)]
    pauses = [e.time for e in events if isinstance(e, (EvalFinished, CheckpointSaved))]
    first = next(i for i, e in enumerate(steps) if e.step == warmup_steps)
    timed = steps[first + 1 :]
    # tokens of a window = its tokens/s x its duration (the loop's clock, read just before the event's time)
    tokens = samples = span = excluded = 0.0
    prev = steps[first].time
    for e in timed:
        tokens += e.tokens_per_s * (e.time - prev)
        samples += e.samples_per_s * (e.time - prev)
        start = max([prev] + [t for t in pauses if prev < t < e.time])
        span += e.time - start
        excluded += start - prev
        prev = e.time
    n = timed[-1].step - warmup_steps
    return {
        "side": "engine",
        "tokens_per_s": tokens / span,
        "samples_per_s": samples / span,
        "timed_steps": n,
        "timed_s": span,
        "s_per_step": span / n,
        "warmup_steps": warmup_steps,
        "excluded_epoch_end_s": excluded,
        "rss_mb_at_logs": [e.memory_mb for e in steps],
        "final_loss": steps[-1].loss,
        "evals": sum(isinstance(e, EvalFinished) for e in events),
    }


def via_cli(manifest_path: str, name: str) -> list:
    from engine.events import from_dict
    from engine.manifest import load
    from engine.store.runs import read_events

    runs = Path(load(manifest_path).runs_dir) / name
    before = set(runs.glob("*")) if runs.exists() else set()
    proc = subprocess.run(lmconsole_cmd() + ["-m", manifest_path, "run", name, "-q"], capture_output=True, text=True)
    new = sorted(set(runs.glob("*")) - before)
    if proc.returncode != 0 or len(new) != 1:
        raise SystemExit(f"lmconsole run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    status = json.loads((new[0] / "status.json").read_text())
    if status.get("status") != "finished":
        raise SystemExit(f"run ended {status}")
    return [from_dict(d) for d in read_events(new[0] / "events.jsonl")[0]]


def in_process(manifest_path: str, name: str, threads: int) -> list:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from engine.events import CallbackSink
    from engine.job.runner import run_experiment
    from engine.manifest import load

    events: list = []
    run = run_experiment(load(manifest_path), name, sinks=[CallbackSink(events.append)])
    if run.status().get("status") != "finished":
        raise SystemExit(f"run ended {run.status()}")
    return events


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--warmup-steps", type=int, required=True)
    p.add_argument(
        "--in-process", action="store_true", help="run_experiment in this process instead of `lmconsole run`"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0 = the default); through the CLI this sets OMP_NUM_THREADS for the child",
    )
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)

    from engine.manifest import load

    exp = load(a.manifest).get(a.experiment)
    if exp.logging_steps != a.warmup_steps or not (exp.max_steps or exp.epochs == 2):
        raise SystemExit("the experiment must set logging_steps = --warmup-steps and max_steps (or epochs = 2)")
    t0 = time.perf_counter()
    if a.in_process:
        events = in_process(a.manifest, a.experiment, a.threads)
    else:
        if a.threads:
            os.environ["OMP_NUM_THREADS"] = str(a.threads)
        events = via_cli(a.manifest, a.experiment)
    out = summarise(events, a.warmup_steps)
    import torch

    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    out.update(
        process_s=time.perf_counter() - t0,
        mode="in-process" if a.in_process else "lmconsole run",
        threads=a.threads or None,
        device=device,
    )
    Path(a.json).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
