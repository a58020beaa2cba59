"""Latency of one prediction after the model is loaded: the console's Try tab and ``lmconsole predict``.

    python bench/predict_latency.py --json /tmp/predict.json   # (bench/run.py --only predict)

Trains the demo's three models at their demo shapes (bert-tiny, the demo's tokenizer
vocabulary and ``max_seq_length``; one short epoch each: latency depends on the shapes, not
on how well the models learned), loads each once with
:func:`engine.study.predict.load_predictor` on the CPU, then times ``Predictor.timed`` on a
single demo input: the call the Try tab makes in its worker thread for each input (the
figure it shows under the answer). Warm-up calls first; median and p95 of the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_MS = 100.0  # one prediction after load, tiny demo model, CPU
DEMO_INPUTS = {
    "demo-pretrain": {"text": "the band was [MASK] in 1974 ."},
    "demo-sst2": {"text": "a wonderful, moving film"},
    "demo-squad": {
        "question": "Who is the lead singer of The Silver Anchors?",
        "context": "The Silver Anchors are a blues band from Ilmley. The band was formed in 1974. "
        "Their lead singer is Petra Gostette. Their debut album, Silent Lantern, was released on Northway Records.",
    },
}


def manifest_text(runs: Path) -> str:
    """The demo's pretrain -> sst2, squad at demo shapes, each one short epoch on few rows."""
    common = "epochs = 1\nmax_train_samples = 64\nmax_eval_samples = 16\nlogging_steps = 2\nbatch_size = 16\n"
    return f"""[settings]
runs_dir = "{runs}"

[[experiment]]
name = "demo-pretrain"
task = "pretrain"
model = "bert-tiny"
tokenizer = "train"
vocab_size = 4000
dataset = "embedded:wikitext"
dataset_config = "wikitext-2-raw-v1"
eval_split = "test"
max_seq_length = 128
{common}
[[experiment]]
name = "demo-sst2"
task = "classify"
model = "run:demo-pretrain"
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
eval_split = "test"
max_seq_length = 64
{common}
[[experiment]]
name = "demo-squad"
task = "qa"
model = "run:demo-pretrain"
dataset = "embedded:squad_v2"
dataset_config = "squad_v2"
max_seq_length = 160
doc_stride = 64
{common}"""


def measure(reps: int, warmup: int) -> dict:
    import torch

    from engine.job.runner import run_experiment
    from engine.manifest import load
    from engine.study.predict import load_predictor

    out: dict = {"reps": reps, "warmup": warmup, "torch_threads": torch.get_num_threads(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "experiments.toml"
        path.write_text(manifest_text(Path(tmp) / "runs"))
        manifest = load(path)
        for name, row in DEMO_INPUTS.items():
            run = run_experiment(manifest, name)
            t0 = time.perf_counter()
            predictor = load_predictor(run, "cpu")
            load_s = time.perf_counter() - t0
            default_threads = torch.get_num_threads()
            times: dict[int, list[float]] = {default_threads: [], 1: []}
            for i in range(warmup + reps):
                for n in (default_threads, 1) if i % 2 else (1, default_threads):  # interleaved: A B, then B A
                    torch.set_num_threads(n)
                    _, seconds = predictor.timed([row])
                    if i >= warmup:
                        times[n].append(seconds * 1000)
            torch.set_num_threads(default_threads)
            out["models"][name] = {"task": predictor.task, "load_s": load_s}
            for n, ts in times.items():
                ts.sort()
                key = "" if n == default_threads else "_1thread"
                out["models"][name].update(
                    {
                        f"median_ms{key}": statistics.median(ts),
                        f"p95_ms{key}": ts[min(len(ts) - 1, int(0.95 * len(ts)))],
                        f"min_ms{key}": ts[0],
                        f"max_ms{key}": ts[-1],
                    }
                )
    return out


def summary_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(figure, goal, measured, status) rows for BENCHMARKS.md's summary: the console's setting (1 thread)."""
    worst = max(m["median_ms_1thread"] for m in r["models"].values())
    shown = "; ".join(
        f"{m['task']} {m['median_ms_1thread']:.0f} ms (p95 {m['p95_ms_1thread']:.0f})" for m in r["models"].values()
    )
    return [
        (
            "one prediction after load in the console's Try tab (1 torch thread), bert-tiny demo models, CPU",
            f"< {GOAL_MS:.0f} ms",
            f"median {shown}; load average {r['load_avg_at_start'][0]:.0f} on {r['cores']} cores",
            "met" if worst < GOAL_MS else "NOT met",
        )
    ]


def render_section(add, r: dict) -> None:
    """The "Trying a model" section of BENCHMARKS.md."""
    add("## Trying a model: one prediction after load")
    add("")
    add(
        "`python bench/predict_latency.py` (`bench/run.py --only predict`): the demo's three models at their demo "
        "shapes (bert-tiny, demo tokenizer, demo `max_seq_length`; one short epoch each: latency depends on the "
        f"shapes, not on what they learned), each loaded once on the CPU ({r['torch_threads']} torch threads), then "
        f"`Predictor.timed` on one demo input {r['reps']} times after {r['warmup']} warm-up calls: the call the "
        "console's Try tab makes in its worker thread per input, and the latency it shows. Load average "
        f"{r['load_avg_at_start'][0]:.1f} at the start ({r['cores']} cores)."
    )
    add("")
    add("| model | task | input | load | median | p95 | min - max | median, 1 thread | p95, 1 thread |")
    add("|---|---|---|---:|---:|---:|---|---:|---:|")
    for name, m in r["models"].items():
        shown = " / ".join(DEMO_INPUTS[name].values())
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        add(
            f"| {name} | {m['task']} | {shown} | {m['load_s']:.2f} s | {m['median_ms']:.1f} ms | "
            f"{m['p95_ms']:.1f} ms | {m['min_ms']:.1f} - {m['max_ms']:.1f} ms | {m['median_ms_1thread']:.1f} ms | "
            f"{m['p95_ms_1thread']:.1f} ms |"
        )
    add("")
    add(
        "Load is the first `load_predictor` of the process, importing torch and transformers included where they "
        "were not loaded yet (the pretraining model comes first). The 1-thread columns ran the same calls with "
        "`torch.set_num_threads(1)`, interleaved with the default ones: the console's Try tab loads its model "
        "with 1 thread (`load_predictor(..., threads=1)`); `lmconsole predict` keeps torch's default, which suits "
        "`--file` batches. On cores busy with other jobs the default threads wait for each other at every "
        "operator; the minimum is what the work itself costs."
    )
    add("")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = {"load_avg_at_start": os.getloadavg(), "cores": os.cpu_count()}
    res.update(measure(args.reps, args.warmup))
    res["load_avg_at_end"] = os.getloadavg()
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
