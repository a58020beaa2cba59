"""Fault-injection harness: kills at random write points, corrupted run and cache files.

Each kill case forks the test process; the child runs the job and SIGKILLs itself
(no ``finally``, no flush: a real kill) just before its k-th write into the runs
directory (an ``open`` for writing, ``os.replace``, ``shutil.rmtree``, ``torch.save``
or a safetensors save). The parent then resumes the run in-process and compares it
with an uninterrupted run of the same manifest: final results, per-epoch table,
predictions, steps. A few kill points run per CI run; ``LMCONSOLE_FAULTS=N`` runs N
per task shape (pretrain, classify, qa). Kill points are drawn half from the final
save (the last checkpoint and the final model) and half from every write.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import random
import shutil
import signal
from pathlib import Path

import pytest

from engine.jobs import run_experiment
from engine.manifest import parse_text
from engine.runs import RunStore, read_events

N_FAULTS = int(os.environ.get("LMCONSOLE_FAULTS", "0") or 0)
SEED = int(os.environ.get("LMCONSOLE_FAULTS_SEED", "0") or 0) or random.randrange(1, 10**6)

SHAPES = {
    "pretrain": '''
name = "job"
task = "pretrain"
model = "bert-micro"
tokenizer = "train"
vocab_size = 2000
dataset = "embedded:wikitext"
dataset_config = "wikitext-2-raw-v1"
eval_split = "test"
epochs = 2
batch_size = 16
max_seq_length = 64
learning_rate = 1e-3
logging_steps = 3
max_train_samples = 64
max_eval_samples = 16
seed = 5
''',
    "classify": '''
name = "job"
task = "classify"
model = "bert-micro"
tokenizer = "train"
vocab_size = 2000
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
eval_split = "test"
epochs = 2
batch_size = 16
max_seq_length = 32
learning_rate = 1e-3
max_train_samples = 64
max_eval_samples = 24
logging_steps = 3
''',
    "qa": '''
name = "job"
task = "qa"
model = "bert-micro"
tokenizer = "train"
vocab_size = 2000
dataset = "embedded:squad_v2"
dataset_config = "squad_v2"
epochs = 2
batch_size = 16
max_seq_length = 96
doc_stride = 32
learning_rate = 1e-3
max_train_samples = 48
max_eval_samples = 16
logging_steps = 3
''',
}
PREDICTION_FILES = {"pretrain": (), "classify": ("predictions.jsonl",), "qa": ("predictions.json", "na_scores.json", "nbest.json")}


def shape_manifest(folder: Path, shape: str, runs: str = "runs", extra: str = ""):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiments.toml"
    path.write_text(f'[settings]\nruns_dir = "{folder / runs}"\n\n[[experiment]]\n{SHAPES[shape]}{extra}\n')
    return parse_text(path.read_text(), path)


# -- write-point hooks ------------------------------------------------------------------

class WriteHooks:
    """Counts (and optionally dies at) writes whose path lies under ``root``."""

    def __init__(self, root: Path, kill_at: int | None = None):
        self.root = str(Path(root).resolve())
        self.kill_at = kill_at
        self.ops: list[str] = []
        self._saved = []

    def _hit(self, kind: str, path) -> None:
        try:
            p = str(Path(os.fspath(path)).resolve())
        except (TypeError, OSError):
            return
        if not p.startswith(self.root):
            return
        self.ops.append(f"{kind} {p[len(self.root):]}")
        if self.kill_at is not None and len(self.ops) >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def _wrap(self, owner, attr: str, kind: str, path_of):
        real = getattr(owner, attr)

        def hooked(*a, **k):
            path = path_of(a, k)
            if path is not None:
                self._hit(kind, path)
            return real(*a, **k)

        self._saved.append((owner, attr, real))
        setattr(owner, attr, hooked)

    def install(self) -> "WriteHooks":
        import safetensors.torch
        import torch

        def open_path(a, k):
            mode = a[1] if len(a) > 1 else k.get("mode", "r")
            return a[0] if isinstance(a[0], (str, os.PathLike)) and any(c in mode for c in "wax+") else None

        self._wrap(builtins, "open", "open", open_path)
        self._wrap(os, "replace", "replace", lambda a, k: a[0])
        self._wrap(shutil, "rmtree", "rmtree", lambda a, k: a[0])
        self._wrap(torch, "save", "torch.save", lambda a, k: a[1] if isinstance(a[1], (str, os.PathLike)) else None)
        self._wrap(safetensors.torch, "save_model", "save_model", lambda a, k: a[1])
        self._wrap(safetensors.torch, "save_file", "save_file", lambda a, k: a[1] if len(a) > 1 else k.get("filename"))
        return self

    def remove(self) -> None:
        for owner, attr, real in reversed(self._saved):
            setattr(owner, attr, real)
        self._saved.clear()


def killed_child(m, kill_at: int | None = None, hooks_root: Path | None = None, action=None) -> int:
    """Fork; the child runs the job (dying at write ``kill_at``) or ``action``; returns the wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            if kill_at is not None:
                WriteHooks(hooks_root or m.runs_dir, kill_at).install()
            if action is not None:
                action()
            else:
                run_experiment(m, "job")
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


# -- comparisons -----------------------------------------------------------------------------

def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_as(run, ref, shape: str, where: str = "") -> None:
    st = run.status()
    assert st["status"] == "finished", (where, st)
    got, want = run.results(), ref.results()
    assert got["global_step"] == want["global_step"], where
    assert got["final"].keys() == want["final"].keys(), (where, sorted(set(want["final"]) ^ set(got["final"])))
    assert _close(got["final"], want["final"]), (where, got["final"], want["final"])
    t_got, t_want = run.read_table("epochs"), ref.read_table("epochs")
    cols = [c for c in t_want.columns if c != "elapsed_s"]
    for c in cols:
        assert _close(t_got.column(c), t_want.column(c)), (where, c, t_got.column(c), t_want.column(c))
    for name in PREDICTION_FILES[shape]:
        a, b = (run.path / name).read_text(), (ref.path / name).read_text()
        if name.endswith(".jsonl"):
            la = [json.loads(x) for x in a.splitlines()]
            lb = [json.loads(x) for x in b.splitlines()]
        else:
            la, lb = json.loads(a), json.loads(b)
        assert la and _close(la, lb), (where, name)
    assert run.final_model() is not None, where
    rows, _ = read_events(run.events_path)
    steps = [r["step"] for r in rows if r.get("event") == "StepLogged"]
    assert steps == sorted(set(steps)), (where, "duplicate steps", steps)
    leftovers = [p.name for p in run.path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, (where, leftovers)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """One uninterrupted run per shape, with the writes it makes into its runs directory."""
    out = {}
    for shape in SHAPES:
        folder = tmp_path_factory.mktemp(f"ref-{shape}")
        m = shape_manifest(folder, shape)
        run_experiment(m, "job")  # warms the caches: the counted run below writes its run directory only
        m = shape_manifest(folder, shape, runs="runs2")
        hooks = WriteHooks(m.runs_dir).install()
        try:
            run = run_experiment(m, "job")
        finally:
            hooks.remove()
        assert run.status()["status"] == "finished"
        out[shape] = (run, hooks.ops)
    return out


def _final_save_start(ops: list[str], run) -> int:
    """Index (1-based) of the first write of the last checkpoint: the final save starts there."""
    step = run.results()["global_step"]
    return next(i for i, op in enumerate(ops, 1) if f".tmp-step-{step:08d}" in op)


def _kill_points(ops: list[str], run, n: int, rng: random.Random) -> list[int]:
    start = _final_save_start(ops, run)
    final = [rng.randint(start, len(ops)) for _ in range((n + 1) // 2)]
    anywhere = [rng.randint(1, len(ops)) for _ in range(n // 2)]
    return final + anywhere


def _resume(m):
    store = RunStore(m.runs_dir)
    run = store.latest("job")
    assert run is not None
    assert run.status()["status"] == "interrupted", run.status()
    return run_experiment(m, "job", resume=run, store=store)


# -- point 1: a kill while the final model is saved -------------------------------------------

@pytest.mark.parametrize("shape", list(SHAPES))
def test_kill_while_saving_final_model_resumes_to_identical_results(shape, references, tmp_path):
    """The issue's repro: SIGKILL while ``.model.tmp`` exists, then ``--resume``."""
    ref, ops = references[shape]
    k = next(i for i, op in enumerate(ops, 1) if op.startswith("replace") and ".model.tmp" in op)
    m = shape_manifest(tmp_path, shape)
    status = killed_child(m, kill_at=k)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    run = RunStore(m.runs_dir).latest("job")
    assert (run.path / ".model.tmp").is_dir()
    resumed = _resume(m)
    assert_same_as(resumed, ref, shape, f"kill at write {k}: {ops[k - 1]}")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_random_kill_points_resume_to_identical_results(shape, references, tmp_path):
    """Random kill points (final save and anywhere); LMCONSOLE_FAULTS=N for N per shape."""
    ref, ops = references[shape]
    rng = random.Random(f"{SEED}-{shape}")
    points = _kill_points(ops, ref, max(N_FAULTS, 1), rng)
    for i, k in enumerate(points):
        m = shape_manifest(tmp_path / f"case{i}", shape)
        status = killed_child(m, kill_at=k)
        where = f"seed {SEED} (LMCONSOLE_FAULTS_SEED), kill at write {k}/{len(ops)}: {ops[k - 1]}"
        assert os.WIFSIGNALED(status), where
        resumed = _resume(m)
        # a second resume of a finished run must not be needed: one resume ends it
        assert_same_as(resumed, ref, shape, where)
