"""Pretraining data preparation at scale: the engine against HF ``run_mlm.py``'s preprocessing.

    python bench/prepare_scale.py [--sizes 20,200,1000] [--num-proc 2] [--root DIR] [--json OUT] [--md OUT]

For each size N: a local Hub-layout folder whose train split is the embedded wikitext corpus
repeated N times (validation and test once), and one WordPiece tokenizer (demo-pretrain's,
trained on the embedded corpus once, saved and loaded by both sides). Each side runs in its own
child process on the train split, after a warm-up child has converted the parquet files to
Arrow (so neither side's time includes that conversion, which is the same work for both):

- **engine**: ``prepare_split`` (tokenise, NSP pairs, the cached Arrow file), ``num_proc`` = N proc.
- **run_mlm**: the preprocessing of transformers' ``examples/pytorch/language-modeling/run_mlm.py``
  (default path, not ``--line_by_line``): ``tokenize_function`` = ``tokenizer(text,
  return_special_tokens_mask=True)`` and ``group_texts`` (concatenate, cut into blocks of
  ``max_seq_length`` = 128), each a ``datasets.map(batched=True, num_proc=N)`` with
  ``remove_columns`` and cache files, as the script does (``load_from_cache_file=False``: the
  cache is fresh, as on a first run). MLM only: no sentence pairs.

Measured: wall time of the preprocessing, and the process tree's memory sampled every 0.1 s
(the child and its workers) from its start until the child says preparation is over (counting
the result's tokens afterwards reads the whole memory-mapped file, which is not preparation):
PSS summed (proportional set size: a page shared by forked workers counts once in all, where
summed RSS would count it in each), USS summed (pages of one process alone) and the largest
single RSS. Mapped Arrow files count as they are read
(page cache, which the kernel can take back). Both sides import transformers (about 0.5 GB
of the figures at any size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OFFLINE_ENV, REPO, machine_info  # noqa: E402

CONFIG = "wikitext-2-raw-v1"
MAX_SEQ = 128


# -- setup ------------------------------------------------------------------------------------


def make_tokenizer(root: Path) -> Path:
    """demo-pretrain's WordPiece tokenizer (trained on the embedded corpus), saved to ``root/tokenizer``."""
    import types

    from engine.manifest import load
    from engine.tasks.common import data_inputs
    from engine.tasks.pretrain import pretrain_tokenizer

    out = root / "tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    manifest = load(REPO / "experiments.toml")
    exp = manifest.get("demo-pretrain")
    ctx = types.SimpleNamespace(exp=exp, manifest=manifest, log=lambda *a, **k: None, emit=lambda e: None)
    pretrain_tokenizer(ctx, data_inputs(ctx)).save_pretrained(str(out))
    return out


def make_corpus(root: Path, factor: int) -> Path:
    """A Hub-layout folder: the embedded wikitext train split repeated ``factor`` times (row group by row group)."""
    import pyarrow.parquet as pq

    from engine.data.embedded import ensure_embedded

    src = ensure_embedded("wikitext")
    folder = root / f"wikitext-{factor}x"
    if (folder / "README.md").exists():
        return folder
    (folder / CONFIG).mkdir(parents=True, exist_ok=True)
    for split in ("validation", "test"):
        shutil.copy(src / CONFIG / f"{split}-00000-of-00001.parquet", folder / CONFIG)
    table = pq.read_table(src / CONFIG / "train-00000-of-00001.parquet")
    with pq.ParquetWriter(folder / CONFIG / "train-00000-of-00001.parquet", table.schema) as w:
        for _ in range(factor):
            w.write_table(table)
    shutil.copy(src / "README.md", folder / "README.md")
    return folder


# -- the two sides, each in a child (``--child``) -------------------------------------------------


def child_engine(folder: str, tokenizer: str, num_proc: int) -> dict:
    import dataclasses
    import types

    import pyarrow.compute as pc
    from transformers import AutoTokenizer

    from engine.manifest import load
    from engine.models.presets import cache_root
    from engine.tasks.common import data_inputs
    from engine.tasks.pretrain import prepare_split

    manifest = load(REPO / "experiments.toml")
    exp = dataclasses.replace(
        manifest.get("demo-pretrain"), dataset=folder, dataset_config=CONFIG, num_proc=num_proc, max_seq_length=MAX_SEQ
    )
    logs: list[str] = []
    ctx = types.SimpleNamespace(
        exp=exp, manifest=manifest, log=lambda m, level="info": logs.append(m), emit=lambda e: None
    )
    inputs = data_inputs(ctx)
    tok = AutoTokenizer.from_pretrained(tokenizer)
    t0 = time.perf_counter()
    lines = inputs.split("train")
    t1 = time.perf_counter()
    ds = prepare_split(ctx, tok, "train", exp.seed, mask=False, inputs=inputs)
    t2 = time.perf_counter()
    _prepared()
    tokens = pc.sum(pc.list_value_length(ds.with_format("arrow")[:]["input_ids"])).as_py()
    shutil.rmtree(cache_root() / "pretrain-data", ignore_errors=True)
    return {"load_s": t1 - t0, "prep_s": t2 - t1, "lines": len(lines), "rows": len(ds), "tokens": tokens, "logs": logs}


def child_run_mlm(folder: str, tokenizer: str, num_proc: int) -> dict:
    """run_mlm.py's preprocessing, as the script writes it (default path: tokenise every line, group_texts)."""
    from itertools import chain

    import pyarrow.compute as pc
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    t0 = time.perf_counter()
    raw = load_dataset(folder, CONFIG, split="train")
    t1 = time.perf_counter()
    column_names = list(raw.features)
    text_column_name = "text" if "text" in column_names else column_names[0]
    max_seq_length = MAX_SEQ

    def tokenize_function(examples):
        return tok(examples[text_column_name], return_special_tokens_mask=True)

    tokenized = raw.map(
        tokenize_function,
        batched=True,
        num_proc=num_proc,
        remove_columns=column_names,
        load_from_cache_file=False,
        desc="Running tokenizer on every text in dataset",
    )

    def group_texts(examples):
        concatenated_examples = {k: list(chain(*examples[k])) for k in examples}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        total_length = (total_length // max_seq_length) * max_seq_length
        return {
            k: [t[i : i + max_seq_length] for i in range(0, total_length, max_seq_length)]
            for k, t in concatenated_examples.items()
        }

    grouped = tokenized.map(
        group_texts,
        batched=True,
        num_proc=num_proc,
        load_from_cache_file=False,
        desc=f"Grouping texts in chunks of {max_seq_length}",
    )
    t2 = time.perf_counter()
    _prepared()
    tokens = pc.sum(pc.list_value_length(grouped.with_format("arrow")[:]["input_ids"])).as_py()
    for ds in (tokenized, grouped):
        ds.cleanup_cache_files()
    return {"load_s": t1 - t0, "prep_s": t2 - t1, "lines": len(raw), "rows": len(grouped), "tokens": tokens}


def _prepared() -> None:
    """Tell the measuring parent that preparation is over: what follows (counting the tokens, which reads
    the whole memory-mapped result) is not part of its peak memory."""
    marker = os.environ.get("PREPARE_SCALE_DONE")
    if marker:
        Path(marker).touch()


def child_warm(folder: str) -> dict:
    """Convert the folder's parquet to Arrow once for each side's loader (the engine keys its own cache)."""
    from datasets import load_dataset

    from engine.hub.resolve import load_dataset_split

    t0 = time.perf_counter()
    n = len(load_dataset_split(folder, CONFIG, "train"))
    load_dataset(folder, CONFIG, split="train")
    return {"lines": n, "warm_s": time.perf_counter() - t0}


# -- measuring a child ----------------------------------------------------------------------------


def measure(args: list[str], env: dict) -> dict:
    """Run ``this script --child ...``; its JSON result plus wall time and the tree's peak memory (MB)."""
    import psutil

    marker = Path(tempfile.mkdtemp(prefix="prepare-scale-")) / "prepared"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        env={**env, "PREPARE_SCALE_DONE": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    root = psutil.Process(proc.pid)
    peak_pss = peak_uss = peak_one = after_pss = 0
    while proc.poll() is None:
        prepared = marker.exists()  # read before sampling: a sample taken once it exists may be after
        pss = uss = one = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                m = p.memory_full_info()
            except psutil.Error:
                continue
            pss += m.pss
            uss += m.uss
            one = max(one, m.rss)
        if prepared:
            after_pss = max(after_pss, pss)
        else:
            peak_pss, peak_uss, peak_one = max(peak_pss, pss), max(peak_uss, uss), max(peak_one, one)
        time.sleep(0.1)
    out = proc.stdout.read() if proc.stdout else ""
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"child {args} failed with {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res.update(wall_s=wall, peak_pss_mb=peak_pss / 2**20, peak_uss_mb=peak_uss / 2**20, peak_one_mb=peak_one / 2**20)
    res["after_prep_pss_mb"] = after_pss / 2**20  # counting the tokens: not preparation (see _prepared)
    shutil.rmtree(marker.parent, ignore_errors=True)
    return res


def run(sizes: list[int], num_proc: int, root: Path, partial: Path | None = None) -> dict:
    env = {**os.environ, **OFFLINE_ENV, "LMCONSOLE_CACHE": str(root / "cache"), "HF_DATASETS_CACHE": str(root / "hf")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    os.environ.update({k: env[k] for k in ("LMCONSOLE_CACHE", "HF_DATASETS_CACHE")})
    tokenizer = make_tokenizer(root)
    out: dict = {"machine": machine_info(), "num_proc": num_proc, "sizes": {}, "started": time.time()}
    for n in sizes:
        folder = make_corpus(root, n)
        warm = measure(["warm", str(folder)], env)
        row = {"warm": warm, "load_before": os.getloadavg()}
        for side in ("engine", "run_mlm"):
            row[side] = measure([side, str(folder), str(tokenizer), str(num_proc)], env)
            print(f"{n}x {side}: {row[side]['prep_s']:.1f}s, peak PSS {row[side]['peak_pss_mb']:.0f} MB", flush=True)
        row["load_after"] = os.getloadavg()
        out["sizes"][str(n)] = row
        if partial:
            partial.write_text(json.dumps(out, indent=1))  # what is done so far survives a stop
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(root / "hf", ignore_errors=True)  # the Arrow conversions of this size
    out["finished"] = time.time()
    return out


def markdown(res: dict) -> str:
    lines = [
        "| corpus | lines | tokens | engine | run_mlm | run_mlm / engine (time) | engine peak PSS | "
        "run_mlm peak PSS | run_mlm / engine (PSS) | load (1 min) before / after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, row in res["sizes"].items():
        e, r = row["engine"], row["run_mlm"]
        lines.append(
            f"| {n}x | {e['lines']:,} | {e['tokens'] / 1e6:.1f} M | {e['prep_s']:.1f} s | {r['prep_s']:.1f} s | "
            f"{r['prep_s'] / e['prep_s']:.2f}x | {e['peak_pss_mb'] / 1024:.2f} GB | {r['peak_pss_mb'] / 1024:.2f} GB | "
            f"{r['peak_pss_mb'] / e['peak_pss_mb']:.2f}x | {row['load_before'][0]:.1f} / {row['load_after'][0]:.1f} |"
        )
    return "\n".join(lines)


def render_section(add, res: dict) -> None:
    """BENCHMARKS.md's section (``bench/render.py`` calls it with the figures of :func:`run`)."""
    import datetime

    when = datetime.datetime.fromtimestamp(res["started"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    m = res["machine"]
    add("## Data preparation at scale: engine vs run_mlm's preprocessing")
    add("")
    add(
        f"`python bench/prepare_scale.py --sizes {','.join(res['sizes'])} --num-proc {res['num_proc']}`, {when}, "
        f"{m.get('cpu', '')} ({m.get('cores', '?')} cores), load average {m.get('load_avg_at_start', ['?'])[0]} at "
        "the start. The train split of the embedded wikitext corpus repeated N times (200x is about a quarter of "
        "wikitext-103), demo-pretrain's tokenizer, sequence length 128, both sides with the same `num_proc`. "
        "engine = `prepare_split` (tokenise, NSP pairs, the cached Arrow file); run_mlm = the preprocessing of "
        "transformers' `run_mlm.py` as written (tokenise every line with the special-tokens mask, `group_texts` "
        "into blocks of 128; MLM only, no sentence pairs), each a `datasets.map` with `num_proc` and cache files. "
        "Time excludes loading the parquet (converted to Arrow by a warm-up child first, the same work for both). "
        "PSS: the process tree's proportional set size, sampled every 0.1 s from the child's start until the end of "
        "its preparation (shared pages of forked workers count once); both sides import transformers (about 0.4 GB "
        "of it)."
    )
    add("")
    add(markdown(res))
    add("")
    if set(res["sizes"]) != {"20", "200", "1000"}:
        add(f"Sizes measured: {', '.join(res['sizes'])}x only.")
        add("")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs="+")
    p.add_argument("--sizes", default="20,200,1000")
    p.add_argument("--num-proc", type=int, default=2)
    p.add_argument("--root")
    p.add_argument("--json")
    p.add_argument("--md")
    a = p.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        fn = {"engine": child_engine, "run_mlm": child_run_mlm, "warm": child_warm}[kind]
        print(json.dumps(fn(rest[0], *rest[1:2], *(int(x) for x in rest[2:3]))))
        return 0
    root = Path(a.root) if a.root else Path(tempfile.mkdtemp(prefix="prep-scale-"))
    res = run([int(s) for s in a.sizes.split(",")], a.num_proc, root, Path(a.json) if a.json else None)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    text = markdown(res)
    if a.md:
        Path(a.md).write_text(text + "\n")
    print(text)
    if not a.root:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
