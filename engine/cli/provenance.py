"""Runs as the source of new runs: ``rerun`` one exactly, ``diff`` two, ``clone`` one into the manifest.

All three read a run's ``config.json`` (what the experiment was when it ran, seed included) and
the files :mod:`engine.job.environment` recorded at its start, never the manifest's current
version of the experiment.

- ``rerun RUN``: a manifest of that one experiment is written under ``<runs>/.reruns/`` (the
  current manifest's settings, the run's config; a ``run:`` model replaced by the model folder of
  the exact run it started from) and run from there, in the foreground or, with ``--detach``, through the queue.
  Its first line names the original; the new run's ``environment.json`` carries it as ``rerun_of``.
- ``diff A B``: config, code, data, environment and package differences, one aligned line each.
- ``clone RUN NAME``: a new ``[[experiment]]`` appended to the manifest with tomlkit (comments and
  layout kept), validated before the file is replaced.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.cli.refs import as_user_error, get_run
from engine.errors import UserError

RERUN_MARK = "# lmconsole: rerun of "  # = engine.job.environment.RERUN_MARK (not imported: --help stays fast)
_WIDTH = 44  # a value wider than this is cut in the diff's columns


def experiment_keys(config: dict, name: str, pin_model: str = "") -> dict:
    """The manifest keys of a run's ``config.json``: values that differ from the defaults, its one seed."""
    from engine.manifest import EXPERIMENT_KEYS

    out: dict = {"name": name, "task": config.get("task")}
    for key, value in config.items():
        if key in ("name", "task", "seeds") or key.startswith("_") or key not in EXPERIMENT_KEYS or value is None:
            continue
        if key == "seed" or value != EXPERIMENT_KEYS[key].default:
            out[key] = list(value) if isinstance(value, tuple) else value
    if pin_model:
        out["model"] = pin_model
        out.pop("depends_on", None)
    return out


def _read_config(run) -> dict:
    with as_user_error():
        config = run.config()
    if not isinstance(config, dict) or not config.get("task"):
        raise UserError(f"{run.path}: config.json is missing or unreadable; this run cannot be reproduced")
    return config


def _manifest_text(settings_text: str, keys: dict, header: str = "") -> str:
    import tomlkit

    doc = tomlkit.parse(settings_text)
    for key in [k for k in doc if k != "settings"]:
        del doc[key]
    table = tomlkit.table()
    for key, value in keys.items():
        table[key] = value
    aot = tomlkit.aot()
    aot.append(table)
    doc["experiment"] = aot
    return header + tomlkit.dumps(doc)


def _validate(text: str, path: Path) -> None:
    from engine.errors import ManifestError
    from engine.manifest import parse_text

    try:
        parse_text(text, path)
    except ManifestError as exc:
        raise UserError(f"the new experiment would not be valid, nothing written:\n{exc.format()}") from None


def _rows_text(rows: list[tuple[str, str, str, str]], head: tuple[str, str, str, str]) -> list[str]:
    def cut(text: str) -> str:
        return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"

    rows = [head] + [(s, k, cut(a), cut(b)) for s, k, a, b in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]


def cmd_diff(args, manifest) -> int:
    from engine.job.environment import differences
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    with as_user_error():
        a, b = get_run(store, args.run_a), get_run(store, args.run_b)
    rows = differences(a.path, b.path)
    print(f"a: {a.experiment}/{a.run_id}\nb: {b.experiment}/{b.run_id}")
    if not rows:
        print("no differences in config, code, data, environment or packages")
        return 0
    for line in _rows_text(rows, ("", "", "a", "b")):
        print(line.rstrip())
    return 0


def clone_run(manifest, run, name: str) -> None:
    """Append experiment ``name`` with ``run``'s settings to the manifest file (comments and layout
    kept), validated first: a UserError says why nothing was written."""
    import tomlkit

    from engine.files import atomic_write_text
    from engine.store.runs import check_name

    with as_user_error():
        check_name(name)
    if name in manifest.names:
        raise UserError(f"{name!r} is already an experiment of {manifest.path}; choose another name")
    keys = experiment_keys(_read_config(run), name)
    text = manifest.path.read_text()
    doc = tomlkit.parse(text)
    table = tomlkit.table()
    table.add(tomlkit.comment(f"cloned from run {run.experiment}/{run.run_id}"))
    for key, value in keys.items():
        table[key] = value
    experiments = doc.get("experiment")
    if experiments is None:
        doc["experiment"] = tomlkit.aot()
        experiments = doc["experiment"]
    experiments.append(table)
    new_text = tomlkit.dumps(doc)
    _validate(new_text, manifest.path)
    atomic_write_text(manifest.path, new_text)


def cmd_clone(args, manifest) -> int:
    from engine.store.runs import RunStore

    with as_user_error():
        run = get_run(RunStore(manifest.runs_dir), args.run)
    clone_run(manifest, run, args.name)
    print(f"added experiment {args.name!r} to {manifest.path} (the settings of {run.experiment}/{run.run_id})")
    return 0


def _start_model_folder(store, run, config: dict) -> str:
    """For a run that started from another run's model (``run:X``): that exact run's model folder.

    ``run:X`` would mean X's latest finished run *now*; a manifest cannot name one run of X, so
    the rerun names the folder (the model and tokenizer the original loaded). Else "".
    """
    model = str(config.get("model") or "")
    if not model.startswith("run:"):
        return ""
    start = (run.results() or {}).get("start_model", "") if (run.path / "results.json").exists() else ""
    folder = None
    if start:
        with as_user_error():
            folder = store.get(start).final_model()
    if folder is None:
        raise UserError(
            f"{run.experiment}/{run.run_id} started from {model} but the run it started from "
            f"({start or 'not recorded'}) has no final model any more; rerun it with `lmconsole run` or clone it"
        )
    return str(Path(folder).resolve())


@dataclass(frozen=True)
class Rerun:
    """A rerun ready to be written: the manifest of that one experiment and what changed since."""

    run: Any  # the original Run
    original: str  # experiment/run-id
    path: Path  # where the manifest goes (<runs>/.reruns/...)
    text: str
    changes: list[tuple[str, str, str, str]]  # (section, key, then, now): code and packages

    def write(self):
        """Write the manifest and return it loaded (a Manifest with the one experiment)."""
        from engine.files import atomic_write_text
        from engine.manifest import load

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, self.text)
        return load(self.path)

    def queue(self, make_queue=None) -> list:
        """Write the manifest and queue the rerun (no dependencies: its model is pinned); the jobs added.

        ``make_queue``: manifest -> JobQueue (the console passes its own; default ``JobQueue``).
        """
        from engine.queue.jobqueue import JobQueue

        queue = (make_queue or JobQueue)(self.write())
        return queue.submit([self.run.experiment], with_deps=False, again=True)


def plan_rerun(manifest, run) -> Rerun:
    """The rerun of ``run``: its config.json (seed included) under the current manifest's settings,
    validated, and what changed since in code and packages. Nothing is written yet."""
    import tomlkit

    from engine.job.environment import what_changed_since
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    config = _read_config(run)
    keys = experiment_keys(config, run.experiment, pin_model=_start_model_folder(store, run, config))
    original = f"{run.experiment}/{run.run_id}"
    doc = tomlkit.parse(manifest.path.read_text())
    settings_table = doc.get("settings") or tomlkit.table()
    settings_table["runs_dir"] = str(Path(manifest.runs_dir).resolve())
    doc["settings"] = settings_table
    text = _manifest_text(tomlkit.dumps(doc), keys, header=f"{RERUN_MARK}{original}\n")
    folder = Path(manifest.runs_dir) / ".reruns"
    path = folder / f"{run.experiment}-{run.run_id}-{time.strftime('%Y%m%d-%H%M%S')}.toml"
    _validate(text, path)
    return Rerun(run, original, path, text, what_changed_since(run.path, manifest.path))


def cmd_rerun(args, manifest) -> int:
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    with as_user_error():
        run = get_run(store, args.run)
    plan = plan_rerun(manifest, run)
    original, path = plan.original, plan.path
    for section, key, before, now in plan.changes:
        print(f"changed since {original}: {section} {key}: {before} -> {now}")
    if args.detach:
        added = plan.queue()
        for job in added:
            print(f"queued #{job.id} {job.experiment}: a rerun of {original} ({path})")
        return 0 if added else 1
    rerun_manifest = plan.write()
    from engine.cli.output import ProgressPrinter
    from engine.job.runner import run_experiment

    print(f"rerunning {original} from {path}")
    new = run_experiment(rerun_manifest, run.experiment, sinks=[ProgressPrinter(run.experiment)])
    status = new.status()
    print(f"{new.experiment}/{new.run_id}: {status.get('status')} {status.get('reason') or ''}".rstrip())
    sys.stdout.flush()
    return 0 if status.get("status") == "finished" else 1
