"""One engine pretraining run, timed from its own StepLogged events.

    python bench/engine_pretrain.py --manifest M --experiment E --warmup-steps W --json OUT

Runs ``engine.jobs.run_experiment`` (the real engine path: data from the cache,
``train_loop.train`` with the pretraining task's batching and forward). The
experiment must set ``logging_steps = W`` and ``max_steps = N`` within the first
epoch: the training loop then logs at step W, 2W, ... and N, and each
StepLogged carries the real (non-padding) tokens/s of its window. The timed
window is steps W+1..N: it starts at the StepLogged of step W, so the warm-up
steps, the evaluation before training, and the evaluation and checkpoint after
the last step are all outside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402,F401  (puts the repository on sys.path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--warmup-steps", type=int, required=True)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave the default)")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)

    t_start = time.perf_counter()
    import engine  # noqa: F401  (first, as `lmconsole` imports it: whatever the engine sets up before torch applies here too)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from engine.events import CallbackSink, EvalFinished, PhaseStarted, StepLogged
    from engine.jobs import run_experiment
    from engine.manifest import load

    manifest = load(a.manifest)
    exp = manifest.get(a.experiment)
    if exp.logging_steps != a.warmup_steps or not exp.max_steps:
        raise SystemExit("the experiment must set logging_steps = --warmup-steps and max_steps")
    events: list = []
    marks: dict = {}

    def on_event(e):
        now = time.perf_counter()
        events.append((now, e))
        if isinstance(e, PhaseStarted):
            marks.setdefault(f"phase_{e.phase}", now)

    run = run_experiment(manifest, a.experiment, sinks=[CallbackSink(on_event)])
    status = run.status()
    if status.get("status") != "finished":
        raise SystemExit(f"run ended {status}")
    steps = [(t, e) for t, e in events if isinstance(e, StepLogged)]
    first = next(i for i, (_, e) in enumerate(steps) if e.step == a.warmup_steps)
    timed = steps[first + 1:]
    # tokens of each window = its tokens/s x its duration (the loop's clock; the sink
    # sees the event microseconds later, the same offset at both ends of a window)
    tokens = samples = 0.0
    prev = steps[first][0]
    for t, e in timed:
        tokens += e.tokens_per_s * (t - prev)
        samples += e.samples_per_s * (t - prev)
        prev = t
    span = timed[-1][0] - steps[first][0]
    mem = [e.memory_mb for _, e in steps if e.memory_mb is not None]
    evals = [e for _, e in events if isinstance(e, EvalFinished)]
    out = {
        "side": "engine",
        "tokens_per_s": tokens / span,
        "samples_per_s": samples / span,
        "timed_steps": timed[-1][1].step - a.warmup_steps,
        "timed_s": span,
        "s_per_step": span / (timed[-1][1].step - a.warmup_steps),
        "warmup_steps": a.warmup_steps,
        "threads": torch.get_num_threads(),
        "rss_mb_at_logs": mem,
        "final_loss": steps[-1][1].loss,
        "evals": len(evals),
        "process_s": time.perf_counter() - t_start,
    }
    Path(a.json).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
