"""A run as the source of new runs, from the console: rerun it exactly, or clone it into the manifest.

The same code as ``lmconsole rerun`` / ``lmconsole clone`` (:mod:`engine.cli.provenance`):

- rerun: its ``config.json`` and seed again (not the manifest's current values), through the
  queue; the confirmation names the run and what changed since in code and packages;
- clone: a new ``[[experiment]]`` with the run's settings appended to the manifest (comments
  kept, validated first), named in a one-line dialog; the console then reloads the manifest.

The run view and the runs tab both call these.
"""

from __future__ import annotations

from engine.errors import UserError

from .dialogs import ConfirmDialog, InputDialog

CHANGES_SHOWN = 4  # lines of "changed since" in the confirmation (it must fit 80x24)


def rerun_question(plan) -> str:
    """The confirmation's text: what is rerun, how, and what changed since."""
    lines = [f"Rerun {plan.original} exactly (its config.json and seed), through the queue?"]
    if plan.changes:
        lines.append("Changed since that run:")
        lines += [f"  {section} {key}: {then} -> {now}" for section, key, then, now in plan.changes[:CHANGES_SHOWN]]
        if len(plan.changes) > CHANGES_SHOWN:
            lines.append(f"  … {len(plan.changes) - CHANGES_SHOWN} more (`lmconsole rerun` lists them)")
    elif (plan.run.path / "packages.txt").exists():
        lines.append("Code and packages are as they were.")
    else:  # a run from before provenance was recorded: nothing to compare with
        lines.append("That run recorded no code or package versions to compare with.")
    return "\n".join(lines)


def ask_rerun(screen, run) -> None:
    """Confirm, then queue the rerun of ``run``; ``screen`` says what happened."""
    from engine.cli.provenance import plan_rerun

    app = screen.app
    if run is None:
        screen.say("no run to rerun yet: the job has not started")
        return
    try:
        plan = plan_rerun(app.manifest, run)
    except UserError as exc:
        screen.say(f"cannot rerun: {exc}", "error")
        return

    def confirmed(yes: bool | None) -> None:
        if not yes:
            return
        try:
            jobs = plan.queue(app.queue_factory)
        except (UserError, OSError) as exc:
            screen.say(f"rerun not queued: {exc}", "error")
            return
        screen.refresh_queue()
        if jobs:
            screen.say(f"queued #{jobs[0].id} {jobs[0].experiment}: a rerun of {plan.original}", "ok")
        else:
            screen.say(f"{plan.original}: the rerun was not queued (see the jobs tab)", "warning")

    app.push_screen(ConfirmDialog(rerun_question(plan), yes="Rerun"), confirmed)


def ask_clone(screen, run) -> None:
    """Ask a name, then append ``run``'s settings to the manifest as that experiment and reload it."""
    from engine.cli.provenance import clone_run

    app = screen.app
    if run is None:
        screen.say("no run to clone yet: the job has not started")
        return

    def named(name: str | None) -> None:
        name = (name or "").strip()
        if not name:
            return
        try:
            clone_run(app.manifest, run, name)
        except (UserError, OSError) as exc:
            screen.say(f"not cloned: {exc}", "error")
            return
        app.reload_manifest()
        screen.say(f"added experiment {name} to {app.manifest_path.name}: r in the experiments tab runs it", "ok")

    app.push_screen(
        InputDialog(
            f"Clone {run.experiment}/{run.run_id} into the manifest as a new experiment named:",
            value=f"{run.experiment}-copy",
            hint=f"its settings are appended to {app.manifest_path.name} (comments kept); enter adds, esc cancels",
        ),
        named,
    )
