"""The benchmark harness: one command, every figure of BENCHMARKS.md.

    python bench/run.py            # full run (about an hour on 2 loaded CPU cores)
    python bench/run.py --quick    # fewer repetitions and steps (about 15 minutes)
    python bench/run.py --only startup,dataprep --out /tmp/B.md

Not part of the test suite. Offline (HF_HUB_OFFLINE=1 is set for every child), with
temporary caches and runs directories (removed at the end unless --keep). Every
comparison runs both sides in this invocation, each repetition in a fresh child
process, interleaved (A B, then B A, ...), and reports medians and the median of
the pairwise ratios, so a machine whose speed drifts (other jobs) still compares
fairly. Sections:

- startup:  ``lmconsole --help`` wall time (vs a bare ``python -c pass``)
- dataprep: the engine's data preparation on an empty cache vs cached
- pretrain: real tokens/s, engine (``run_experiment``) vs a plain HF Trainer script
            (``bench/baseline_trainer.py``), bert-tiny (demo preset) and bert-base,
            under the default OpenMP settings and with OMP_WAIT_POLICY=PASSIVE
- peer:     the same engine vs the strongest peer: a Trainer tuned by a speed-minded user
            (group_by_length, fused AdamW, the same precision as the engine: fp32, and bf16 on CPUs
            with native bf16; torch_compile tried at bert-tiny in the full run), both sizes
- threads:  the engine at bert-tiny under thread settings
- profile:  where a step's time goes (engine vs baseline, phase by phase; top operators)
- levers:   single levers A/B (AdamW foreach vs fused, batch building, CPU bf16, torch.compile)
- memory:   peak RSS of ``lmconsole run demo-pretrain`` (first run on an empty cache,
            then a second run reusing it), RSS at each epoch end
- squad:    ``bench/squad_postprocess.py`` (SQuAD v2 post-processing at dev-set size)
- console:  ``bench/console_overhead.py`` (needs tmux): the same job in the console with its
            plots live vs headless (tokens/s), and keypress-to-screen latency at 80x24
- store:    ``bench/store_scale.py`` (needs tmux for the console part): a generated store of 1,000 runs,
            some with 1M-line events files: ``lmconsole runs``, the console's first frame and keypresses,
            following a growing events file, the plot of a 1M-step run
- predict:  ``bench/predict_latency.py``: one prediction after load (the console's Try tab,
            ``lmconsole predict``), the demo's three bert-tiny models on the CPU
- memest:   the memory estimate against measured peaks (``bench/memory_estimate.py``: bert-tiny, bert-base)
- prepare_scale: ``bench/prepare_scale.py``: the engine's pretraining data preparation against
            HF run_mlm.py's preprocessing at 20x, 200x, 1000x the embedded corpus (time, peak PSS)
- gpu:      folded in from ``bench/gpu.sh`` output with --gpu-json (needs a GPU box)

Needs ``accelerate`` for the baseline (the HF Trainer requires it): ``pip install 'accelerate>=1.1'``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REPO,
    bench_env,
    demo_experiment,
    interleaved,
    lmconsole_cmd,
    machine_info,
    median,
    ratio_stats,
    run_child,
    write_manifest,
)
from render import render  # noqa: E402

BENCH = REPO / "bench"
PY = sys.executable
SECTIONS = (
    "startup",
    "dataprep",
    "pretrain",
    "peer",
    "threads",
    "profile",
    "levers",
    "memory",
    "squad",
    "console",
    "store",
    "predict",
    "memest",
    "prepare_scale",
)
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
OMP_ENVS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


@dataclass
class Plan:
    quick: bool
    reps_tiny: int
    reps_base: int
    tiny_steps: tuple  # (warm-up W, total N): timed steps W+1..N
    base_steps: tuple
    base_batch: int
    omp_envs: tuple
    base_omp_envs: tuple
    reps_threads: int
    reps_dataprep: int
    reps_startup: int
    reps_squad: int
    memory_epochs: int | None  # None = the demo's own
    profile_steps: tuple  # (tiny, base)
    levers_reps: int
    compile: bool
    console: tuple = (5, 160, 40)  # (repetitions, steps, key presses)
    reps_peer_tiny: int = 4
    reps_peer_base: int = 3
    sizes: tuple = ("tiny", "base")  # --sizes: the model sizes of the pretrain and peer sections


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(
            quick,
            reps_tiny=2,
            reps_base=1,
            tiny_steps=(3, 20),
            base_steps=(1, 4),
            base_batch=8,
            omp_envs=("default", "passive"),
            base_omp_envs=("passive",),
            reps_threads=2,
            reps_dataprep=2,
            reps_startup=5,
            reps_squad=1,
            memory_epochs=2,
            profile_steps=(6, 2),
            levers_reps=3,
            compile=False,
            console=(2, 60, 20),
            reps_peer_tiny=2,
            reps_peer_base=2,
        )
    return Plan(
        quick,
        reps_tiny=4,
        reps_base=3,
        tiny_steps=(5, 35),
        base_steps=(2, 7),
        base_batch=8,
        omp_envs=("default", "passive"),
        base_omp_envs=("passive", "default"),
        reps_threads=4,
        reps_dataprep=3,
        reps_startup=10,
        reps_squad=3,
        memory_epochs=None,
        profile_steps=(10, 3),
        levers_reps=5,
        compile=True,
    )


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def omp_env(cache: Path, variant: str, **extra) -> dict:
    env = bench_env(cache)
    for k in OMP_VARS:
        env.pop(k, None)
    env.update(OMP_ENVS[variant])
    env.update({k: str(v) for k, v in extra.items()})
    return env


# -- workloads ---------------------------------------------------------------------

SEQ = 128  # BERT's phase-1 length; pinned (demo-pretrain itself uses 64 since its sentences are short)
SIZES = {
    # name: (preset, batch size, learning rate); the rest is demo-pretrain's (embedded corpus, its tokenizer)
    "tiny": ("bert-tiny", 32, 1e-3),
    "base": ("bert-base", 8, 1e-4),
}


def size_experiment(size: str, plan: Plan, precision: str = "auto") -> dict:
    preset, batch, lr = SIZES[size]
    if size == "base":
        batch = plan.base_batch
    w, n = plan.tiny_steps if size == "tiny" else plan.base_steps
    exp = demo_experiment("demo-pretrain")
    exp.pop("description", None)
    exp.update(
        name=f"bench-{size}",
        model=preset,
        batch_size=batch,
        learning_rate=lr,
        epochs=1,
        max_steps=n,
        logging_steps=w,
        max_eval_samples=8,
        max_seq_length=SEQ,
    )
    if precision != "auto":
        exp.update(name=f"bench-{size}-{precision}", precision=precision)
    return exp


class Workspace:
    def __init__(self, root: Path, plan: Plan):
        self.root, self.plan = root, plan
        self.cache = root / "cache-shared"
        self.data: dict[str, dict] = {}

    def manifest(self, size: str) -> Path:
        # every precision variant of a size in one manifest: same data, tokenizer and cache
        exps = [size_experiment(size, self.plan)] + [size_experiment(size, self.plan, p) for p in ("fp32", "bf16")]
        return write_manifest(self.root / "manifests" / f"{size}.toml", self.root / "runs", exps)

    def prepared(self, size: str) -> dict:
        """Tokenizer, cached NSP pairs and model config of a size (built once, in a child)."""
        if size not in self.data:
            m = self.manifest(size)
            out = self.root / f"prep-{size}.json"
            res = run_child(
                [
                    PY,
                    str(BENCH / "prepare_data.py"),
                    "--manifest",
                    str(m),
                    "--experiment",
                    f"bench-{size}",
                    "--export",
                    str(self.root / f"data-{size}"),
                    "--json",
                    str(out),
                ],
                omp_env(self.cache, "passive"),
                out,
            )
            res["manifest"], res["dir"] = str(m), str(self.root / f"data-{size}")
            self.data[size] = res
        return self.data[size]


# -- sections ----------------------------------------------------------------------


def bench_startup(ws: Workspace) -> dict:
    env = omp_env(ws.root / "cache-startup", "default")
    cmds = {"lmconsole --help": lmconsole_cmd() + ["--help"], "python -c pass": [PY, "-c", "pass"]}

    def timed(cmd):
        def f():
            t0 = time.perf_counter()
            subprocess.run(
                cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
            )
            return time.perf_counter() - t0

        return f

    for c in cmds.values():  # warm the page cache and the .pyc files
        timed(c)()
    res = interleaved({k: timed(c) for k, c in cmds.items()}, ws.plan.reps_startup)
    return {"runs": res, "median": {k: median(v) for k, v in res.items()}}


def bench_dataprep(ws: Workspace) -> dict:
    m = ws.manifest("tiny")
    rows = {"cold": [], "cached": []}
    for r in range(ws.plan.reps_dataprep):
        cache = ws.root / f"cache-prep-{r}"
        env = omp_env(cache, "passive")
        for kind in ("cold", "cached"):  # the cached run needs the cold one first: pairs, not alternation
            out = ws.root / f"prep-{kind}-{r}.json"
            log(f"dataprep rep {r + 1}: {kind}")
            res = run_child(
                [
                    PY,
                    str(BENCH / "prepare_data.py"),
                    "--manifest",
                    str(m),
                    "--experiment",
                    "bench-tiny",
                    "--json",
                    str(out),
                ],
                env,
                out,
            )
            res.pop("lengths", None)
            rows[kind].append(res)
        shutil.rmtree(cache, ignore_errors=True)
    keys = (
        "prepare_split_s",
        "prepare_train_s",
        "prepare_eval_s",
        "tokenizer_s",
        "to_lists_s",
        "data_total_s",
        "wall_s",
    )
    med = {k: {kind: median([x[k] for x in rows[kind]]) for kind in rows} for k in keys}
    ratio = {k: ratio_stats([x[k] for x in rows["cold"]], [x[k] for x in rows["cached"]]) for k in keys}
    return {
        "rows": rows,
        "median": med,
        "ratio": ratio,
        "pairs": rows["cold"][0]["train_pairs"],
        "tokens": rows["cold"][0]["train_tokens"],
        "cache_hits_cached": [x["cache_hits"] for x in rows["cached"]],
    }


def engine_padding(lengths: list[int], batch: int, seed: int, w: int, n: int, epoch: int = 0) -> float:
    from engine.tasks.common import length_batches

    bs = length_batches(lengths, batch, seed * 1000 + epoch)[w:n]
    real = sum(lengths[i] for b in bs for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in bs)  # CPU: trimmed to the longest row
    return 1 - real / padded


def _engine_cmd(manifest: str, experiment: str, warmup: int, out: Path) -> list[str]:
    """bench/engine_pretrain.py: one engine run of ``experiment``, timed after ``warmup`` steps, figures to ``out``."""
    return [
        PY,
        str(BENCH / "engine_pretrain.py"),
        "--manifest",
        manifest,
        "--experiment",
        experiment,
        "--warmup-steps",
        str(warmup),
        "--json",
        str(out),
    ]


def _baseline_cmd(
    data: str,
    steps: int,
    warmup: int,
    batch: int,
    rows: list[str],
    exp: dict,
    peer: str,
    precision: str,
    out: Path,
    compile_peer: bool,
) -> list[str]:
    """bench/baseline_trainer.py: the Trainer side (``rows``: extra arguments after --batch-size, e.g. --max-rows)."""
    return (
        [
            PY,
            str(BENCH / "baseline_trainer.py"),
            "--data",
            data,
            "--steps",
            str(steps),
            "--warmup-steps",
            str(warmup),
            "--batch-size",
            str(batch),
        ]
        + rows
        + [
            "--learning-rate",
            str(exp["learning_rate"]),
            "--seed",
            str(exp["seed"]),
            "--peer",
            peer,
            "--precision",
            precision,
            "--json",
            str(out),
        ]
        + (["--compile"] if compile_peer else [])
    )


def bench_pretrain(
    ws: Workspace,
    size: str,
    variant: str,
    reps: int,
    peer: str = "plain",
    precision: str = "fp32",
    compile_peer: bool = False,
) -> dict:
    """Engine vs a Trainer (``peer`` plain or tuned) at one size, OpenMP variant and precision (both sides)."""
    prep = ws.prepared(size)
    exp = size_experiment(size, ws.plan, precision if peer != "plain" else "auto")
    w, n = ws.plan.tiny_steps if size == "tiny" else ws.plan.base_steps
    batch = exp["batch_size"]
    if n >= prep["train_pairs"] // batch:
        raise SystemExit(f"{size}: {n} steps do not fit in one epoch of {prep['train_pairs']} pairs")
    env = omp_env(ws.cache, variant, PYTHONWARNINGS="ignore")
    k = {"i": 0}

    def engine():
        k["i"] += 1
        out = ws.root / f"eng-{size}-{variant}-{k['i']}.json"
        return run_child(_engine_cmd(prep["manifest"], exp["name"], w, out), env, out)

    def baseline():
        k["i"] += 1
        out = ws.root / f"base-{size}-{variant}-{k['i']}.json"
        args = _baseline_cmd(prep["dir"], n, w, batch, [], exp, peer, precision, out, compile_peer)
        return run_child(args, env, out)

    label = f"{size} [{variant}]" + (
        f" vs {peer} Trainer, {precision}{' +compile' if compile_peer else ''}" if peer != "plain" else ""
    )
    res = interleaved({"baseline": baseline, "engine": engine}, reps, progress=lambda m: log(f"pretrain {label} {m}"))
    tps = {s: [x["tokens_per_s"] for x in res[s]] for s in res}
    return {
        "size": size,
        "variant": variant,
        "preset": exp["model"],
        "batch": batch,
        "seq": exp["max_seq_length"],
        "peer": peer,
        "precision": precision,
        "peer_compile": compile_peer,
        "device": res["engine"][0].get("device", "cpu"),
        "warmup_steps": w,
        "steps": n,
        "reps": reps,
        "runs": res,
        "median_tokens_per_s": {s: median(v) for s, v in tps.items()},
        "median_s_per_step": {s: median([x["s_per_step"] for x in res[s]]) for s in res},
        "ratio": ratio_stats(tps["engine"], tps["baseline"]),
        "padding": {
            "baseline": median([x["padding_fraction"] for x in res["baseline"]]),
            "engine": engine_padding(prep["lengths"], batch, exp["seed"], w, n),
        },
        "baseline_optimizer": res["baseline"][0].get("optimizer"),
        "attn": res["baseline"][0].get("attn_implementation"),
    }


PEER_PAIRS = {"tiny": (640, 640), "base": (48, 96)}  # training pairs (quick, full): 20 / 6-12 steps per epoch


def peer_experiment(size: str, plan: Plan, precision: str) -> dict:
    """Two epochs over the first P pairs; the second epoch is timed (the first is the warm-up)."""
    exp = size_experiment(size, plan, precision)
    pairs = PEER_PAIRS[size][0 if plan.quick else 1]
    spe = pairs // exp["batch_size"]
    exp.update(name=f"peer-{size}-{precision}", epochs=2, max_steps=0, max_train_samples=pairs, logging_steps=spe)
    return exp


def bench_peer_one(ws: Workspace, size: str, precision: str, reps: int, compile_peer: bool = False) -> dict:
    """Engine vs the tuned Trainer on the same P pairs: epoch 1 warms up, epoch 2 is timed on both sides.

    Timing a whole epoch makes both sides process exactly the same sequences: group_by_length
    puts the longest batch first and sorts each megabatch, so a short window of steps would
    hand the two sides different lengths (and at bert-base a step's fixed costs, e.g. the
    optimizer over 110M parameters, make tokens/s depend on them).
    """
    prep = ws.prepared(size)
    exp = peer_experiment(size, ws.plan, precision)
    spe = exp["logging_steps"]
    manifest = write_manifest(ws.root / "manifests" / f"{exp['name']}.toml", ws.root / "runs", [exp])
    env = omp_env(ws.cache, "passive", PYTHONWARNINGS="ignore")
    k = {"i": 0}

    def engine():
        k["i"] += 1
        out = ws.root / f"peer-eng-{exp['name']}-{k['i']}.json"
        return run_child(_engine_cmd(str(manifest), exp["name"], spe, out), env, out)

    def baseline():
        k["i"] += 1
        out = ws.root / f"peer-base-{exp['name']}-{k['i']}.json"
        rows = ["--max-rows", str(exp["max_train_samples"])]
        args = _baseline_cmd(
            prep["dir"], 2 * spe, spe, exp["batch_size"], rows, exp, "tuned", precision, out, compile_peer
        )
        return run_child(args, env, out)

    label = f"{size} vs tuned Trainer, {precision}{' +compile' if compile_peer else ''}"
    res = interleaved({"baseline": baseline, "engine": engine}, reps, progress=lambda m: log(f"peer {label} {m}"))
    tps = {side: [x["tokens_per_s"] for x in res[side]] for side in res}
    lengths = prep["lengths"][: exp["max_train_samples"]]
    return {
        "size": size,
        "variant": "passive",
        "preset": exp["model"],
        "batch": exp["batch_size"],
        "seq": exp["max_seq_length"],
        "peer": "tuned",
        "precision": precision,
        "peer_compile": compile_peer,
        "pairs": exp["max_train_samples"],
        "warmup_steps": spe,
        "steps": 2 * spe,
        "reps": reps,
        "runs": res,
        "device": res["engine"][0].get("device", "cpu"),
        "median_tokens_per_s": {side: median(v) for side, v in tps.items()},
        "median_s_per_step": {side: median([x["s_per_step"] for x in res[side]]) for side in res},
        "ratio": ratio_stats(tps["engine"], tps["baseline"]),
        "padding": {
            "baseline": median([x["padding_fraction"] for x in res["baseline"]]),
            "engine": engine_padding(lengths, exp["batch_size"], exp["seed"], 0, spe, epoch=1),
        },
        "epoch_tokens": {
            "baseline": median([x["tokens_per_s"] * x["timed_s"] for x in res["baseline"]]),
            "engine": median([x["tokens_per_s"] * x["timed_s"] for x in res["engine"]]),
        },
    }


def bench_peer(ws: Workspace) -> list:
    """Engine vs the tuned Trainer: each size, fp32 and (where native) bf16 on both sides, passive OpenMP."""
    import torch

    from engine.train.loop import cpu_bf16_native

    plan = ws.plan
    if torch.cuda.is_available():  # --gpu-peer: the GPU's own precision on both sides
        precisions = ("bf16",)
    else:
        precisions = ("fp32", "bf16") if cpu_bf16_native() else ("fp32",)
    rows = []
    for size in plan.sizes:
        for prec in precisions:
            rows.append(bench_peer_one(ws, size, prec, plan.reps_peer_tiny if size == "tiny" else plan.reps_peer_base))
    if plan.compile and not torch.cuda.is_available() and "tiny" in plan.sizes:  # does torch_compile help the peer?
        rows.append(bench_peer_one(ws, "tiny", "fp32", 2, compile_peer=True))
    return rows


THREAD_VARIANTS = {
    # name: (environment additions, torch threads; 0 = default)
    "2 threads, default OpenMP (spin)": ({}, 0),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "2 threads, GOMP_SPINCOUNT=1000": ({"GOMP_SPINCOUNT": "1000"}, 0),
    "1 thread (torch.set_num_threads(1))": ({}, 1),
}


def bench_threads(ws: Workspace) -> dict:
    prep = ws.prepared("tiny")
    w, _ = ws.plan.tiny_steps
    k = {"i": 0}

    def side(extra, threads):
        def f():
            k["i"] += 1
            out = ws.root / f"thr-{k['i']}.json"
            load = os.getloadavg()[0]
            res = run_child(
                [
                    PY,
                    str(BENCH / "engine_pretrain.py"),
                    "--manifest",
                    prep["manifest"],
                    "--experiment",
                    "bench-tiny",
                    "--warmup-steps",
                    str(w),
                    "--threads",
                    str(threads),
                    "--in-process",
                    "--json",
                    str(out),
                ],
                omp_env(ws.cache, "default", **extra),
                out,
            )
            res["load_before"] = load
            return res

        return f

    res = interleaved(
        {name: side(*v) for name, v in THREAD_VARIANTS.items()},
        ws.plan.reps_threads,
        progress=lambda m: log(f"threads {m}"),
    )
    tps = {n: [x["tokens_per_s"] for x in r] for n, r in res.items()}
    ref = list(THREAD_VARIANTS)[0]
    loads = [x["load_before"] for r in res.values() for x in r]
    return {
        "median": {n: median(v) for n, v in tps.items()},
        "all": tps,
        "loads": {n: [x["load_before"] for x in r] for n, r in res.items()},
        "ratio": {n: ratio_stats(v, tps[ref]) for n, v in tps.items()},
        "reps": ws.plan.reps_threads,
        "load_range": (min(loads), max(loads)),
    }


def bench_profile(ws: Workspace, size: str, steps: int) -> dict:
    prep = ws.prepared(size)
    out = ws.root / f"profile-{size}.json"
    log(f"profile {size}")
    return run_child(
        [
            PY,
            str(BENCH / "profile_pretrain.py"),
            "--manifest",
            prep["manifest"],
            "--experiment",
            f"bench-{size}",
            "--data",
            prep["dir"],
            "--steps",
            str(steps),
            "--warmup-steps",
            "1",
            "--ops",
            "--json",
            str(out),
        ],
        omp_env(ws.cache, "passive"),
        out,
    )


def bench_levers(ws: Workspace, size: str, which: str) -> dict:
    prep = ws.prepared(size)
    out = ws.root / f"levers-{size}.json"
    log(f"levers {size}: {which}")
    res = run_child(
        [
            PY,
            str(BENCH / "levers_cpu.py"),
            "--manifest",
            prep["manifest"],
            "--experiment",
            f"bench-{size}",
            "--data",
            prep["dir"],
            "--reps",
            str(ws.plan.levers_reps),
            "--which",
            which,
            "--json",
            str(out),
        ],
        omp_env(ws.cache, "passive"),
        out,
        timeout=3600,
    )
    return res


def _wait_rss(args, env, log_path: Path) -> dict:
    """Run a child; its own peak RSS (os.wait4: that child and the children it waited for)."""
    t0 = time.perf_counter()
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(args, env=env, cwd=str(REPO), stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "user_s": ru.ru_utime, "sys_s": ru.ru_stime}


def _pretrain_run_figures(run: Path) -> dict:
    """From a demo-pretrain run's events: time to the first evaluation, RSS at epoch ends and logs, perplexities."""
    from engine.events import from_dict
    from engine.store.runs import read_events

    events = [from_dict(d) for d in read_events(run / "events.jsonl")[0]]
    kinds = [(type(e).__name__, e) for e in events]
    t_pre = next(e.time for n, e in kinds if n == "PhaseStarted" and e.phase == "preflight")
    t_eval0 = next(e.time for n, e in kinds if n == "PhaseStarted" and e.phase == "eval")
    t_train = next(e.time for n, e in kinds if n == "PhaseStarted" and e.phase == "train")
    t_end = events[-1].time
    steps = [e for n, e in kinds if n == "StepLogged"]
    epoch_end = [(round(e.epoch), e.memory_mb) for e in steps if abs(e.epoch - round(e.epoch)) < 1e-9 and e.epoch >= 1]
    evals = [e for n, e in kinds if n == "EvalFinished"]
    return dict(
        to_first_eval_s=t_eval0 - t_pre,
        train_and_evals_s=t_end - t_train,
        rss_at_epoch_end_mb=epoch_end,
        rss_at_logs_mb=[e.memory_mb for e in steps],
        ppl=[e.metrics.get("mlm_perplexity") for e in evals],
        logs=[
            getattr(e, "message", "") for n, e in kinds if n == "LogEmitted" and "pairs" in getattr(e, "message", "")
        ],
    )


def _memory_finetune(ws: Workspace, runs_dir: Path, exp: dict, env: dict) -> tuple[Path, dict]:
    """The rest of the pipeline: both fine-tunings in one process, from the demo-pretrain run of ``runs_dir``.

    Returns the manifest written for it (the leak check reuses it) and its figures."""
    from engine.events import from_dict
    from engine.store.runs import read_events

    fts = [demo_experiment(n) for n in ("demo-sst2", "demo-squad")]
    if ws.plan.memory_epochs:
        for e in fts:
            e["epochs"] = ws.plan.memory_epochs
    manifest = write_manifest(ws.root / "manifests" / "memory-ft.toml", runs_dir, [exp] + fts)
    log("memory: lmconsole run demo-sst2 demo-squad")
    res = _wait_rss(
        lmconsole_cmd() + ["-m", str(manifest), "run", "demo-sst2", "demo-squad"], env, ws.root / "memory-ft.log"
    )
    res["runs"] = {}
    for e in fts:
        run = next((runs_dir / e["name"]).glob("*"))
        steps = [
            x for x in (from_dict(d) for d in read_events(run / "events.jsonl")[0]) if type(x).__name__ == "StepLogged"
        ]
        res["runs"][e["name"]] = {"epochs": e["epochs"], "rss_at_epoch_end_mb": _epoch_end_rss(steps)}
    return manifest, res


def bench_memory(ws: Workspace) -> dict:
    """``lmconsole run demo-pretrain`` twice on one empty cache: first run, then a second reusing the cached data."""
    runs_dir = ws.root / "runs-memory"
    exp = demo_experiment("demo-pretrain")
    if ws.plan.memory_epochs:
        exp["epochs"] = ws.plan.memory_epochs
    manifest = write_manifest(ws.root / "manifests" / "memory.toml", runs_dir, [exp])
    cache = ws.root / "cache-memory"
    env = bench_env(cache)
    out = {"epochs": exp["epochs"], "env": {k: os.environ.get(k) for k in OMP_VARS if os.environ.get(k)}, "runs": []}
    # The floor: the libraries a pretraining job imports, and nothing else.
    floor = _wait_rss(
        [
            PY,
            "-c",
            "import torch, transformers, datasets, tokenizers, engine.tasks.pretrain; "
            "from transformers import BertForPreTraining",
        ],
        env,
        ws.root / "floor.log",
    )
    out["import_floor_rss_mb"] = floor["peak_rss_mb"]
    for label in ("first run (empty cache)", "second run (cached data)"):
        log(f"memory: lmconsole run demo-pretrain, {label}")
        before = (
            {p.name for p in (runs_dir / "demo-pretrain").glob("*")} if (runs_dir / "demo-pretrain").exists() else set()
        )
        res = _wait_rss(lmconsole_cmd() + ["-m", str(manifest), "run", "demo-pretrain"], env, ws.root / "memory.log")
        new = [p for p in (runs_dir / "demo-pretrain").glob("*") if p.name not in before]
        res.update(label=label, **_pretrain_run_figures(new[0]))
        out["runs"].append(res)
    manifest, out["finetune"] = _memory_finetune(ws, runs_dir, exp, env)
    log("memory: leak check (bench/memory_epochs.py, demo-pretrain in-process)")
    leak_json = ws.root / "memory-epochs.json"
    out["leak_check"] = run_child(
        [
            PY,
            str(BENCH / "memory_epochs.py"),
            "--manifest",
            str(manifest),
            "--experiment",
            "demo-pretrain",
            "--json",
            str(leak_json),
        ],
        env,
        leak_json,
        log=ws.root / "memory-epochs.log",
    )
    return out


def _epoch_end_rss(steps: list) -> list:
    """(epoch, RSS MB) at the last logged step of each epoch."""
    by_epoch: dict = {}
    for e in steps:
        by_epoch[max(1, int(-(-e.epoch // 1)))] = e.memory_mb  # ceil: steps of epoch k have k-1 < epoch <= k
    return sorted(by_epoch.items())


def bench_console(ws: Workspace) -> dict:
    reps, steps, presses = ws.plan.console
    out = ws.root / "console.json"
    return run_child(
        [
            PY,
            str(BENCH / "console_overhead.py"),
            "--reps",
            str(reps),
            "--steps",
            str(steps),
            "--presses",
            str(presses),
            "--json",
            str(out),
        ],
        bench_env(ws.root / "cache-console"),
        out,
        log=ws.root / "console.log",
    )


def bench_store(ws: Workspace) -> dict:
    """``bench/store_scale.py all``: 1,000 generated runs (quick: 1 with 1M events lines, full: 3)."""
    out = ws.root / "store.json"
    big = 1 if ws.plan.quick else 3
    return run_child(
        [PY, str(BENCH / "store_scale.py"), "all", "--big", str(big), "--json", str(out)],
        bench_env(ws.root / "cache-store"),
        out,
        log=ws.root / "store.log",
    )


def bench_prepare_scale(ws: Workspace) -> dict:
    """``bench/prepare_scale.py``: the engine's data preparation against run_mlm's (quick: 2x and 20x the
    embedded corpus; full: 20x, 200x, 1000x, about an hour on 2 loaded cores or more)."""
    out = ws.root / "prepare_scale.json"
    sizes = "2,20" if ws.plan.quick else "20,200,1000"
    return run_child(
        [PY, str(BENCH / "prepare_scale.py"), "--sizes", sizes, "--root", str(ws.root / "scale"), "--json", str(out)],
        bench_env(ws.root / "cache-scale"),
        out,
        timeout=4 * 3600,
        log=ws.root / "prepare_scale.log",
    )


def bench_predict(ws: Workspace) -> dict:
    """``bench/predict_latency.py``: one prediction after load, the demo's three models (quick: fewer calls)."""
    out = ws.root / "predict.json"
    reps = 20 if ws.plan.quick else 50
    return run_child(
        [PY, str(BENCH / "predict_latency.py"), "--reps", str(reps), "--json", str(out)],
        bench_env(ws.root / "cache-predict"),
        out,
        log=ws.root / "predict.log",
    )


def bench_squad(ws: Workspace) -> dict:
    vals = []
    for r in range(ws.plan.reps_squad):
        log(f"squad rep {r + 1}")
        proc = subprocess.run(
            [PY, str(BENCH / "squad_postprocess.py")],
            cwd=str(REPO),
            env=bench_env(ws.root / "cache-squad"),
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        got = {
            k: float(v)
            for k, v in re.findall(r"^(postprocess_qa|squad_v2_score|total):\s+([\d.]+) s", proc.stdout, re.M)
        }
        vals.append(got)
        first_line = proc.stdout.splitlines()[0]
    return {"runs": vals, "median": {k: median([v[k] for v in vals]) for k in vals[0]}, "data": first_line}


# -- command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions and steps (about 15 minutes)")
    p.add_argument("--only", default="", help=f"comma-separated sections ({', '.join(SECTIONS)}); default: all")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="Markdown report (default: BENCHMARKS.md)")
    p.add_argument("--json", help="also write every raw figure as JSON here")
    p.add_argument("--gpu-json", help="results of bench/gpu.sh (gpu_pretrain.json) to include")
    p.add_argument("--console-json", help="with --from-json: results of bench/console_overhead.py (--json) to include")
    p.add_argument(
        "--merge-json",
        metavar="FILE",
        action="append",
        default=[],
        help="with --from-json: the sections of another --json file replace those of --from-json "
        "(the memory section names its source)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    p.add_argument(
        "--gpu-peer",
        action="store_true",
        help="on a GPU box (bench/gpu.sh runs it): the peer section at bert-base, batch 64, 10 + 50 steps, bf16 on both "
        "sides, with MFU",
    )
    p.add_argument(
        "--sizes", default="tiny,base", help="model sizes of the pretrain and peer sections (default: tiny,base)"
    )
    p.add_argument(
        "--history",
        metavar="FILE",
        action="append",
        default=[],
        help="a --json file of an earlier invocation whose pretraining and threads tables to append (labelled)",
    )
    p.add_argument(
        "--from-json",
        metavar="FILE",
        help="run nothing: re-render --out from a --json file of an earlier run "
        "(e.g. to add --gpu-json results without re-running the CPU benchmarks)",
    )
    return p


def _merge_json(saved: dict, f: str) -> None:
    """Fold the sections of another --json file into ``saved``, each labelled with its command, date and load."""
    other = json.loads(Path(f).read_text())
    for name, section in other["results"].items():
        prov = {
            "command": other.get("command", f),
            "date": other["machine"]["date"],
            "load": other["machine"]["load_avg_at_start"][0],
        }
        if name in SECTIONS and isinstance(section, dict):
            section["provenance"] = prov
            saved["results"][name] = section
        elif name in SECTIONS and isinstance(section, list):  # the peer section: a list of rows
            for row in section:
                row["provenance"] = prov
            saved["results"][name] = section


def _run_sections(ws: Workspace, only: list) -> dict:
    """Measure the sections in ``only``; their figures by section name."""
    plan = ws.plan
    res: dict = {}
    if "startup" in only:
        log("startup")
        res["startup"] = bench_startup(ws)
    if "dataprep" in only:
        res["dataprep"] = bench_dataprep(ws)
    if "pretrain" in only:
        res["pretrain"] = []
        for v in plan.omp_envs if "tiny" in plan.sizes else ():
            res["pretrain"].append(bench_pretrain(ws, "tiny", v, plan.reps_tiny))
        for v in plan.base_omp_envs if "base" in plan.sizes else ():
            res["pretrain"].append(
                bench_pretrain(
                    ws, "base", v, plan.reps_base if v == plan.base_omp_envs[0] else max(1, plan.reps_base - 1)
                )
            )
    if "peer" in only:
        res["peer"] = bench_peer(ws)
    if "threads" in only:
        res["threads"] = bench_threads(ws)
    if "profile" in only:
        res["profile"] = {
            "bert-tiny": bench_profile(ws, "tiny", plan.profile_steps[0]),
            "bert-base": bench_profile(ws, "base", plan.profile_steps[1]),
        }
    if "levers" in only:
        res["levers"] = {
            "bert-tiny": bench_levers(ws, "tiny", "collate,optimizer,bf16" + (",compile" if plan.compile else "")),
            "bert-base": bench_levers(ws, "base", "optimizer,bf16"),
        }
    if "memory" in only:
        res["memory"] = bench_memory(ws)
    if "squad" in only:
        res["squad"] = bench_squad(ws)
    if "store" in only:
        log("store")
        res["store"] = bench_store(ws)
    if "prepare_scale" in only:
        log("prepare_scale")
        res["prepare_scale"] = bench_prepare_scale(ws)
    if "predict" in only:
        log("predict")
        res["predict"] = bench_predict(ws)
    if "memest" in only:
        log("memory estimate")
        out = ws.root / "memest.json"
        res["memest"] = run_child(
            [PY, str(BENCH / "memory_estimate.py"), "--json", str(out)],
            bench_env(ws.root / "cache-memest"),
            out,
            timeout=3600,
            log=ws.root / "memest.log",
        )
        fixed = run_child(  # the same on bert-tiny with glibc's mmap threshold fixed: what its arenas add
            [PY, str(BENCH / "memory_estimate.py"), "--glibc-fixed", "--json", str(out)],
            bench_env(ws.root / "cache-memest"),
            out,
            timeout=3600,
            log=ws.root / "memest.log",
        )
        res["memest"]["rows"] = res["memest"].get("rows", []) + fixed.get("rows", [])
    if "console" in only:
        if shutil.which("tmux"):
            log("console")
            res["console"] = bench_console(ws)
        else:
            log("console: skipped, tmux is not installed")
    return res


def _from_json(a, command: str, gpu: dict | None, history: list) -> int:
    """--from-json: re-render --out from an earlier run's figures (plus --console-json and --merge-json), measuring nothing."""
    saved = json.loads(Path(a.from_json).read_text())
    plan = make_plan(saved.get("quick", saved["machine"].get("mode") == "quick"))
    if a.console_json:
        saved["results"]["console"] = json.loads(Path(a.console_json).read_text())
    for f in a.merge_json:
        _merge_json(saved, f)
    text = render(saved["machine"], saved["results"], saved.get("command", command), plan.quick, gpu, history)
    Path(a.out).write_text(text + "\n", encoding="utf-8")
    log(f"re-rendered {a.out} from {a.from_json}")
    return 0


def main(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    only = [s for s in a.only.split(",") if s] or list(SECTIONS)
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    plan = make_plan(a.quick)
    sizes = tuple(x for x in a.sizes.split(",") if x)
    if not sizes or any(x not in SIZES for x in sizes):
        p.error(f"--sizes: choose from {tuple(SIZES)}")
    plan.sizes = sizes
    if a.gpu_peer:
        import torch

        if not torch.cuda.is_available():
            p.error("--gpu-peer needs a CUDA device")
        plan.sizes, plan.base_batch, plan.base_steps, plan.reps_peer_base = ("base",), 64, (10, 60), 2
        only = ["peer"]
    command = "python bench/run.py" + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
    gpu = json.loads(Path(a.gpu_json).read_text()) if a.gpu_json else None
    history = [json.loads(Path(f).read_text()) for f in a.history]
    if (a.console_json or a.merge_json) and not a.from_json:
        p.error("--console-json and --merge-json only apply with --from-json")
    if a.from_json:
        return _from_json(a, command, gpu, history)
    if any(s in only for s in ("pretrain",)):
        try:
            import accelerate  # noqa: F401
        except ImportError:
            p.error("the HF Trainer baseline needs accelerate: pip install 'accelerate>=1.1'")
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    info = machine_info()
    root = Path(tempfile.mkdtemp(prefix="lmconsole-bench-"))
    ws = Workspace(root, plan)
    t0 = time.perf_counter()
    log(f"work folder {root}; sections {only}; {'quick' if plan.quick else 'full'}")
    try:
        res = _run_sections(ws, only)
    finally:
        if a.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    res["elapsed_s"] = time.perf_counter() - t0
    text = render(info, res, command, plan.quick, gpu, history)
    Path(a.out).write_text(text + "\n", encoding="utf-8")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"machine": info, "results": res, "quick": plan.quick, "command": command}, indent=1, default=str
            )
        )
    log(f"wrote {a.out} in {res['elapsed_s'] / 60:.1f} min")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
