"""The runs on disk: ``runs`` lists them, ``tag``/``note``/``archive``/``delete`` tidy them up,
``export`` writes their tables, ``compare`` puts their final results side by side."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

from engine.cli.refs import as_user_error, runs_of
from engine.errors import UserError
from engine.status import REASON_SHOWN
from engine.tables import FORMATS


def _row_flags(row, run_flags) -> list:
    """Flags on a finished, readable run's results (engine.metrics.flags)."""
    return run_flags(row.run, row.results, row.config) if row.status == "finished" and not row.problems else []


def cmd_runs(args, manifest) -> int:
    from engine.metrics.flags import run_flags
    from engine.store.listing import align, differing_keys, filter_rows, fmt_value, list_rows, sort_rows
    from engine.store.runs import RunStore

    rows = list_rows(RunStore(manifest.runs_dir), args.experiment, archived=True if args.archived else False)
    rows = filter_rows(rows, args.filter)
    column = args.sort.lstrip("-")
    if (
        rows
        and column not in ("started", "experiment", "run", "status", "progress", "result", "tags", "note")
        and all(r.value(column) is None for r in rows)
    ):
        raise UserError(
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
    # the result right after the status: at 80 columns it is what must never be cut
    header = ["experiment", "run", "status", "result", "progress", *hyper, "tags", "note"]
    table = []
    for r in rows:
        note = r.reason if r.status in REASON_SHOWN and r.reason else r.note
        table.append(
            [
                r.run.experiment,
                r.run.run_id,
                r.status + (" (archived)" if r.archived else ""),
                r.result_text,
                r.progress,
                *(fmt_value(r.config.get(k)) for k in hyper),
                " ".join(r.tags),
                " ".join(note.split())
                + (f" FLAGS: {n} (see lmconsole report)" if (n := len(_row_flags(r, run_flags))) else ""),
            ]
        )
    lines = align(header, table)
    if sys.stdout.isatty():  # a terminal: fit its width (a pipe or a file gets every column)
        width = shutil.get_terminal_size().columns
        lines = _fit_terminal(header, table, len(hyper), width)
    for line in lines:
        print(line)
    return 0


def _fit_terminal(header: list[str], table: list[list[str]], n_hyper: int, width: int) -> list[str]:
    """The runs table for a terminal ``width`` columns wide: the result column is never cut.

    Too wide, the run ids shrink to their short form (as git's short hashes; each still names its
    run on the command line), then the differing settings go from the right, then a long
    experiment name is shortened; the notes cut at the line's end (a failure's reason among them)
    follow the table whole, wrapped.
    """
    from engine.store.listing import align, fit_table, short_ids

    notes: list[str] = []
    if max(map(len, align(header, table))) > width:
        short = short_ids([row[1] for row in table])
        table = [[*row[:1], short[row[1]], *row[2:]] for row in table]
        notes.append("run ids shortened to their last characters, which name the run in any command")
    lines, hidden = fit_table(header, table, width, drop=list(range(5, 5 + n_hyper)), keep=3, squeeze=0)
    if hidden:
        notes.append(f"{len(hidden)} differing settings left out at this width: {', '.join(hidden)}")
    cut = [(row, line) for row, line in zip(table, lines[1:]) if row[-1] and row[-1] not in line]
    for row, _ in cut:
        lines += textwrap.wrap(f"{row[0]}/{row[1]}: {row[-1]}", width, subsequent_indent="    ", break_on_hyphens=False)
    if notes:
        lines += textwrap.wrap(f"({'; '.join(notes)}; `lmconsole runs | cat` shows everything)", width)
    return lines


# -- run hygiene: tag, note, archive, delete --------------------------------------------------


def cmd_tag(args, manifest) -> int:
    from engine.store.meta import MetaError, change_tags, parse_tag_changes, read_meta
    from engine.store.runs import RunStore

    (run,) = runs_of(RunStore(manifest.runs_dir), [args.run])
    try:
        meta = change_tags(run, *parse_tag_changes(args.changes)) if args.changes else read_meta(run)
    except MetaError as exc:
        raise UserError(str(exc)) from None
    print(f"{run.experiment}/{run.run_id}: tags {' '.join(meta['tags']) or '(none)'}")
    return 0


def cmd_note(args, manifest) -> int:
    from engine.store.meta import MetaError, read_meta, set_note
    from engine.store.runs import RunStore

    (run,) = runs_of(RunStore(manifest.runs_dir), [args.run])
    if args.text is None:
        print(read_meta(run)["note"])
        return 0
    try:
        meta = set_note(run, args.text)
    except MetaError as exc:
        raise UserError(str(exc)) from None
    print(f"{run.experiment}/{run.run_id}: " + ("note set" if meta["note"] else "note cleared"))
    return 0


def cmd_archive(args, manifest) -> int:
    from engine.store.meta import MetaError, set_archived
    from engine.store.runs import RunStore

    for run in runs_of(RunStore(manifest.runs_dir), args.runs):
        try:
            set_archived(run, not args.restore)
        except MetaError as exc:
            raise UserError(str(exc)) from None
        print(
            f"{'restored' if args.restore else 'archived'} {run.experiment}/{run.run_id}"
            + (
                ""
                if args.restore
                else " (hidden; `lmconsole runs --archived` lists it, `archive --restore` brings it back)"
            )
        )
    return 0


def cmd_delete(args, manifest) -> int:
    from engine.store.meta import MetaError, delete_run
    from engine.store.runs import RunStore

    runs = runs_of(RunStore(manifest.runs_dir), args.runs)
    names = ", ".join(f"{r.experiment}/{r.run_id}" for r in runs)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"delete {names}: pass --yes to confirm (no terminal to ask on)")
        answer = input(f"delete {names} and all its files (checkpoints, model)? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for run in runs:
        try:
            delete_run(run)
        except MetaError as exc:
            raise UserError(str(exc), code=1) from None
        print(f"deleted {run.experiment}/{run.run_id}")
    return 0


# -- results: export, compare -------------------------------------------------------------------


def cmd_export(args, manifest) -> int:
    from engine.files import is_disk_full
    from engine.store.meta import is_archived
    from engine.store.runs import RunStore
    from engine.study.export import export_folder, export_runs, split_exportable

    store = RunStore(manifest.runs_dir)
    runs = runs_of(store, args.runs)
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
        raise UserError("name runs to export, or pass --all")
    if not runs:
        raise UserError(f"no runs to export under {store.root}")
    formats = tuple(args.format or FORMATS)
    problems: list[str] = []
    try:
        written = export_runs(runs, Path(args.out), formats, problems)
    except OSError as exc:
        if is_disk_full(exc):
            raise  # one line naming the file and the free space (cli.main)
        raise UserError(
            f"cannot write to --out {args.out}: {exc.strerror or exc}; choose a writable folder", code=1
        ) from None
    for p in problems:
        print(f"lmconsole: {p}", file=sys.stderr)
    print(
        f"exported {len(written)} files for {len(runs)} run(s) to "
        f"{(export_folder(written) or Path(args.out)).resolve()}"
    )
    return 0


def cmd_compare(args, manifest) -> int:
    from engine.store.runs import RunStore
    from engine.store.seeds import group_of, group_runs
    from engine.study.export import comparison_table

    store = RunStore(manifest.runs_dir)
    runs: list = []
    with as_user_error():
        for ref in args.runs:
            run = store.get(ref)
            group = group_of(run) if ref == run.experiment else ""  # an experiment name: its latest seed group
            runs += [r for r in (group_runs(store, group, run.experiment) if group else [run]) if r not in runs]
    table = comparison_table(runs)
    sys.stdout.write(table.to_markdown() + "\n" if args.format == "md" else table.render(args.format))
    return 0
