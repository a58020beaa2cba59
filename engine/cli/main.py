"""Headless command line: the table of ``lmconsole`` commands and :func:`main`, which runs one.

The commands, in ``--help`` order, and the module each lives in:

- ``run``: run experiments headless, dependencies first, or queue them (``run.py``)
- ``sweep``: the trials of a sweep, best marked (``sweep.py``)
- ``runs``: list the runs on disk (``runs.py``)
- ``params``: parameter table of a model (``models.py``)
- ``export``: export the tables of runs (``runs.py``)
- ``check``: validate the manifest and print the plan (``study.py``)
- ``push``: upload a finished run to the Hugging Face Hub (``models.py``)
- ``tag``, ``note``, ``archive``, ``delete``: run hygiene (``runs.py``)
- ``report``: write the study report (``study.py``)
- ``verify``: recompute the reported numbers from the saved predictions (``study.py``)
- ``compare``: final results of runs side by side (``runs.py``)
- ``queue``, ``attach``, ``control``: the job queue of the runs directory (``jobs.py``)
- ``notify``: where job news goes (``settings.notify``), ``--test`` to send one (``notify.py``)
- ``predict``: try a run's model on new input; ``examples``: its evaluation mistakes (``look.py``)
- ``rerun``, ``diff``, ``clone``: a run's exact config again, two runs compared, a run into the manifest
  (``provenance.py``)

At module level this file and the command modules import only the standard library, each
other and the engine's leaf modules, so ``lmconsole --help`` answers instantly; each command
imports what it needs when it runs. With no command, the entry point (``tui.entry``) opens the console instead.

A command that cannot do what was asked raises :class:`~engine.errors.UserError`; ``main``
prints it on one line and exits with its code. A manifest that cannot be used is printed
with each of its problems on a line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.cli import jobs, look, models, notify, provenance, run, runs, study, sweep
from engine.cli.output import PrintableStream, safe_print
from engine.errors import ManifestError, UserError
from engine.tables import FORMATS


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its flags (or name) and its keywords."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def _epoch_number(text: str) -> int | float:
    """``--epoch``: a whole epoch (its end) or a fractional one (an evaluation inside it, eval_steps)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an epoch number: {text!r} (e.g. 2, or 1.5 with eval_steps)") from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not an epoch number: {text!r} (0 or more)")
    return int(value) if value.is_integer() else value


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the function that runs it, its one-line help and its arguments.

    ``function(args, manifest)`` gets the manifest of ``--manifest`` loaded when
    ``needs_manifest``; otherwise ``function(args)`` loads it itself if it needs it.
    """

    name: str
    function: Callable[..., int]
    help: str
    arguments: tuple[Arg, ...] = ()
    needs_manifest: bool = True


# Options of the whole program: accepted before the command and after it
# (`lmconsole --manifest X run a` and `lmconsole run a --manifest X`).
GLOBAL_OPTIONS: tuple[Arg, ...] = (
    arg("--manifest", "-m", default="experiments.toml", help="experiment manifest (default: ./experiments.toml)"),
)

# engine.manifest.HEADS, spelled out: importing the manifest module would cost --help ~70 ms
HEADS = ("base", "pretraining", "mlm", "classification", "qa")

COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        run.cmd_run,
        "run experiments headless (dependencies first)",
        (
            arg("experiments", nargs="+", metavar="EXPERIMENT"),
            arg("--json", action="store_true", help="print events as JSON lines instead of progress lines"),
            arg(
                "--resume",
                action="store_true",
                help="continue the latest unfinished run of each experiment from its checkpoint",
            ),
            arg(
                "--accept-changes",
                action="store_true",
                help="with --resume: continue even though the manifest changed since the run started "
                "(recorded in the run)",
            ),
            arg("--no-deps", action="store_true", help="do not run missing dependencies first"),
            arg("--quiet", "-q", action="store_true", help="only print the summary"),
            arg(
                "--detach",
                "-d",
                action="store_true",
                help="queue them (each job then runs in its own process) and return; see `lmconsole queue`",
            ),
            arg(
                "--again", action="store_true", help="with --detach: queue another run even if one is queued or running"
            ),
        ),
    ),
    Command(
        "sweep",
        sweep.cmd_sweep,
        "the trials of a sweep sorted by objective, the best marked",
        (
            arg("sweep", metavar="SWEEP"),
            arg("--json", action="store_true", help="the summary as JSON: trials, best, importances"),
            arg("--study", default="", help="an earlier study of the sweep (default: its latest)"),
        ),
    ),
    Command(
        "runs",
        runs.cmd_runs,
        "list runs on disk (archived ones hidden)",
        (
            arg("experiment", nargs="?"),
            arg("--json", action="store_true"),
            arg("--archived", action="store_true", help="list the archived runs instead"),
            arg(
                "--filter",
                "-f",
                default="",
                metavar="TERMS",
                help="e.g. 'lr<1e-4', 'tag:baseline', 'status=finished', plain text (all must match)",
            ),
            arg(
                "--sort",
                default="started",
                metavar="COLUMN",
                help="started (default), status, result, progress, or any hyperparameter/metric; "
                "--sort=-COLUMN reverses",
            ),
        ),
    ),
    Command(
        "params",
        models.cmd_params,
        "parameter table of a model (no weights loaded)",
        (
            arg(
                "model",
                help="preset (bert-base, bert-tiny, bert-micro), Hub id, local folder, or run:<experiment> "
                "(its latest finished run), run:<experiment>/<run-id> or run:<run path>",
            ),
            arg("--head", default="base", choices=HEADS),
            arg("--diff-against", metavar="HEAD", choices=HEADS, help="show the diff from this head to --head instead"),
            arg("--format", default="table", choices=("table",) + FORMATS),
            arg("--full", action="store_true", help="every tensor instead of the grouped view"),
        ),
        needs_manifest=False,  # only a run: model needs it
    ),
    Command(
        "export",
        runs.cmd_export,
        "export the tables of runs",
        (
            arg(
                "runs", nargs="*", metavar="RUN", help="experiment (latest run), experiment/run-id, or a run-id prefix"
            ),
            arg("--all", action="store_true", help="every finished, failed or stopped run on disk (not archived)"),
            arg("--format", action="append", choices=FORMATS, help="repeatable; default: all four"),
            arg(
                "--out",
                default="exports",
                help="root of the exports: each export makes a new folder in it (default: ./exports)",
            ),
            arg(
                "--include-running",
                action="store_true",
                help="with --all: also export runs still queued/running/paused (marked in runs.csv)",
            ),
        ),
    ),
    Command(
        "check",
        study.cmd_check,
        "validate the manifest and print the plan",
        (
            arg("--reference", action="store_true", help="print the manifest key reference (Markdown)"),
            arg(
                "--schema",
                action="store_true",
                help="print a JSON Schema of the manifest (for editors: taplo, Even Better TOML)",
            ),
        ),
        needs_manifest=False,  # --reference and --schema need none
    ),
    Command(
        "push",
        models.cmd_push,
        "upload a finished run to the Hugging Face Hub with a model card",
        (
            arg("run", metavar="RUN"),
            arg("--repo", required=True, metavar="OWNER/NAME"),
            arg("--private", action="store_true"),
            arg("--revision", metavar="BRANCH", help="upload to this branch (created if missing)"),
            arg("--dry-run", action="store_true", help="write the exact folder that would be uploaded, upload nothing"),
            arg("--out", help="folder for --dry-run (default: a new temporary folder, printed)"),
        ),
    ),
    Command(
        "tag",
        runs.cmd_tag,
        "add (+name) or remove (-name) tags of a run; no changes: print them",
        # the rest of the line: the global options in it are taken out before the command runs
        (arg("run", metavar="RUN"), arg("changes", nargs=argparse.REMAINDER, metavar="+TAG|-TAG")),
    ),
    Command(
        "note",
        runs.cmd_note,
        'set the note of a run ("" clears it); no text: print it',
        (arg("run", metavar="RUN"), arg("text", nargs="?")),
    ),
    Command(
        "archive",
        runs.cmd_archive,
        "hide runs from listings (kept on disk); --restore shows them again",
        (arg("runs", nargs="+", metavar="RUN"), arg("--restore", action="store_true")),
    ),
    Command(
        "delete",
        runs.cmd_delete,
        "delete runs from disk (asks first; never a running one)",
        (arg("runs", nargs="+", metavar="RUN"), arg("--yes", "-y", action="store_true", help="do not ask")),
    ),
    Command(
        "report",
        study.cmd_report,
        "write the study report (Markdown, LaTeX, HTML with plots)",
        (
            arg(
                "experiments",
                nargs="*",
                metavar="EXPERIMENT",
                help="experiments or glob patterns (demo-*); default: every experiment with a finished run",
            ),
            arg("--out", default="report", help="output folder (default: ./report)"),
            arg("--format", action="append", choices=("md", "latex", "html"), help="repeatable; default: all three"),
            arg("--title", default="Study report"),
        ),
    ),
    Command(
        "verify",
        study.cmd_verify,
        "recompute every reported number from the saved predictions; exit 1 on a mismatch",
        (
            arg(
                "targets",
                nargs="+",
                metavar="RUN|STUDY",
                help="a run (experiment, experiment/run-id, run-id prefix) or experiments as glob patterns (demo-*)",
            ),
            arg("--quiet", "-q", action="store_true", help="print only mismatches and the summary"),
        ),
    ),
    Command(
        "compare",
        runs.cmd_compare,
        "final results of runs side by side, with mean ± std and n of seed groups",
        (
            arg(
                "runs",
                nargs="+",
                metavar="RUN",
                help="experiment (its latest run, or its latest seed group), experiment/run-id, or a run-id prefix",
            ),
            arg("--format", default="md", choices=FORMATS),
        ),
    ),
    Command(
        "queue",
        jobs.cmd_queue,
        "show or change the job queue of the runs directory (shared by consoles and CLI)",
        (
            arg(
                "action",
                nargs="?",
                default="list",
                choices=("list", "pause", "resume", "cancel", "retry", "up", "down", "clean"),
            ),
            arg("job", nargs="?", metavar="JOB", help="job number (as listed), or an experiment (its latest job)"),
            arg("--json", action="store_true"),
        ),
    ),
    Command(
        "attach",
        jobs.cmd_attach,
        "follow a queued or running job's progress (ctrl+c detaches; the job goes on)",
        (
            arg("job", nargs="?", metavar="JOB", help="job number or experiment (default: the first running job)"),
            arg("--json", action="store_true", help="print events as JSON lines"),
        ),
    ),
    Command(
        "notify",
        notify.cmd_notify,
        "where settings.notify sends job news (finished, failed, NaN, stalled); --test sends one now",
        (arg("--test", action="store_true", help="send a test notification to every URL and say which failed"),),
    ),
    Command(
        "control",
        jobs.cmd_control,
        "pause, resume or cancel a running job (any process)",
        (arg("run", metavar="RUN"), arg("action", choices=("pause", "resume", "cancel"))),
    ),
    Command(
        "predict",
        look.cmd_predict,
        "try a run's model: fill-mask (pretrain), label and probabilities (classify), answer span (qa)",
        (
            arg("run", metavar="RUN", help="experiment (latest run), experiment/run-id, or a run-id prefix"),
            arg(
                "texts",
                nargs="*",
                metavar="TEXT",
                help="texts to predict (with [MASK] for pretraining; questions for qa)",
            ),
            arg("--context", default="", help="qa: the passage the answer comes from"),
            arg("--context-file", metavar="PATH", help="qa: read the passage from a file"),
            arg(
                "--file",
                metavar="IN.jsonl",
                help="predict every line (JSON objects with text, or question and context) in batches",
            ),
            arg("--out", metavar="OUT.jsonl", help="write the predictions as JSON lines to this file"),
            arg("--json", action="store_true", help="print each prediction as a JSON line"),
            arg("--top-k", type=int, default=5, help="pretraining: tokens listed per [MASK] (default 5)"),
            arg("--device", default="", help="cpu, cuda or cuda:N (default: the run's device setting)"),
        ),
    ),
    Command(
        "examples",
        look.cmd_examples,
        "a run's evaluation examples and mistakes (masked tokens of a pretraining run), from its saved predictions",
        (
            arg("run", metavar="RUN", help="experiment (latest run), experiment/run-id, or a run-id prefix"),
            arg(
                "--epoch",
                type=_epoch_number,
                metavar="N",
                help=(
                    "the evaluation after epoch N (0: before training; 1.5: inside epoch 2, with eval_steps); "
                    "default: the final one"
                ),
            ),
            arg("--wrong", action="store_true", help="only the mistakes"),
            arg("--cell", metavar="GOLD,PRED", help="classify: one confusion-matrix cell (class names or indices)"),
            arg(
                "--kind",
                choices=("wrong", "unanswerable", "no-answer"),
                help="qa: wrong answers, answers to unanswerable questions, or 'no answer' to answerable ones",
            ),
            arg(
                "--sort",
                default="confidence",
                choices=("confidence", "index"),
                help="most confident first (default) or evaluation order",
            ),
            arg("--limit", type=int, default=20, help="rows printed (0: all; default 20)"),
            arg("--format", action="append", choices=FORMATS, help="print the rows as a table in this format"),
            arg("--out", metavar="FOLDER", help="write the rows and counts per cell/kind (csv and json by default)"),
        ),
    ),
    Command(
        "rerun",
        provenance.cmd_rerun,
        "run a run's exact config again (its config.json and seed, not the manifest's); says what changed since",
        (
            arg("run", metavar="RUN", help="experiment (latest run), experiment/run-id, or a run-id prefix"),
            arg("--detach", "-d", action="store_true", help="queue it and return; see `lmconsole queue`"),
        ),
    ),
    Command(
        "diff",
        provenance.cmd_diff,
        "what differs between two runs: config, code, data, environment, packages",
        (arg("run_a", metavar="RUN"), arg("run_b", metavar="RUN")),
    ),
    Command(
        "clone",
        provenance.cmd_clone,
        "append a new experiment with a run's settings to the manifest (comments kept; validated first)",
        (arg("run", metavar="RUN"), arg("name", metavar="NEW-NAME")),
    ),
)
BY_NAME = {c.name: c for c in COMMANDS}


def _add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    for option in GLOBAL_OPTIONS:
        kw = dict(option.options)
        if not top:  # the subcommand's copy never overwrites a value given before the command
            kw["default"] = argparse.SUPPRESS
        parser.add_argument(*option.flags, **kw)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmconsole",
        description="Pretrain and fine-tune BERT-style models from a terminal console. "
        "Without a command, opens the console on ./experiments.toml.",
    )
    _add_global_options(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sp = sub.add_parser(command.name, help=command.help)
        _add_global_options(sp, top=False)
        for a in command.arguments:
            sp.add_argument(*a.flags, **a.options)
    return p


def _pop_global_options(args, words: list[str]) -> list[str]:
    """Global options after a command that takes the rest of the line (``tag RUN -old --manifest X``)."""
    flags = {f for option in GLOBAL_OPTIONS for f in option.flags}
    out, i = [], 0
    while i < len(words):
        w = words[i]
        name, eq, value = w.partition("=")
        if name in flags and (eq or i + 1 < len(words)):
            setattr(
                args,
                next(o for o in GLOBAL_OPTIONS if name in o.flags).flags[0].lstrip("-").replace("-", "_"),
                value if eq else words[i + 1],
            )
            i += 1 if eq else 2
            continue
        out.append(w)
        i += 1
    return out


def _fail(msg: str, code: int = 2) -> int:
    safe_print(f"lmconsole: {msg}", sys.stderr)
    return code


def _call(command: Command, args) -> int:
    """Run ``command``; what the user can fix ends it with one line on stderr and its exit code."""
    for a in command.arguments:
        if a.options.get("nargs") is argparse.REMAINDER:
            setattr(args, a.flags[0], _pop_global_options(args, getattr(args, a.flags[0])))
    try:
        if command.needs_manifest:
            from engine.manifest import load

            return command.function(args, load(args.manifest))
        return command.function(args)
    except ManifestError as exc:  # only engine.manifest.load raises it: each problem on a line
        print(exc.format(), file=sys.stderr)
        return 2
    except UserError as exc:
        return _fail(str(exc), exc.code)
    except OSError as exc:
        from engine.files import disk_full_message, is_disk_full

        if not is_disk_full(exc):
            raise
        return _fail(disk_full_message(exc), 1)


def main(argv=None, console=None) -> int:
    args = parser().parse_args(argv)
    if args.command is None:
        if console is None:
            return _fail("the console is not available here; use a command (see --help)")
        return console(args.manifest)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrintableStream(out), PrintableStream(err)
    try:
        rc = _call(BY_NAME[args.command], args)
        sys.stdout.flush()  # here, not at exit: a reader gone meanwhile (`| head`) must not print a traceback
        return rc
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # the reader of our output went away (`lmconsole runs --json | head`)
        safe_print("", sys.stdout)  # points stdout at /dev/null so the exit flush is quiet
        return 0
    finally:
        sys.stdout, sys.stderr = out, err


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
