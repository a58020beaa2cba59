"""Manifests for tests: the tiny pretrain -> classify -> qa pipeline, TOML builders, and the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.fakes import write_manifest  # noqa: F401 - the one manifest writer, for tests that import it from here

REPO = Path(__file__).resolve().parents[2]


def run_cli(path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """``lmconsole --manifest path args`` in a subprocess started from the repository, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tui.entry", "--manifest", str(path), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=REPO,
        **kwargs,
    )


def start_cli(path, *args: str) -> subprocess.Popen:
    """``lmconsole --manifest path args`` started in the background, offline; stdout dropped, stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "tui.entry", "--manifest", str(path), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        cwd=REPO,
    )


# -- the tiny pipeline manifest: pretrain -> classify -> qa on bert-micro -------------------------
# Each test file takes these three experiments and changes the few keys it needs.

PRETRAIN = {
    "name": "pre",
    "task": "pretrain",
    "model": "bert-micro",
    "tokenizer": "train",
    "vocab_size": 2000,
    "dataset": "embedded:wikitext",
    "dataset_config": "wikitext-2-raw-v1",
    "eval_split": "test",
    "epochs": 1,
    "batch_size": 16,
    "max_seq_length": 64,
    "max_train_samples": 64,
    "max_eval_samples": 16,
    "logging_steps": 2,
}
CLASSIFY = {
    "name": "cls",
    "task": "classify",
    "model": "run:pre",
    "dataset": "embedded:sst2",
    "dataset_config": "sst2",
    "text_column": "sentence",
    "eval_split": "test",
    "epochs": 1,
    "batch_size": 16,
    "max_seq_length": 32,
    "max_train_samples": 96,
    "max_eval_samples": 40,
    "logging_steps": 2,
}
QA = {
    "name": "qa",
    "task": "qa",
    "model": "run:pre",
    "dataset": "embedded:squad_v2",
    "dataset_config": "squad_v2",
    "epochs": 1,
    "batch_size": 16,
    "max_seq_length": 96,
    "doc_stride": 32,
    "max_train_samples": 64,
    "max_eval_samples": 24,
    "logging_steps": 2,
}


def toml_value(value) -> str:
    """``value`` as a TOML value: booleans, numbers, lists, and strings (or paths) as basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def experiment(base: dict | None = None, /, extra: str = "", **keys) -> str:
    """One ``[[experiment]]`` table, one ``key = value`` line per key: ``base`` with ``keys`` changed or
    added (``None`` removes a key), then ``extra`` TOML lines, each replacing the line of its key or added."""
    lines = {
        key: f"{key} = {toml_value(value)}" for key, value in {**(base or {}), **keys}.items() if value is not None
    }
    for line in filter(None, extra.splitlines()):
        lines[line.split("=")[0].strip()] = line
    return "[[experiment]]\n" + "\n".join(lines.values()) + "\n"


def manifest_text(runs, *experiments: str, **settings) -> str:
    """A manifest: ``[settings]`` with ``runs_dir = runs`` and ``settings``, then the experiments."""
    head = "".join(f"{key} = {toml_value(value)}\n" for key, value in {"runs_dir": runs, **settings}.items())
    return "[settings]\n" + head + "".join("\n" + text for text in experiments)
