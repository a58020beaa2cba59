"""Models: ``params`` prints a model's parameter table (no weights loaded), ``push`` publishes a run's model."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.cli.refs import as_user_error, get_run
from engine.errors import UserError


def cmd_params(args) -> int:
    """Reads the manifest only for a ``run:`` model (the runs directory is in it)."""
    from engine.errors import JobError, ResolveError
    from engine.models.params import diff_table, full_table, grouped_table, rows_for
    from engine.models.source import model_source
    from engine.store.runs import RunStore
    from engine.store.trials import dependency_run

    store = None
    if args.model.startswith("run:"):
        from engine.manifest import load

        store = RunStore(load(args.manifest).runs_dir)

    def find_run(ref: str):  # run:<experiment> = its latest finished run; run:<exp>/<id> or run:<path> = that run
        assert store is not None  # only asked for run: models
        try:
            return get_run(store, ref) if "/" in ref else dependency_run(store, ref)
        except ValueError as exc:  # an unsafe reference: its message as it is
            raise UserError(str(exc)) from None

    try:
        config = model_source(args.model, store=store, find_run=find_run).config()
    except JobError as exc:
        raise UserError(exc.reason, exc.hint) from None
    except (ResolveError, OSError, ValueError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None
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


def cmd_push(args, manifest) -> int:
    from engine.hub.publish import PushError, push
    from engine.store.runs import RunStore

    try:
        with as_user_error():
            run = get_run(RunStore(manifest.runs_dir), args.run)
            result = push(
                run,
                args.repo,
                private=args.private,
                revision=args.revision,
                dry_run=args.dry_run,
                out=Path(args.out) if args.out else None,
            )
    except PushError as exc:
        raise UserError(str(exc), code=1) from None
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
