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
    fmt,
    interleaved,
    machine_info,
    median,
    ratio_stats,
    run_child,
    write_manifest,
)
from gpu_pretrain import H200_BF16_DENSE_TFLOPS, model_flops_per_step  # noqa: E402

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


def lmconsole_cmd() -> list[str]:
    exe = Path(PY).parent / "lmconsole"
    return [str(exe)] if exe.exists() else [PY, "-m", "tui.entry"]


# -- workloads ---------------------------------------------------------------------

SIZES = {
    # name: (preset, batch size, learning rate); the rest is demo-pretrain's (embedded corpus, seq 128, its tokenizer)
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


def _leak_verdict(lc: dict) -> tuple[str, str]:
    """(text, status) from the per-epoch rows of memory_epochs.py, epoch 1 -> last (epoch 0 precedes training)."""
    rows = [r for r in lc["epochs"] if r["epoch"] >= 1]
    a, b = rows[0], rows[-1]
    trim = "rss_after_trim_mb" in a
    text = (
        f"epoch {a['epoch']} -> {b['epoch']}: live tensors {a['live_tensors']} -> {b['live_tensors']}, "
        f"Python objects {a['gc_objects']:,} -> {b['gc_objects']:,}"
        + (f", RSS after malloc_trim {a['rss_after_trim_mb']:.0f} -> {b['rss_after_trim_mb']:.0f} MB" if trim else "")
    )
    ok = (
        b["live_tensors"] <= a["live_tensors"]
        and b["gc_objects"] <= a["gc_objects"] * 1.01 + 100
        and (not trim or b["rss_after_trim_mb"] - a["rss_after_trim_mb"] < 50)
    )
    return text, "no leak" if ok else "CHECK"


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


def _console_rows(c: dict) -> tuple[str, str, str, str]:
    """(throughput text, its status, latency text, its status) for the summary."""
    r = c["ratio"]
    t = f"{r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}], {r['n']} pairs"
    lat = c["latency"]
    tr, idle = lat["training"], lat["idle"]
    l_txt = f"p95 {tr['p95_ms']:.0f} ms while training (median {tr['median_ms']:.0f}, {tr['n']} presses); idle p95 {idle['p95_ms']:.0f} ms"
    return t, "met" if r["median"] >= 0.97 else "NOT met", l_txt, "met" if tr["p95_ms"] <= 150 else "NOT met"


def _console_section(add, c: dict) -> None:
    add("## Console overhead")
    add("")
    add(
        f"`{c['command']}` ({c['date']}; 1-min load average at its start {c['machine']['load_avg_at_start'][0]}). "
        "The console in a real terminal: a detached tmux session of 80x24 driven with `tmux send-keys`, read with "
        f"`tmux capture-pane`. Job: demo-pretrain (bert-tiny, batch 32, seq 128) cut to {c['steps']} steps; tokens/s over "
        f"steps {c['warmup'] + 1}..{c['steps']} from the run's StepLogged events. *headless* = `lmconsole run` in a fresh "
        "process; *console* = `lmconsole` started in tmux, keys `r` (run), `2` (Jobs), `Enter` (the run view: loss, "
        "learning-rate and perplexity plots redrawn live), then left alone until the run finished; the run view was on "
        "screen before the timed window in every repetition"
        + (
            ""
            if all(r.get("view_open_before_timed_window") for r in c["console"])
            else " **except some: see the JSON**"
        )
        + (
            ", and its plots still on screen at the end"
            if all(r.get("plots_on_screen_at_end") for r in c["console"])
            else ", **but not every repetition still showed the plots at the end: see the JSON**"
        )
        + ". Interleaved, each repetition a fresh process."
    )
    add("")
    add("| rep | headless tokens/s | console tokens/s | console / headless |")
    add("|---|---:|---:|---:|")
    for i, (h, k) in enumerate(zip(c["headless"], c["console"])):
        add(
            f"| {i + 1} | {h['tokens_per_s']:,.0f} | {k['tokens_per_s']:,.0f} | {k['tokens_per_s'] / h['tokens_per_s']:.3f} |"
        )
    r = c["ratio"]
    add(
        f"| median | {median([h['tokens_per_s'] for h in c['headless']]):,.0f} | {median([k['tokens_per_s'] for k in c['console']]):,.0f} "
        f"| **{r['median']:.3f}** [{r['min']:.3f}-{r['max']:.3f}] |"
    )
    add("")
    ui = [(k["ui_thread_cpu_s"], k["ui_window_s"]) for k in c["console"] if k.get("ui_thread_cpu_s") is not None]
    if ui:
        add(
            f"The console's main thread (Textual's event loop: timers, redrawing the plots and the status line; the job trains in "
            f"another thread; the run view's short poll workers are not counted) used {median([u for u, _ in ui]):.2f} s of CPU over a median {median([w for _, w in ui]):.1f} s "
            f"of training ({median([u / w for u, w in ui]):.1%} of one core; per repetition: "
            + ", ".join(f"{u:.2f} s / {w:.0f} s" for u, w in ui)
            + ")."
        )
        add("")
    lat = c["latency"]
    add(
        f"Latency: with the job training (it had reached step {lat['steps_at_end_of_presses']} by the end), key presses "
        "alternating `4` (Log tab) and `1` (Curves tab) 100-300 ms apart, each timed from just before `tmux send-keys` until "
        "`capture-pane` shows the new tab's content; then the job was cancelled and the same presses timed on the idle "
        "console. Includes tmux's own delivery and one capture-pane poll (~2-5 ms)."
    )
    add("")
    add("| state | presses | median ms | p95 ms | max ms |")
    add("|---|---:|---:|---:|---:|")
    for k in ("training", "idle"):
        x = lat[k]
        add(
            f"| {'job training' if k == 'training' else 'idle'} | {x['n']} | {x['median_ms']:.0f} | {x['p95_ms']:.0f} | {x['max_ms']:.0f} |"
        )
    add("")


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


# -- report ---------------------------------------------------------------------------


def _pretrain_table(add, rows: list) -> None:
    add(
        "| model | OpenMP | W / N steps | reps | baseline tokens/s | engine tokens/s | engine / baseline | s/step baseline / engine | padding baseline / engine |"
    )
    add("|---|---|---|---|---:|---:|---:|---|---|")
    for r in rows:
        t, s, pd = r["median_tokens_per_s"], r["median_s_per_step"], r["padding"]
        add(
            f"| {r['preset']} (batch {r['batch']}, seq {r['seq']}) | {r['variant']} | {r['warmup_steps']} / {r['steps']} | {r['reps']} | "
            f"{fmt(t['baseline'])} | {fmt(t['engine'])} | **{r['ratio']['median']:.2f}x** [{r['ratio']['min']:.2f}-{r['ratio']['max']:.2f}] | "
            f"{s['baseline']:.3g} / {s['engine']:.3g} | {pd['baseline']:.1%} / {pd['engine']:.1%} |"
        )
    add("")


def _peer_section(add, rows: list) -> None:
    add("## Against the strongest peer: a Trainer tuned for speed")
    add("")
    add(
        "The same harness and data as above, but the `Trainer` configured as a performance-minded user would "
        '(`bench/baseline_trainer.py --peer tuned`): `train_sampling_strategy="group_by_length"` (similar lengths in a '
        'batch, lengths precomputed), `optim="adamw_torch_fused"`, and the SAME precision as the engine\'s side: fp32 '
        'on both, or bf16 autocast on both (`bf16=True` vs the engine\'s `precision = "bf16"`, on CPUs with native '
        "bf16 only). `OMP_WAIT_POLICY=PASSIVE` for both. Both sides train two epochs over the same first P pairs "
        "(the engine's `max_train_samples = P`, the Trainer on the same rows); the second epoch is timed, so both process "
        "exactly the same sequences (group_by_length hands out the longest batch first and sorts each megabatch, so a "
        "short window of steps would compare different lengths). The engine's epoch-end evaluation and checkpoint are "
        "excluded from its time (the Trainer side does neither). Caveat on padding: the Trainer's `LengthGroupedSampler` "
        "sorts megabatches of `min(P // (4 x batch), 50)` batches, so on these small P it groups 5 batches (bert-tiny, "
        "P = 640) or a single one (bert-base, P = 48: nothing to sort, hence its ~25% padding); on a full-size dataset it "
        "sorts 50 batches and pads little, so at bert-base its padding here is worse than a user would see, and the "
        "padding columns say by how much. A `+compile` row is the peer with `torch_compile=True` "
        "(tried once at bert-tiny in the full run, to see whether it helps that side)."
    )
    add("")
    prov = rows[0].get("provenance") if rows else None
    if prov:
        add(
            f"Measured by `{prov['command']}` ({prov['date']}; 1-min load average at its start {prov['load']}), "
            "folded in with `--merge-json`."
        )
        add("")
    add(
        "| model | precision | peer | pairs (timed epoch: steps) | reps | peer tokens/s | engine tokens/s | engine / peer | s/step peer / engine | padding peer / engine |"
    )
    add("|---|---|---|---|---|---:|---:|---:|---|---|")
    mfu = {}
    for r in rows:
        if r.get("device", "cpu").startswith("cuda"):
            mfu[id(r)] = {
                side: v * bert_flops_per_token(r["seq"]) / (H200_BF16_DENSE_TFLOPS * 1e12)
                for side, v in r["median_tokens_per_s"].items()
            }
    for r in rows:
        t, st, pd = r["median_tokens_per_s"], r["median_s_per_step"], r["padding"]
        peer = "tuned" + (" +compile" if r.get("peer_compile") else "")
        add(
            f"| {r['preset']} (batch {r['batch']}, seq {r['seq']}) | {r['precision']} | {peer} | {r.get('pairs', '?')} ({r['warmup_steps']}) | "
            f"{r['reps']} | {fmt(t['baseline'])} | {fmt(t['engine'])} | **{r['ratio']['median']:.2f}x** "
            f"[{r['ratio']['min']:.2f}-{r['ratio']['max']:.2f}] | {st['baseline']:.3g} / {st['engine']:.3g} | "
            f"{pd['baseline']:.1%} / {pd['engine']:.1%} |"
        )
    add("")
    for r in rows:
        if id(r) in mfu:
            m = mfu[id(r)]
            add(
                f"On {r['device']}: MFU peer {m['baseline']:.1%}, engine {m['engine']:.1%} (bert-base model FLOPs per real token "
                f"{bert_flops_per_token(r['seq']) / 1e6:.0f} M: matmul weights, attention at seq {r['seq']}, MLM head at 15% of "
                f"tokens, pooler/NSP; peak {H200_BF16_DENSE_TFLOPS:.0f} TFLOP/s, H200 bf16 dense)."
            )
            add("")


def bert_flops_per_token(seq: int) -> float:
    """Useful training FLOPs per real token of bert-base (bench/gpu_pretrain.py's count, 15% of tokens masked)."""
    from transformers import BertConfig

    return model_flops_per_step(BertConfig(), 1, seq, 0.15 * seq) / seq


def _threads_table(add, t: dict, cores: int) -> None:
    add(
        f"1-minute load average before the runs: {t['load_range'][0]:.1f} to {t['load_range'][1]:.1f} on {cores} cores."
    )
    add("")
    add(f"| setting | tokens/s (median of {t['reps']}) | each run (1-min load average before it) | vs default |")
    add("|---|---:|---|---:|")
    for n, v in t["median"].items():
        r = t["ratio"][n]
        loads = t.get("loads", {}).get(n) or [None] * len(t["all"][n])
        runs = ", ".join(fmt(x) + (f" ({ld:.1f})" if ld is not None else "") for x, ld in zip(t["all"][n], loads))
        add(f"| {n} | {fmt(v)} | {runs} | {r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}] |")
    add("")


def _render_history(add, saved: dict) -> None:
    """An earlier invocation's pretraining and threads tables, labelled with its date and load."""
    info, res = saved["machine"], saved["results"]
    add(
        f"## Earlier invocation: {info['date']} (load average at start {' / '.join(str(x) for x in info['load_avg_at_start'])})"
    )
    add("")
    add(
        f"`{saved.get('command', 'python bench/run.py')}` on the same machine, kept because the load differed: "
        "the machine was shared with other jobs through most of it."
    )
    add("")
    rows = res.get("pretrain") or []
    if rows:
        in_process = any("mode" not in x for r in rows for x in r["runs"]["engine"])
        add(
            "Pretraining throughput"
            + (
                " (engine run in-process by `run_experiment`, so in the `default` rows both sides "
                "had libgomp's spinning default):"
                if in_process
                else ":"
            )
        )
        add("")
        _pretrain_table(add, rows)
    if res.get("threads"):
        add("Threads and OpenMP (engine in-process, bert-tiny):")
        add("")
        _threads_table(add, res["threads"], info["cores"])


def _header_section(add, info: dict, command: str, plan: Plan) -> None:
    """The title, how the file was generated, and the machine table."""
    add("# Benchmarks")
    add("")
    add(
        f"Generated by `{command}` (harness: `bench/run.py`; `--quick` = fewer repetitions and steps). "
        "Every comparison ran both sides in that one invocation, each repetition in a fresh child process, "
        "interleaved (A B, then B A, ...); figures are medians, ratios the median of the pairwise ratios "
        "(min-max in brackets). The machine is shared: other jobs load its CPUs at times, so absolute figures "
        "move between invocations; the ratios are what to compare."
    )
    add("")
    add("| machine | |")
    add("|---|---|")
    add(f"| CPU | {info['cpu']}, {info['cores']} cores available, {info['memory_gib']} GiB RAM |")
    add(
        f"| software | Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), transformers {info['transformers']}, {info['os']} |"
    )
    add(f"| date | {info['date']} |")
    add(
        f"| load average at start | {' / '.join(str(x) for x in info['load_avg_at_start'])} (1/5/15 min; {info['cores']} cores) |"
    )
    add(f"| mode | {'quick' if plan.quick else 'full'} |")
    add("")


def _summary_throughput_rows(add, res: dict) -> None:
    """Summary rows: engine / HF Trainer and engine / strongest peer, per model size."""
    for key, label, goal, thr in (
        (
            "tiny",
            "pretraining tokens/s, engine / HF Trainer, bert-tiny (demo preset, seq 128, batch 32)",
            ">= 1.5x",
            1.5,
        ),
        ("base", "pretraining tokens/s, engine / HF Trainer, bert-base (seq 128, batch 8)", ">= 1.1x", 1.1),
    ):
        rows = [r for r in res.get("pretrain", []) if r["size"] == key]
        if rows:
            txt = "; ".join(
                f"{r['ratio']['median']:.2f}x [{r['ratio']['min']:.2f}-{r['ratio']['max']:.2f}] ({r['variant']} OpenMP)"
                for r in rows
            )
            ok = all(r["ratio"]["median"] >= thr for r in rows)
            add(f"| {label} | {goal} | {txt} | {'met' if ok else 'NOT met'} |")
        else:
            add(f"| {label} | {goal} | not run in this invocation | - |")
    for key, label in (("tiny", "bert-tiny (batch 32, seq 128)"), ("base", "bert-base (batch 8, seq 128)")):
        rows = [r for r in res.get("peer", []) if r["size"] == key and not r.get("peer_compile")]
        if rows:
            txt = "; ".join(
                f"{r['precision']}: {r['ratio']['median']:.2f}x [{r['ratio']['min']:.2f}-{r['ratio']['max']:.2f}]"
                for r in rows
            )
            ok = all(r["ratio"]["median"] >= 1.5 for r in rows)
            add(
                f"| pretraining tokens/s, engine / **strongest peer** (Trainer: group_by_length, fused AdamW, same precision), {label} "
                f"| >= 1.5x | {txt} | {'met' if ok else 'NOT met'} |"
            )


def _summary_memory_rows(add, res: dict) -> None:
    """Summary rows of the memory section: peak RSS, its growth, the leak check, the fine-tuning runs."""
    m = res["memory"]["runs"]
    peak = max(x["peak_rss_mb"] for x in m)
    growth = [x["rss_at_epoch_end_mb"][-1][1] - x["rss_at_epoch_end_mb"][0][1] for x in m if x["rss_at_epoch_end_mb"]]
    add(f"| peak RSS of `lmconsole run demo-pretrain` | report | {peak:,.0f} MB | reported |")
    flat = all(abs(g) < 50 for g in growth)
    # the last three epoch ends within 50 MB of each other: the allocator has settled
    settled = all(
        max(v for _, v in x["rss_at_epoch_end_mb"][-3:]) - min(v for _, v in x["rss_at_epoch_end_mb"][-3:]) < 50
        for x in m
        if len(x["rss_at_epoch_end_mb"]) >= 3
    )
    verdict = (
        "no growth"
        if flat
        else ("grows, then levels off" if settled else "grows")
        + (": see the leak check" if "leak_check" in res["memory"] else "")
    )
    add(f"| RSS growth first -> last epoch end | none | {', '.join(f'{g:+.0f} MB' for g in growth)} | {verdict} |")
    if "leak_check" in res["memory"]:
        text, verdict = _leak_verdict(res["memory"]["leak_check"])
        add(f"| leak check (in-process, at each evaluation) | no growth of live objects | {text} | {verdict} |")
    ft = res["memory"].get("finetune")
    if ft:
        g = [
            r["rss_at_epoch_end_mb"][-1][1] - r["rss_at_epoch_end_mb"][0][1]
            for r in ft["runs"].values()
            if r["rss_at_epoch_end_mb"]
        ]
        add(
            f"| peak RSS of `lmconsole run demo-sst2 demo-squad` (one process) | report | {ft['peak_rss_mb']:,.0f} MB | reported |"
        )
        add(
            f"| its RSS growth first -> last epoch end | none | {', '.join(f'{x:+.0f} MB' for x in g)} | {'no growth' if all(abs(x) < 50 for x in g) else 'CHECK'} |"
        )


def _summary_section(add, res: dict, gpu: dict | None) -> None:
    add("## Summary")
    add("")
    add("| figure | goal | measured | status |")
    add("|---|---|---|---|")
    _summary_throughput_rows(add, res)
    if "startup" in res:
        h = res["startup"]["median"]["lmconsole --help"]
        add(
            f"| `lmconsole --help` wall time | <= 0.3 s | {h:.3f} s (bare `python -c pass`: {res['startup']['median']['python -c pass']:.3f} s) | {'met' if h <= 0.3 else 'NOT met'} |"
        )
    if "dataprep" in res:
        r = res["dataprep"]["ratio"]["prepare_split_s"]
        add(
            f"| data preparation (`prepare_split`, train + eval), first / cached | >= 10x | {r['median']:.0f}x [{r['min']:.0f}-{r['max']:.0f}] | {'met' if r['median'] >= 10 else 'NOT met'} |"
        )
    if "memory" in res:
        _summary_memory_rows(add, res)
    if "squad" in res:
        t = res["squad"]["median"]["total"]
        add(
            f"| SQuAD v2 post-processing + scoring, 12,000 questions | <= 20 s | {t:.2f} s | {'met' if t <= 20 else 'NOT met'} |"
        )
    if "console" in res:
        t, t_ok, l_txt, l_ok = _console_rows(res["console"])
        add(f"| training tokens/s in the console (plots live, 80x24) / headless | >= 0.97 | {t} | {t_ok} |")
        add(f"| keypress to updated screen while a job trains, 80x24 | p95 <= 150 ms | {l_txt} | {l_ok} |")
    else:
        add(
            "| console overhead (throughput in the console vs headless, UI latency) | - | not run in this invocation | - |"
        )
    if "store" in res:
        from store_scale import summary_rows

        for row in summary_rows(res["store"]):
            add("| " + " | ".join(row) + " |")
    add(
        f"| GPU: bert-base pretraining tokens/s, MFU, peak memory (`bench/gpu.sh`) | - | {'see the GPU section' if gpu else '**not run yet** (no GPU in this session)'} | - |"
    )
    add("")


def _pretrain_section(add, rows: list) -> None:
    add("## Pretraining throughput: engine vs HF Trainer")
    add("")
    add(
        "Same tokenised NSP pairs (the engine's cached `prepare_split` output of the embedded wikitext-like corpus, "
        "demo-pretrain's tokenizer), same model config (built from the preset), batch size, number of optimizer steps, "
        "seed, learning rate. Measure: real (non-padding) tokens per second over the timed steps, i.e. after the first W "
        "optimizer steps (warm-up, excluded). Engine: `lmconsole -m <temporary manifest> run` (`max_steps = N`, "
        "`logging_steps = W`, `max_eval_samples = 8`; `bench/engine_pretrain.py`), timed from the StepLogged events of "
        "its `events.jsonl`, so the evaluations and checkpoints before and after training fall outside the window. Baseline: "
        "`bench/baseline_trainer.py` (`BertForPreTraining`, `DataCollatorForLanguageModeling`, `Trainer` defaults: "
        "random sampler, fused AdamW, clipping 1.0), tokens counted in the collator, clock read at each `on_step_end`. "
        "Both fp32 on CPU, 2 threads. *OpenMP*: `default` = no OpenMP variable in the environment, so each side runs "
        "as it would for a user (`lmconsole` sets `OMP_WAIT_POLICY=PASSIVE` unless one is set; the plain Trainer script "
        "gets libgomp's spinning default); `passive` = `OMP_WAIT_POLICY=PASSIVE` for both sides: the code alone (see Threads)."
    )
    add("")
    _pretrain_table(add, rows)
    add(
        "Padding = padded positions / all positions of the timed batches (baseline: random batches padded to their "
        "longest row; engine: length-bucketed batches, on CPU cut to their longest row)."
    )
    add("")


def _threads_section(add, t: dict, cores: int) -> None:
    add("## Threads and OpenMP (engine in-process, bert-tiny)")
    add("")
    add(
        "PyTorch's CPU kernels use GNU OpenMP, whose worker threads spin while waiting for work. On a machine "
        "whose cores are also busy with other processes, a spinning thread steals the core its partner needs, and "
        "every small parallel operator stalls (a 32-row gather measured 0.05 ms alone and 15 ms with 2 spinning threads). "
        "`OMP_WAIT_POLICY=PASSIVE` (threads sleep at once), a short spin (`GOMP_SPINCOUNT=1000`) or 1 thread avoids it; "
        "on free cores the default spin is fastest and PASSIVE pays a wake-up per operator. Both variables must be in the "
        "environment before torch is imported. Which setting wins depends on the load at the time: compare runs at similar loads."
    )
    add("")
    _threads_table(add, t, cores)


def _profile_section(add, profile: dict) -> None:
    add("## Where the time goes (one step, phase by phase)")
    add("")
    add(
        "`bench/profile_pretrain.py`: engine step and baseline step alternating in one process, same model config and "
        "batch size (OMP_WAIT_POLICY=PASSIVE, 2 threads). Median milliseconds per optimizer step; then the top operators "
        "by self CPU time over 3 steps (torch.profiler)."
    )
    add("")
    for size, p in profile.items():
        add(f"**{size}** ({p['threads']} threads)")
        add("")
        add("| phase | engine ms | baseline ms |")
        add("|---|---:|---:|")
        for k in ("batch", "forward", "backward", "clip", "optimizer", "total"):
            add(f"| {k} | {p['engine'][k]:.1f} | {p['baseline'][k]:.1f} |")
        add(f"| real tokens per step | {p['engine']['tokens_per_step']:.0f} | {p['baseline']['tokens_per_step']:.0f} |")
        add(f"| tokens/s (this profile) | {p['engine']['tokens_per_s']:.0f} | {p['baseline']['tokens_per_s']:.0f} |")
        add("")
        for side in ("engine", "baseline"):
            if p[side].get("top_ops"):
                ops = ", ".join(f"{n} {f:.0%}" for n, f in p[side]["top_ops"][:6])
                add(f"- {side} top operators: {ops}")
        add("")


def _levers_section(add, levers: dict) -> None:
    add("## Single levers (CPU, A/B in one process)")
    add("")
    add("`bench/levers_cpu.py`, OMP_WAIT_POLICY=PASSIVE, 2 threads; median ms, interleaved.")
    add("")
    add("| model | lever | A | B | B / A time |")
    add("|---|---|---|---|---:|")
    for size, lv in levers.items():
        for key, title in (
            ("collate_ms", "build one training batch"),
            ("optimizer_ms", "one AdamW step"),
            ("step_ms_bf16", "one training step"),
            ("step_ms_compile", "one training step (after compiling)"),
        ):
            if key not in lv:
                continue
            (na, va), (nb, vb), *rest = lv[key].items()
            ma, mb = median(va), median(vb)
            add(f"| {size} | {title} | {na}: {ma:.2f} | {nb}: {mb:.2f} | {mb / ma:.2f} |")
            for nc, vc in rest:
                add(f"| {size} | {title} | {na}: {ma:.2f} | {nc}: {median(vc):.2f} | {median(vc) / ma:.2f} |")
        if "compile_first3_s" in lv:
            c = lv["compile_first3_s"]
            add(
                f"| {size} | first 3 steps (compilation) | "
                + " | ".join(f"{k}: {v:.1f} s" for k, v in c.items())
                + " | - |"
            )
    add("")


def _startup_dataprep_section(add, res: dict) -> None:
    """Start-up and data preparation, or start-up alone when the dataprep section did not run."""
    if "dataprep" in res:
        d = res["dataprep"]
        add("## Start-up and data preparation")
        add("")
        if "startup" in res:
            s = res["startup"]
            add(
                f"`lmconsole --help`: **{s['median']['lmconsole --help']:.3f} s** median wall time of {len(s['runs']['lmconsole --help'])} "
                f"runs (a bare `python -c pass`: {s['median']['python -c pass']:.3f} s), interleaved."
            )
            add("")
        add(
            f"The engine's own data preparation (`bench/prepare_data.py`: `pretrain_tokenizer`, `prepare_split` of train and eval, "
            f"then the lists `run()` builds) for demo-pretrain's data ({d['pairs']:,} training pairs, {d['tokens']:,} tokens), "
            f"in a child on an empty `LMCONSOLE_CACHE` and `HF_DATASETS_CACHE`, then again on the filled cache "
            f"(cache hits in the cached runs: {d['cache_hits_cached']}); {len(d['rows']['cold'])} pairs of runs."
        )
        add("")
        add("| stage | first run s | cached s | first / cached |")
        add("|---|---:|---:|---:|")
        for k, label in (
            (
                "tokenizer_s",
                "tokenizer (WordPiece trained, then cached; includes importing transformers' tokenizer code, about 0.3-0.7 s)",
            ),
            ("prepare_train_s", "prepare_split train"),
            ("prepare_eval_s", "prepare_split eval (masked once)"),
            ("prepare_split_s", "**prepare_split, both**"),
            ("to_lists_s", "columns to lists"),
            ("data_total_s", "data phase total"),
            ("wall_s", "whole child process"),
        ):
            m, r = d["median"][k], d["ratio"][k]
            add(f"| {label} | {m['cold']:.3f} | {m['cached']:.3f} | {r['median']:.1f}x |")
        add("")
    elif "startup" in res:
        s = res["startup"]
        add("## Start-up")
        add("")
        add(
            f"`lmconsole --help`: **{s['median']['lmconsole --help']:.3f} s** median (bare python: {s['median']['python -c pass']:.3f} s)."
        )
        add("")


def _memory_section(add, m: dict, quick: bool) -> None:
    add("## Memory: the demo pipeline")
    add("")
    if m.get("provenance"):
        add(
            f"Measured by `{m['provenance']['command']}` ({m['provenance']['date']}; 1-min load average at its start "
            f"{m['provenance']['load']}), folded in with `--merge-json`."
        )
        add("")
    add(
        f"`lmconsole -m <copy of experiments.toml with a temporary runs_dir> run demo-pretrain` "
        f"({m['epochs']} epoch(s){'; quick mode: fewer than the demo' if quick else ''}), twice on one empty "
        f"`LMCONSOLE_CACHE`; OpenMP variables as inherited ({m['env'] or 'none set, so lmconsole sets OMP_WAIT_POLICY=PASSIVE'}). Peak RSS = the child's "
        "`ru_maxrss` (os.wait4). RSS at each epoch end = `StepLogged.memory_mb` (current RSS on CPU) of the last step of each epoch."
    )
    add("")
    add("| run | wall s | peak RSS MB | start -> first eval s | RSS at epoch ends MB | MLM perplexity by epoch |")
    add("|---|---:|---:|---:|---|---|")
    for r in m["runs"]:
        ends = ", ".join(f"{mb:.0f}" for _, mb in r["rss_at_epoch_end_mb"])
        ppl = ", ".join(f"{p:.0f}" for p in r["ppl"] if p is not None)
        add(
            f"| {r['label']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:,.0f} | {r['to_first_eval_s']:.1f} | {ends} | {ppl} |"
        )
    add("")
    add(
        f"For scale: a process that only imports torch, transformers, datasets, tokenizers and the engine's pretraining "
        f"task peaks at {m['import_floor_rss_mb']:,.0f} MB; the rest is the model, optimizer state, activations and data."
    )
    add("")
    lc = m.get("leak_check")
    if lc:
        add(
            "Leak check: `bench/memory_epochs.py` runs demo-pretrain again in one process and, at each evaluation "
            "(after `gc.collect()`), counts live torch tensors and GC-tracked Python objects and reads RSS before and after "
            "glibc's `malloc_trim(0)` (which returns the allocator's free pages to the OS). Growing tensors or objects would "
            "be a leak (logits, events, plot data); RSS growth that the trim removes is the allocator keeping freed "
            "activations of varying shapes (length-bucketed batches), not live data."
        )
        add("")
        add("| epoch | RSS MB | RSS after malloc_trim MB | live tensors | tensor storage MB | Python objects |")
        add("|---:|---:|---:|---:|---:|---:|")
        for r in lc["epochs"]:
            after = f"{r['rss_after_trim_mb']:.0f}" if "rss_after_trim_mb" in r else "n/a"
            add(
                f"| {r['epoch']} | {r['rss_mb']:.0f} | {after} | {r['live_tensors']} | {r['tensor_mb']:.1f} | {r['gc_objects']:,} |"
            )
        add("")
    ft = m.get("finetune")
    if ft:
        add(
            f"Then the rest of the pipeline, `lmconsole run demo-sst2 demo-squad` in one process (from that demo-pretrain run): "
            f"{ft['wall_s']:.0f} s, peak RSS **{ft['peak_rss_mb']:,.0f} MB**. RSS at each epoch end (MB): "
            + "; ".join(
                f"{name} ({r['epochs']} epochs) " + ", ".join(f"{mb:.0f}" for _, mb in r["rss_at_epoch_end_mb"])
                for name, r in ft["runs"].items()
            )
            + "."
        )
        add("")


def _squad_section(add, s: dict) -> None:
    add("## SQuAD v2 post-processing")
    add("")
    add(f"`python bench/squad_postprocess.py` ({s['data'].split('[')[0].strip()}); median of {len(s['runs'])} run(s).")
    add("")
    add("| stage | s |")
    add("|---|---:|")
    for k, v in s["median"].items():
        add(f"| {k} | {v:.2f} |")
    add("")


def _gpu_section(add, gpu: dict | None) -> None:
    """The GPU table from bench/gpu.sh's JSON, or what it would measure; then what is not measured yet."""
    add("## GPU")
    add("")
    if gpu:
        info_g = gpu["info"]
        add(
            f"`bash bench/gpu.sh` on {info_g['device']} (torch {info_g['torch']}, transformers {info_g['transformers']}): bert-base "
            f"({info_g['params']:,} parameters with the pretraining heads), batch {info_g['batch_size']} x seq {info_g['seq']}, synthetic "
            f"full-length pairs, median of {info_g['rounds']} rounds of {info_g['steps']} steps after {info_g['warmup_steps']} warm-up. "
            "MFU = model FLOPs per step (see `bench/gpu_pretrain.py`: 6 x tokens x encoder matmul parameters + 12 x tokens x layers x "
            "seq x hidden for attention + the MLM head at masked positions + pooler/NSP) / step time / 989 TFLOP/s (H200 bf16 dense)."
        )
        add("")
        add("| config | tokens/s | ms/step | model TFLOP/s | MFU | peak GiB | vs all levers |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        ref = gpu["rows"][0]["tokens_per_s"]
        for r in gpu["rows"]:
            peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "n/a"
            add(
                f"| {r['config']} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.1f} | {r['model_tflops']:.1f} | {r['mfu']:.1%} | {peak} | {r['tokens_per_s'] / ref:.2f}x |"
            )
    else:
        add(
            "**Not run yet** (no GPU in the session that produced this file). `bash bench/gpu.sh` (one prepared command, "
            "a few minutes on an H200; `bash bench/gpu.sh --dry-run` checks it on a CPU) measures bert-base pretraining at "
            "seq 128: tokens/s, MFU (model FLOPs = 6 x tokens x encoder matmul parameters + attention 12 x tokens x layers x "
            "seq x hidden + MLM head at masked positions + pooler/NSP; peak 989 TFLOP/s, H200 bf16 dense) and peak memory, "
            "with all levers and with each one off: bf16 autocast, TF32, SDPA attention, fused AdamW, masked-only logits, sync-free masked positions. "
            "Fold its JSON in without re-measuring the CPU figures: `python bench/run.py --from-json bench/results/<run>.json "
            "--gpu-json bench/out/gpu_pretrain.json` (see bench/README.md)."
        )
    add("")
    if not gpu:
        add("## Not measured yet")
        add("")
        add("| figure | why |")
        add("|---|---|")
        add("| everything on a GPU (`bench/gpu.sh`) | no GPU in this session |")
        add("")


def render(info: dict, res: dict, command: str, plan: Plan, gpu: dict | None, history: list | None = None) -> str:
    L: list[str] = []
    add = L.append
    _header_section(add, info, command, plan)
    _summary_section(add, res, gpu)
    if res.get("pretrain"):
        _pretrain_section(add, res["pretrain"])
    if res.get("peer"):
        _peer_section(add, res["peer"])
    if "threads" in res:
        _threads_section(add, res["threads"], info["cores"])
    if res.get("profile"):
        _profile_section(add, res["profile"])
    if res.get("levers"):
        _levers_section(add, res["levers"])
    _startup_dataprep_section(add, res)
    if "memory" in res:
        _memory_section(add, res["memory"], plan.quick)
    if "squad" in res:
        _squad_section(add, res["squad"])
    if "console" in res:
        _console_section(add, res["console"])

    if "store" in res:
        from store_scale import render_section

        render_section(add, res["store"])

    for saved in history or []:
        _render_history(add, saved)
    _gpu_section(add, gpu)
    return "\n".join(L)


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
    text = render(saved["machine"], saved["results"], saved.get("command", command), plan, gpu, history)
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
    text = render(info, res, command, plan, gpu, history)
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
