"""Headless command line: ``lmconsole run|runs|params|export|check|control|push|tag|note|archive|delete``.

Imports only the standard library at module level so ``lmconsole --help``
answers instantly; each command imports what it needs. With no command, the
entry point (``tui.entry``) opens the console instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from engine.status import ACTIVE, RESUMABLE, STOPPED, Status
from engine.tables import fmt_duration, fmt_num

FORMAT_CHOICES = ("csv", "md", "latex", "json")


# Options of the whole program: accepted before the command and after it
# (`lmconsole --manifest X run a` and `lmconsole run a --manifest X`).
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--manifest", "-m"),
        {"default": "experiments.toml", "help": "experiment manifest (default: ./experiments.toml)"},
    ),
)


def _add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    for flags, kwargs in GLOBAL_OPTIONS:
        kw = dict(kwargs)
        if not top:  # the subcommand's copy never overwrites a value given before the command
            kw["default"] = argparse.SUPPRESS
        parser.add_argument(*flags, **kw)


class _SubParsers(argparse._SubParsersAction):
    def add_parser(self, name, **kwargs):
        parser = super().add_parser(name, **kwargs)
        _add_global_options(parser, top=False)
        return parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmconsole",
        description="Pretrain and fine-tune BERT-style models from a terminal console. "
        "Without a command, opens the console on ./experiments.toml.",
    )
    _add_global_options(p, top=True)
    p.register("action", "parsers", _SubParsers)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # subcommands in --help order
    _add_run_commands(sub)
    _add_model_commands(sub)
    _add_hygiene_commands(sub)
    _add_study_commands(sub)
    _add_queue_commands(sub)
    return p


def _add_run_commands(sub) -> None:
    """Run and runs: running experiments headless and listing runs."""
    r = sub.add_parser("run", help="run experiments headless (dependencies first)")
    r.add_argument("experiments", nargs="+", metavar="EXPERIMENT")
    r.add_argument("--json", action="store_true", help="print events as JSON lines instead of progress lines")
    r.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest unfinished run of each experiment from its checkpoint",
    )
    r.add_argument(
        "--accept-changes",
        action="store_true",
        help="with --resume: continue even though the manifest changed since the run started (recorded in the run)",
    )
    r.add_argument("--no-deps", action="store_true", help="do not run missing dependencies first")
    r.add_argument("--quiet", "-q", action="store_true", help="only print the summary")
    r.add_argument(
        "--detach",
        "-d",
        action="store_true",
        help="queue them (each job then runs in its own process) and return; see `lmconsole queue`",
    )
    r.add_argument(
        "--again", action="store_true", help="with --detach: queue another run even if one is queued or running"
    )

    s = sub.add_parser("runs", help="list runs on disk (archived ones hidden)")
    s.add_argument("experiment", nargs="?")
    s.add_argument("--json", action="store_true")
    s.add_argument("--archived", action="store_true", help="list the archived runs instead")
    s.add_argument(
        "--filter",
        "-f",
        default="",
        metavar="TERMS",
        help="e.g. 'lr<1e-4', 'tag:baseline', 'status=finished', plain text (all must match)",
    )
    s.add_argument(
        "--sort",
        default="started",
        metavar="COLUMN",
        help="started (default), status, result, progress, or any hyperparameter/metric; --sort=-COLUMN reverses",
    )


def _add_model_commands(sub) -> None:
    """Params, export, check, push: models, result tables, the manifest, the Hub."""
    pa = sub.add_parser("params", help="parameter table of a model (no weights loaded)")
    pa.add_argument(
        "model",
        help="preset (bert-base, bert-tiny, bert-micro), Hub id, local folder, or run:<experiment> "
        "(its latest finished run), run:<experiment>/<run-id> or run:<run path>",
    )
    pa.add_argument("--head", default="base", choices=("base", "pretraining", "mlm", "classification", "qa"))
    pa.add_argument(
        "--diff-against",
        metavar="HEAD",
        choices=("base", "pretraining", "mlm", "classification", "qa"),
        help="show the diff from this head to --head instead",
    )
    pa.add_argument("--format", default="table", choices=("table",) + FORMAT_CHOICES)
    pa.add_argument("--full", action="store_true", help="every tensor instead of the grouped view")

    e = sub.add_parser("export", help="export the tables of runs")
    e.add_argument(
        "runs", nargs="*", metavar="RUN", help="experiment (latest run), experiment/run-id, or a run-id prefix"
    )
    e.add_argument("--all", action="store_true", help="every finished, failed or stopped run on disk (not archived)")
    e.add_argument("--format", action="append", choices=FORMAT_CHOICES, help="repeatable; default: all four")
    e.add_argument(
        "--out",
        default="exports",
        help="root of the exports: each export makes a new folder in it (default: ./exports)",
    )
    e.add_argument(
        "--include-running",
        action="store_true",
        help="with --all: also export runs still queued/running/paused (marked in runs.csv)",
    )

    c = sub.add_parser("check", help="validate the manifest and print the plan")
    c.add_argument("--reference", action="store_true", help="print the manifest key reference (Markdown)")
    c.add_argument(
        "--schema",
        action="store_true",
        help="print a JSON Schema of the manifest (for editors: taplo, Even Better TOML)",
    )

    pu = sub.add_parser("push", help="upload a finished run to the Hugging Face Hub with a model card")
    pu.add_argument("run", metavar="RUN")
    pu.add_argument("--repo", required=True, metavar="OWNER/NAME")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--revision", metavar="BRANCH", help="upload to this branch (created if missing)")
    pu.add_argument(
        "--dry-run", action="store_true", help="write the exact folder that would be uploaded, upload nothing"
    )
    pu.add_argument("--out", help="folder for --dry-run (default: a new temporary folder, printed)")


def _add_hygiene_commands(sub) -> None:
    """Tag, note, archive, delete: run hygiene."""
    tg = sub.add_parser("tag", help="add (+name) or remove (-name) tags of a run; no changes: print them")
    tg.add_argument("run", metavar="RUN")
    tg.add_argument("changes", nargs=argparse.REMAINDER, metavar="+TAG|-TAG")

    nt = sub.add_parser("note", help='set the note of a run ("" clears it); no text: print it')
    nt.add_argument("run", metavar="RUN")
    nt.add_argument("text", nargs="?")

    ar = sub.add_parser("archive", help="hide runs from listings (kept on disk); --restore shows them again")
    ar.add_argument("runs", nargs="+", metavar="RUN")
    ar.add_argument("--restore", action="store_true")

    de = sub.add_parser("delete", help="delete runs from disk (asks first; never a running one)")
    de.add_argument("runs", nargs="+", metavar="RUN")
    de.add_argument("--yes", "-y", action="store_true", help="do not ask")


def _add_study_commands(sub) -> None:
    """Report, verify, compare: the study report and its numbers."""
    rp = sub.add_parser("report", help="write the study report (Markdown, LaTeX, HTML with plots)")
    rp.add_argument(
        "experiments",
        nargs="*",
        metavar="EXPERIMENT",
        help="experiments or glob patterns (demo-*); default: every experiment with a finished run",
    )
    rp.add_argument("--out", default="report", help="output folder (default: ./report)")
    rp.add_argument("--format", action="append", choices=("md", "latex", "html"), help="repeatable; default: all three")
    rp.add_argument("--title", default="Study report")

    vf = sub.add_parser(
        "verify", help="recompute every reported number from the saved predictions; exit 1 on a mismatch"
    )
    vf.add_argument(
        "targets",
        nargs="+",
        metavar="RUN|STUDY",
        help="a run (experiment, experiment/run-id, run-id prefix) or experiments as glob patterns (demo-*)",
    )
    vf.add_argument("--quiet", "-q", action="store_true", help="print only mismatches and the summary")

    cp = sub.add_parser("compare", help="final results of runs side by side, with mean ± std and n of seed groups")
    cp.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="experiment (its latest run, or its latest seed group), experiment/run-id, or a run-id prefix",
    )
    cp.add_argument("--format", default="md", choices=FORMAT_CHOICES)


def _add_queue_commands(sub) -> None:
    """Queue, attach, control: the job queue of the runs directory."""
    qu = sub.add_parser("queue", help="show or change the job queue of the runs directory (shared by consoles and CLI)")
    qu.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=("list", "pause", "resume", "cancel", "retry", "up", "down", "clean"),
    )
    qu.add_argument("job", nargs="?", metavar="JOB", help="job number (as listed), or an experiment (its latest job)")
    qu.add_argument("--json", action="store_true")

    at = sub.add_parser("attach", help="follow a queued or running job's progress (ctrl+c detaches; the job goes on)")
    at.add_argument("job", nargs="?", metavar="JOB", help="job number or experiment (default: the first running job)")
    at.add_argument("--json", action="store_true", help="print events as JSON lines")

    ct = sub.add_parser("control", help="pause, resume or cancel a running job (any process)")
    ct.add_argument("run", metavar="RUN")
    ct.add_argument("action", choices=("pause", "resume", "cancel"))


def _fail(msg: str, code: int = 2) -> int:
    safe_print(f"lmconsole: {msg}", sys.stderr)
    return code


def safe_print(text: str, stream=None) -> bool:
    """Print and flush; False (and nothing raised) when the reader went away (``| head``, a closed terminal).

    A job never dies from its own output: once a stream fails it is pointed at
    /dev/null, so the interpreter's final flush stays quiet too.
    """
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
        return True
    except (BrokenPipeError, OSError, ValueError):  # ValueError: the stream was closed
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        return False


def _manifest(args):
    """The manifest of ``--manifest``, or None after printing its problems (the command then exits 2)."""
    manifest, err = _load_manifest(args.manifest)
    if err:
        print(err, file=sys.stderr)
        return None
    return manifest


def _load_manifest(path: str):
    from engine.errors import ManifestError
    from engine.manifest import load

    try:
        return load(path), None
    except ManifestError as exc:
        return None, exc.format()


def main(argv=None, console=None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        if console is None:
            return _fail("the console is not available here; use a command (see --help)")
        return console(args.manifest)
    handler = {
        "run": cmd_run,
        "runs": cmd_runs,
        "params": cmd_params,
        "export": cmd_export,
        "check": cmd_check,
        "control": cmd_control,
        "push": cmd_push,
        "compare": cmd_compare,
        "report": cmd_report,
        "verify": cmd_verify,
        "tag": cmd_tag,
        "note": cmd_note,
        "archive": cmd_archive,
        "delete": cmd_delete,
        "queue": cmd_queue,
        "attach": cmd_attach,
    }[args.command]
    try:
        rc = handler(args)
        sys.stdout.flush()  # here, not at exit: a reader gone meanwhile (`| head`) must not print a traceback
        return rc
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # the reader of our output went away (`lmconsole runs --json | head`)
        safe_print("", sys.stdout)  # points stdout at /dev/null so the exit flush is quiet
        return 0


def get_run(store, ref: str):
    """A run by ``experiment/run-id``, ``experiment`` (latest), run-id prefix, or its path
    (``runs/<exp>/<id>`` as ``runs --json`` prints it, relative or absolute). KeyError/ValueError if none."""
    path = Path(ref.strip()).expanduser()
    if ref.count("/") >= 2 or path.is_absolute() or (path / "config.json").exists():
        root = store.root.resolve()
        try:
            rel = path.resolve().relative_to(root)
        except ValueError:
            raise ValueError(f"{ref} is not a run under the runs directory {store.root}") from None
        if len(rel.parts) != 2:
            raise ValueError(f"{ref}: a run path is <runs dir>/<experiment>/<run-id>")
        ref = "/".join(rel.parts)
    return store.get(ref)


def _store_and_runs(args, refs):
    """(store, runs) for the refs of a command, or (None, exit code) after printing why."""
    manifest = _manifest(args)
    if manifest is None:
        return None, 2
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    try:
        return store, [get_run(store, ref) for ref in refs]
    except (KeyError, ValueError) as exc:
        return None, _fail(str(exc).strip("'\""))


def _pop_global_options(args, words: list[str]) -> list[str]:
    """Global options after a command that takes the rest of the line (``tag RUN -old --manifest X``)."""
    flags = {f for names, _ in GLOBAL_OPTIONS for f in names}
    out, i = [], 0
    while i < len(words):
        w = words[i]
        name, eq, value = w.partition("=")
        if name in flags and (eq or i + 1 < len(words)):
            setattr(
                args,
                next(n for n, _ in GLOBAL_OPTIONS if name in n)[0].lstrip("-").replace("-", "_"),
                value if eq else words[i + 1],
            )
            i += 1 if eq else 2
            continue
        out.append(w)
        i += 1
    return out


# -- progress printing ----------------------------------------------------------


class ProgressPrinter:
    """Turns events into short progress lines on stdout (or JSON lines with ``as_json``)."""

    def __init__(self, experiment: str, as_json: bool = False, quiet: bool = False, stream=None):
        self.exp = experiment
        self.as_json = as_json
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self._last_progress = 0.0

    def _print(self, text: str) -> None:
        if not getattr(self, "_closed", False):
            self._closed = not safe_print(text, self.stream)

    def emit(self, event) -> None:
        from engine import events as ev

        if self.as_json:
            self._print(ev.to_json(event))
            return
        if self.quiet and not isinstance(event, ev.JobFailed):
            return
        tag = f"[{self.exp}]"
        if isinstance(event, ev.StepLogged):
            parts = " ".join(f"{k} {v:.4f}" for k, v in event.parts.items())
            tps = f"{event.tokens_per_s / 1000:.1f}k tok/s" if event.tokens_per_s else ""
            self._print(
                f"{tag} step {event.step}/{event.total_steps} epoch {event.epoch:.2f} loss {event.loss:.4f} {parts} "
                f"lr {event.learning_rate:.2e} {tps} ETA {fmt_duration(event.eta_s)}"
            )
        elif isinstance(event, ev.EvalFinished):
            shown = ", ".join(
                f"{k} {fmt_num(v) if isinstance(v, float) else v}"  # ints as they are: step and example counts
                for k, v in event.metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            )
            self._print(f"{tag} eval epoch {event.epoch} ({event.split}): {shown}")
        elif isinstance(event, ev.ProgressUpdated):
            now = time.monotonic()
            if event.done >= event.total or now - self._last_progress > 2:
                self._last_progress = now
                self._print(f"{tag} {event.phase}: {event.done}/{event.total}")
        elif isinstance(event, ev.PhaseStarted):
            self._print(f"{tag} {event.phase}{': ' + event.detail if event.detail else ''}")
        elif isinstance(event, ev.LogEmitted):
            self._print(f"{tag} {event.level}: {event.message}" if event.level != "info" else f"{tag} {event.message}")
        elif isinstance(event, ev.CheckpointSaved):
            self._print(f"{tag} checkpoint at step {event.step}: {event.path}")
        elif isinstance(event, ev.JobFailed):
            self._print(f"{tag} FAILED: {event.reason}" + (f"\n{tag} hint: {event.hint}" if event.hint else ""))
        elif isinstance(event, ev.StatusChanged) and event.status in (Status.PAUSED, Status.CANCELLED):
            self._print(f"{tag} {event.status}{': ' + event.reason if event.reason else ''}")


# -- commands -----------------------------------------------------------------------


def cmd_run(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.store.runs import RunStore

    unknown = [n for n in args.experiments if n not in manifest.names]
    if unknown:
        return _fail(f"unknown experiment {unknown[0]!r}; the manifest has: {', '.join(manifest.names)}")
    if args.detach:
        return _run_detached(manifest, args)
    store = RunStore(manifest.runs_dir)
    # A study is its steps: they run like dependencies (those with a finished run are skipped).
    plan = _without_deps(manifest, args.experiments) if args.no_deps else manifest.job_plan(args.experiments)
    requested = set(args.experiments)
    failed: dict[str, str | None] = {}
    ran = 0
    for name in plan:
        exp = manifest.get(name)
        blocked = [d for d in exp.dependencies if d in failed]
        if blocked:
            failed[name] = f"blocked: dependency {blocked[0]!r} failed"
            safe_print(f"[{name}] {failed[name]}", sys.stderr)
            continue
        if name not in requested and store.latest(name, status="finished") is not None:
            continue  # dependency already satisfied by a finished run
        ran += 1
        resume, code = _resume_target(manifest, store, name, args) if args.resume else (None, None)
        if code is None:
            code = _run_seeds(manifest, store, name, resume, args, failed)
        if code is not None:
            return code
    studies = [n for n in args.experiments if manifest.get(n).task == "study"]
    if studies and not ran and not failed:
        safe_print(f"[{', '.join(studies)}] every step has a finished run; run a step by name to redo it")
    if failed:
        first = next(iter(failed.items()))
        return _fail(
            f"{first[0]}: {first[1]}" + (f" ({len(failed)} steps did not finish)" if len(failed) > 1 else ""), 1
        )
    return 0


def _resume_target(manifest, store, name: str, args) -> tuple:
    """``run --resume``: (the run to continue or None, None), or (None, exit code) when it cannot be."""
    from engine.job.runner import changed_run_error, config_changes, experiment_for

    last = store.latest(name)
    status = last.status().get("status") if last is not None else None
    if status in ACTIVE:
        return None, _fail(
            f"{name}: its latest run is {status} in another process; use `lmconsole control {name} resume|pause|cancel`"
        )
    resume = last if status in RESUMABLE else None
    if resume is not None and not args.accept_changes:
        changes = config_changes(experiment_for(manifest, name, resume), resume)
        if changes:
            err = changed_run_error(name, changes)
            return None, _fail(f"{name}: {err.reason}; {err.hint}")
    return resume, None


def _run_seeds(manifest, store, name: str, resume, args, failed: dict) -> int | None:
    """Run (or resume) one experiment, once per seed; records what did not finish in ``failed``.

    Returns an exit code when ``cmd_run`` must stop here (a stop signal, an unusable runs directory).
    """
    from engine.job.runner import run_experiment
    from engine.store.runs import RunUnavailable
    from engine.store.seeds import seed_jobs

    exp = manifest.get(name)
    runs = []
    for seed, group in [(None, "")] if resume else seed_jobs(exp):
        printer = ProgressPrinter(name, as_json=args.json, quiet=args.quiet)
        if not args.json:
            what = f"seed {seed}, " if seed is not None else ""
            safe_print(f"[{name}] {'resuming ' + resume.run_id if resume else 'starting'} ({what}{exp.task})")
        try:
            run = run_experiment(
                manifest,
                name,
                sinks=[printer],
                resume=resume,
                store=store,
                seed=seed,
                group=group,
                accept_changes=args.accept_changes,
            )
        except RunUnavailable as exc:
            return _fail(f"{name}: {exc}")
        except (OSError, ValueError) as exc:  # the run directory itself cannot be created
            reason = getattr(exc, "strerror", None) or str(exc)
            return _fail(
                f"{name}: cannot create a run under {manifest.runs_dir!s:.200}: {reason}; "
                "set settings.runs_dir to a writable folder",
                1,
            )
        runs.append(run)
        st = run.status()
        if st.get("status") == "interrupted":
            # A stop signal (Slurm preemption, systemctl stop, kill, Ctrl-C): stop here, start nothing else.
            safe_print(f"[{name}] {st.get('reason')}: lmconsole run {name} --resume", sys.stderr)
            return 130
        if st.get("status") != "finished":
            failed[name] = st.get("reason") or st.get("status")
            if st.get("status") == "cancelled":
                safe_print(f"[{name}] cancelled; resume with: lmconsole run {name} --resume", sys.stderr)
                break
        elif not args.json:
            safe_print(f"[{name}] finished: {run.path}")
            _print_flags(f"[{name}] ", run)
    if len(runs) > 1 and not args.json:
        _print_group(name, runs)
    return None


def _without_deps(manifest, names: list[str]) -> list[str]:
    """``--no-deps``: the named experiments; a study's own steps in plan order, without what lies outside it."""
    out = []
    for n in names:
        exp = manifest.get(n)
        out += [s for s in manifest.job_plan([n]) if s in exp.steps] if exp.task == "study" else [n]
    return list(dict.fromkeys(out))


def _print_group(name: str, runs) -> None:
    """Mean ± sample std and n of the seed runs just made, for the metrics worth a headline."""
    from engine.store.seeds import fmt_stat, group_stats

    stats = group_stats(runs)
    shown = [
        k for k in ("final.mlm_perplexity", "final.accuracy", "final.f1", "final.exact", "final.best_f1") if k in stats
    ]
    seeds = ", ".join(str(r.config().get("seed")) for r in runs)
    body = "; ".join(f"{k.removeprefix('final.')} {fmt_stat(stats[k])}" for k in shown) or "no metrics"
    safe_print(f"[{name}] seeds {seeds}: {body} (sample std)")


def _row_flags(row, run_flags) -> list:
    """Flags on a finished, readable run's results (engine.metrics.flags)."""
    return run_flags(row.run, row.results, row.config) if row.status == "finished" and not row.problems else []


def cmd_runs(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.metrics.flags import run_flags
    from engine.store.listing import align, differing_keys, filter_rows, fit_width, fmt_value, list_rows, sort_rows
    from engine.store.runs import RunStore

    rows = list_rows(RunStore(manifest.runs_dir), args.experiment, archived=True if args.archived else False)
    rows = filter_rows(rows, args.filter)
    column = args.sort.lstrip("-")
    if (
        rows
        and column not in ("started", "experiment", "run", "status", "progress", "result", "tags", "note")
        and all(r.value(column) is None for r in rows)
    ):
        return _fail(
            f"--sort {column!r}: no listed run has it; use started, status, result, progress, "
            "or a hyperparameter/metric of these runs (e.g. learning_rate, accuracy)"
        )
    rows = (
        sort_rows(rows, column, descending=args.sort.startswith("-"))
        if column != "started" or args.sort.startswith("-")
        else rows
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "experiment": r.run.experiment,
                        "run": r.run.run_id,
                        "status": r.status,
                        "reason": r.reason,
                        "path": str(r.run.path),
                        "progress": r.progress,
                        "result": {r.result_key: r.result} if r.result_key else {},
                        "tags": r.tags,
                        "note": r.note,
                        "archived": r.archived,
                        "flags": [f.to_dict() for f in _row_flags(r, run_flags)],
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
        return 0
    if not rows:
        what = "archived runs" if args.archived else "runs"
        print(f"no {what} under {manifest.runs_dir}" + (f" matching {args.filter!r}" if args.filter else ""))
        return 0
    hyper = differing_keys(rows)
    header = ["experiment", "run", "status", "progress", "result", *hyper, "tags", "note"]
    table = []
    for r in rows:
        note = r.reason if r.status in STOPPED and r.reason else r.note
        table.append(
            [
                r.run.experiment,
                r.run.run_id,
                r.status + (" (archived)" if r.archived else ""),
                r.progress,
                r.result_text,
                *(fmt_value(r.config.get(k)) for k in hyper),
                " ".join(r.tags),
                " ".join(note.split())
                + (f" FLAGS: {n} (see lmconsole report)" if (n := len(_row_flags(r, run_flags))) else ""),
            ]
        )
    lines = align(header, table)
    if sys.stdout.isatty():  # a terminal: fit its width (a pipe or a file gets every column)
        width = shutil.get_terminal_size().columns
        lines, hidden = fit_width(header, table, list(range(5, 5 + len(hyper))), width)
        if hidden:
            lines += textwrap.wrap(
                f"({len(hidden)} differing settings left out at this width: {', '.join(hidden)}; "
                "`lmconsole runs | cat` shows every column)",
                width,
            )
    for line in lines:
        print(line)
    return 0


def cmd_params(args) -> int:
    from engine.errors import JobError, ResolveError
    from engine.models.params import diff_table, full_table, grouped_table, rows_for
    from engine.models.source import model_source
    from engine.store.runs import RunStore, dependency_run

    store = None
    if args.model.startswith("run:"):
        manifest, err = _load_manifest(args.manifest)
        if err:
            print(err, file=sys.stderr)
            return 2
        store = RunStore(manifest.runs_dir)

    class BadRef(Exception):
        pass

    def find_run(ref: str):  # run:<experiment> = its latest finished run; run:<exp>/<id> or run:<path> = that run
        assert store is not None  # only asked for run: models
        try:
            return get_run(store, ref) if "/" in ref else dependency_run(store, ref)
        except (KeyError, ValueError) as exc:  # no such run, an unsafe reference
            raise BadRef(exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) from None

    try:
        config = model_source(args.model, store=store, find_run=find_run).config()
    except JobError as exc:
        return _fail(f"{exc.reason}; {exc.hint}")
    except BadRef as exc:
        return _fail(str(exc))
    except (ResolveError, OSError, ValueError) as exc:
        return _fail(str(exc).splitlines()[0])
    rows = rows_for(config, args.head)
    if args.diff_against:
        table = diff_table(rows_for(config, args.diff_against), rows, args.diff_against, args.head)
    else:
        table = full_table(rows, args.head) if args.full else grouped_table(rows, args.head)
    if args.format == "table":
        print(table.to_markdown())
    elif args.format == "csv":
        from engine.study.export import tidy

        sys.stdout.write(tidy(table)[0].render("csv"))  # tidy: no TOTAL row (the total is in the note), integer repeats
    else:
        sys.stdout.write(table.render(args.format))
    return 0


def cmd_export(args) -> int:
    from engine.store.meta import is_archived
    from engine.study.export import export_folder, export_runs, split_exportable

    store, runs = _store_and_runs(args, args.runs)
    if store is None:
        return runs
    if args.all:
        named = {str(r.path) for r in runs}
        every = [r for r in store.runs() if str(r.path) not in named and not is_archived(r)]
        done, active = split_exportable(every)
        if active and not args.include_running:
            print(
                f"left out {len(active)} run(s) still in progress: "
                f"{', '.join(f'{r.experiment}/{r.run_id}' for r in active)} (--include-running exports them, marked)",
                file=sys.stderr,
            )
        runs = runs + done + (active if args.include_running else [])
    elif not runs:
        return _fail("name runs to export, or pass --all")
    if not runs:
        return _fail(f"no runs to export under {store.root}")
    formats = tuple(args.format or FORMAT_CHOICES)
    problems: list[str] = []
    try:
        written = export_runs(runs, Path(args.out), formats, problems)
    except OSError as exc:
        return _fail(f"cannot write to --out {args.out}: {exc.strerror or exc}; choose a writable folder", 1)
    for p in problems:
        print(f"lmconsole: {p}", file=sys.stderr)
    print(
        f"exported {len(written)} files for {len(runs)} run(s) to "
        f"{(export_folder(written) or Path(args.out)).resolve()}"
    )
    return 0


def cmd_check(args) -> int:
    if args.schema:
        from engine.manifest import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.reference:
        from engine.manifest import reference_markdown

        print(reference_markdown())
        return 0
    manifest = _manifest(args)
    if manifest is None:
        return 2
    print(f"{manifest.path}: {len(manifest.experiments)} experiments, runs in {manifest.runs_dir}")
    for exp in manifest.experiments:
        deps = f" (after {', '.join(exp.dependencies)})" if exp.dependencies and exp.task != "study" else ""
        seeds = f" [seeds {', '.join(map(str, exp.seeds))}]" if getattr(exp, "seeds", ()) else ""
        target = exp.hub_model_id if exp.task == "push" else exp.model
        what = (
            f"{len(exp.steps)} steps"
            if exp.task == "study"
            else (f"{exp.model} -> {target}" if exp.task == "push" else target)
        )
        print(f"  {exp.name:<20} {exp.task:<9} {what}{seeds}{deps}")
    for exp in manifest.experiments:
        if exp.task == "study":
            print(study_plan_text(manifest, exp.name))
    return 0


def study_plan_text(manifest, name: str) -> str:
    """The steps a study runs, in order, each with what it waits for: ``lmconsole check`` and the console."""
    plan = manifest.job_plan([name])
    width = max([20] + [len(s) + 1 for s in plan])
    lines = [f"plan of study {name!r} ({len(plan)} steps, in this order; `lmconsole run {name}`):"]
    for i, step in enumerate(plan, 1):
        exp = manifest.get(step)
        deps = f"after {', '.join(exp.dependencies)}" if exp.dependencies else "no dependencies"
        seeds = f", {len(exp.seeds)} seeds" if getattr(exp, "seeds", ()) else ""
        lines.append(f"  {i:>2}. {step:<{width}} {exp.task:<9} {deps}{seeds}")
    return "\n".join(lines)


def cmd_push(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.hub.publish import PushError, push
    from engine.store.runs import RunStore

    try:
        run = get_run(RunStore(manifest.runs_dir), args.run)
        result = push(
            run,
            args.repo,
            private=args.private,
            revision=args.revision,
            dry_run=args.dry_run,
            out=Path(args.out) if args.out else None,
        )
    except (KeyError, ValueError) as exc:
        return _fail(str(exc).strip("'\""))
    except PushError as exc:
        return _fail(str(exc), 1)
    if result["dry_run"]:
        print(
            f"dry run: {len(result['files'])} files in {Path(result['folder']).resolve()} "
            f"(would go to {result['repo_id']}, {'private' if result['private'] else 'public'}"
            f"{', branch ' + result['revision'] if result['revision'] else ''}):"
        )
        for name in result["files"]:
            print(f"  {name}")
    else:
        print(
            f"pushed {run.experiment}/{run.run_id} to https://huggingface.co/{result['repo_id']}"
            f"{' (branch ' + result['revision'] + ')' if result['revision'] else ''}"
        )
    return 0


def cmd_compare(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.store.runs import RunStore
    from engine.store.seeds import group_of, group_runs
    from engine.study.export import comparison_table

    store = RunStore(manifest.runs_dir)
    runs = []
    try:
        for ref in args.runs:
            run = store.get(ref)
            group = group_of(run) if ref == run.experiment else ""  # an experiment name: its latest seed group
            runs += [r for r in (group_runs(store, group, run.experiment) if group else [run]) if r not in runs]
    except (KeyError, ValueError) as exc:
        return _fail(str(exc).strip("'\""))
    table = comparison_table(runs)
    sys.stdout.write(table.to_markdown() + "\n" if args.format == "md" else table.render(args.format))
    return 0


def cmd_control(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    try:
        run = get_run(store, args.run)
        if "/" not in args.run and run.status().get("status") not in ACTIVE:
            # `control EXP`: the experiment's live run, even when a newer one is dead
            live = [r for r in store.runs(args.run.strip()) if r.status().get("status") in ACTIVE]
            run = live[-1] if live else run
    except (KeyError, ValueError) as exc:
        return _fail(str(exc).strip("'\""))
    status = run.status().get("status")
    if status not in ACTIVE:
        return _fail(f"{run.experiment}/{run.run_id} is {status}, not running")
    from engine.queue.jobqueue import JobQueue

    print(JobQueue(manifest).control_run(run, args.action))  # through its job when the queue has one
    return 0


def _print_flags(prefix: str, run) -> None:
    """Flags on degenerate results (engine.metrics.flags), one line each."""
    from engine.metrics.flags import run_flags

    for f in run_flags(run):
        safe_print(f"{prefix}FLAG {f.metric}: {f.message}")


def cmd_report(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.store.runs import RunStore
    from engine.study.report import FORMATS, build_report, select, write_report

    store = RunStore(manifest.runs_dir)
    names = manifest.expand_studies(select(manifest.names, args.experiments))  # a study: its steps' runs
    if not names:
        return _fail(
            f"no experiment matches {' '.join(args.experiments)}; the manifest has: {', '.join(manifest.names)}"
        )
    report = build_report(store, names, title=args.title)
    if len(report.sections[0].tables[0].rows) == 0:
        return _fail(f"no finished run of {', '.join(names)} under {manifest.runs_dir}: run the study first", 1)
    written = write_report(report, Path(args.out), tuple(args.format or FORMATS))
    main_files = [p for p in written if p.parent == Path(args.out)]
    print(f"report of {len(report.sections[0].tables[0].rows)} runs: " + ", ".join(str(p) for p in main_files))
    return 0


def cmd_verify(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.errors import VerifyError
    from engine.store.runs import RunStore
    from engine.study.report import select
    from engine.study.verify import verify_run

    store = RunStore(manifest.runs_dir)
    runs = []
    for target in args.targets:
        names = select(manifest.names, [target]) if not target.count("/") else []
        # a study: its steps' runs, less the pushes (they report no numbers to recompute)
        names = [n for n in manifest.expand_studies(names) if n in names or manifest.get(n).task != "push"]
        if names:
            found = [store.latest(n, status="finished") for n in names]
            runs += [r for r in found if r is not None]
            if not any(found):
                return _fail(f"no finished run of {target} under {manifest.runs_dir}")
            continue
        try:
            runs.append(store.get(target))
        except (KeyError, ValueError) as exc:
            return _fail(str(exc).strip("'\""))
    failed, total = 0, 0
    for run in runs:
        try:
            checks = verify_run(run, manifest.settings.data_mirror)
        except VerifyError as exc:
            print(f"FAIL {exc}")
            failed += 1
            continue
        for c in checks:
            total += 1
            failed += not c.ok
            if not (args.quiet and c.ok):
                print(c.line())
    print(f"verify: {total} checks on {len(runs)} run(s), {failed} mismatch(es)")
    return 1 if failed else 0


def cmd_tag(args) -> int:
    from engine.store.meta import MetaError, change_tags, parse_tag_changes, read_meta

    changes = _pop_global_options(args, args.changes)
    store, runs = _store_and_runs(args, [args.run])
    if store is None:
        return runs
    run = runs[0]
    try:
        meta = change_tags(run, *parse_tag_changes(changes)) if changes else read_meta(run)
    except MetaError as exc:
        return _fail(str(exc))
    print(f"{run.experiment}/{run.run_id}: tags {' '.join(meta['tags']) or '(none)'}")
    return 0


def cmd_note(args) -> int:
    from engine.store.meta import MetaError, read_meta, set_note

    store, runs = _store_and_runs(args, [args.run])
    if store is None:
        return runs
    run = runs[0]
    if args.text is None:
        print(read_meta(run)["note"])
        return 0
    try:
        meta = set_note(run, args.text)
    except MetaError as exc:
        return _fail(str(exc))
    print(f"{run.experiment}/{run.run_id}: " + ("note set" if meta["note"] else "note cleared"))
    return 0


def cmd_archive(args) -> int:
    from engine.store.meta import MetaError, set_archived

    store, runs = _store_and_runs(args, args.runs)
    if store is None:
        return runs
    for run in runs:
        try:
            set_archived(run, not args.restore)
        except MetaError as exc:
            return _fail(str(exc))
        print(
            f"{'restored' if args.restore else 'archived'} {run.experiment}/{run.run_id}"
            + (
                ""
                if args.restore
                else " (hidden; `lmconsole runs --archived` lists it, `archive --restore` brings it back)"
            )
        )
    return 0


def cmd_delete(args) -> int:
    from engine.store.meta import MetaError, delete_run

    store, runs = _store_and_runs(args, args.runs)
    if store is None:
        return runs
    names = ", ".join(f"{r.experiment}/{r.run_id}" for r in runs)
    if not args.yes:
        if not sys.stdin.isatty():
            return _fail(f"delete {names}: pass --yes to confirm (no terminal to ask on)")
        answer = input(f"delete {names} and all its files (checkpoints, model)? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for run in runs:
        try:
            delete_run(run)
        except MetaError as exc:
            return _fail(str(exc), 1)
        print(f"deleted {run.experiment}/{run.run_id}")
    return 0


# -- the queue on disk: run --detach, queue, attach --------------------------------------


def _run_detached(manifest, args) -> int:
    from engine.queue.jobqueue import JobQueue

    queue = JobQueue(manifest)
    added = queue.submit(args.experiments, with_deps=not args.no_deps, again=args.again)
    for job in added:
        print(
            f"queued #{job.id} {job.experiment}"
            + (f" (after #{', #'.join(map(str, job.depends_on))})" if job.depends_on else "")
        )
    for name in queue.last_skipped:
        print(f"{name}: already queued or running; add --again to queue another run", file=sys.stderr)
    if added:
        print(f"runs in {manifest.runs_dir}; follow with `lmconsole attach` or `lmconsole queue`")
    return 0 if added or not queue.last_skipped else 1


def _find_job(queue, ref: str | None, prefer_running: bool = False):
    jobs = queue.refresh()
    if ref is None:
        if prefer_running:
            return next((j for j in jobs if j.active), None) or next((j for j in jobs if j.waiting), None)
        return None
    ref = ref.lstrip("#")
    if ref.isdigit():
        return next((j for j in jobs if j.id == int(ref)), None)
    return next((j for j in reversed(jobs) if j.experiment == ref), None)


def _job_row(job) -> dict:
    step = job.metrics.last_step
    return {
        "id": job.id,
        "experiment": job.experiment,
        "status": str(job.status),
        "reason": job.reason,
        "run": f"{job.run.experiment}/{job.run.run_id}" if job.run else None,
        "depends_on": list(job.depends_on),
        "gpus": job.gpus,
        "devices": list(job.devices),
        "step": step.step if step else None,
        "total_steps": step.total_steps if step else None,
    }


def cmd_queue(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.queue.jobqueue import JobQueue

    queue = JobQueue(manifest)
    if args.action == "clean":
        print(f"dropped {queue.clean()} ended job(s) from the queue (their runs stay)")
        return 0
    if args.action != "list":
        if args.job is None:
            return _fail(f"name the job: lmconsole queue {args.action} JOB (see `lmconsole queue`)")
        job = _find_job(queue, args.job)
        if job is None:
            return _fail(f"no job {args.job!r} in the queue (see `lmconsole queue`)")
        print(queue.control(job, args.action))
        return 0
    jobs = queue.refresh()
    if args.json:
        print(json.dumps([_job_row(j) for j in jobs], indent=1))
        return 0
    if not jobs:
        print(f"the queue of {manifest.runs_dir} is empty")
        return 0
    width = max(len(j.experiment) for j in jobs)
    for j in jobs:
        row = _job_row(j)
        progress = f"step {row['step']}/{row['total_steps']}" if row["step"] else ""
        where = f"gpu {','.join(map(str, j.devices))}" if j.devices and j.active else ""
        note = j.reason if j.status in STOPPED else (row["run"] or "")
        print(f"#{j.id:<3} {j.experiment:<{width}} {str(j.status):<11} {progress:<14} {where:<8} {note}"[:200].rstrip())
    return 0


def cmd_attach(args) -> int:
    manifest = _manifest(args)
    if manifest is None:
        return 2
    from engine.queue.jobqueue import JobQueue
    from engine.status import FINAL
    from engine.store.follow import RunFollower

    queue = JobQueue(manifest)
    job = _find_job(queue, args.job, prefer_running=True)
    if job is None:
        return _fail("no such job in the queue" if args.job else "no job runs or waits; see `lmconsole queue`")
    printer = ProgressPrinter(job.experiment, as_json=args.json)
    if not args.json:
        print(f"[{job.experiment}] job #{job.id} {job.status}; ctrl+c detaches (the job goes on)", flush=True)
    follower = None
    try:
        while True:
            job = queue.get(job.id)
            if job.run is not None and (follower is None or follower.run.path != job.run.path):
                follower = RunFollower(job.run)
            if follower is not None:
                for ev in follower.poll()[0]:
                    printer.emit(ev)
            if job.status in FINAL:
                if not args.json:
                    print(f"[{job.experiment}] {job.status}" + (f": {job.reason}" if job.reason else ""), flush=True)
                return 0 if job.status == "finished" else 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        if not args.json:
            print(f"[{job.experiment}] detached; job #{job.id} goes on", flush=True)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
