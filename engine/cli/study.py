"""The manifest and the study: ``check`` validates the manifest and prints the plan, ``report``
writes the study report, ``verify`` recomputes its numbers from the saved predictions."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli.refs import as_user_error, get_run
from engine.errors import NotFound, UserError


def cmd_check(args) -> int:
    """Reads the manifest unless asked for its reference or schema (those need none)."""
    if args.schema:
        from engine.manifest import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.reference:
        from engine.manifest import reference_markdown

        print(reference_markdown())
        return 0
    from engine.errors import ManifestError
    from engine.manifest import load, missing_folders, unavailable_devices
    from engine.queue.gpus import machine_gpus

    manifest = load(args.manifest)
    missing = missing_folders(manifest)  # knowable now, without loading any data
    missing += unavailable_devices(manifest, len(machine_gpus()))  # the driver's list: no torch import
    if missing:
        raise ManifestError(manifest.path, missing)
    print(f"{manifest.path}: {len(manifest.experiments)} experiments, runs in {manifest.runs_dir}")
    name_w = max(len(e.name) for e in manifest.experiments) if manifest.experiments else 0
    task_w = max(len(e.task) for e in manifest.experiments) if manifest.experiments else 0
    for exp in manifest.experiments:
        deps = f" (after {', '.join(exp.dependencies)})" if exp.dependencies and exp.task != "study" else ""
        seeds = f" [seeds {', '.join(map(str, exp.seeds))}]" if getattr(exp, "seeds", ()) else ""
        target = exp.hub_model_id if exp.task == "push" else exp.model
        what = (
            f"{len(exp.steps)} steps"
            if exp.task == "study"
            else (f"{exp.model} -> {target}" if exp.task == "push" else target)
        )
        print(f"  {exp.name:<{name_w}}  {exp.task:<{task_w}}  {what}{seeds}{deps}")
    for exp in manifest.experiments:
        if exp.task == "study":
            print(study_plan_text(manifest, exp.name))
        if exp.sweep is not None:
            print(exp.sweep.plan_text(exp.name))
    estimates = memory_text(manifest)
    if estimates:
        print(estimates)
    return 0


def memory_text(manifest) -> str:
    """The memory estimate of every training experiment on this machine's device (a GPU where the job would get
    one, else the CPU's RAM): ``lmconsole check``."""
    from engine.models.memory import experiment_estimate
    from engine.queue.gpus import gpus_needed, scheduler_gpus
    from engine.store.runs import RunStore

    store = RunStore(manifest.runs_dir)
    has_gpus = bool(scheduler_gpus(manifest.settings))
    training = [e for e in manifest.experiments if e.task in ("pretrain", "classify", "qa")]
    if not training:
        return ""
    width = max(len(e.name) for e in training)
    lines = ["memory estimate per device (weights, gradients, AdamW, activations; `engine/models/memory.py`):"]
    for exp in training:
        est, why = experiment_estimate(manifest, exp, gpus_needed(exp, has_gpus) > 0, store)
        lines.append(f"  {exp.name:<{width}}  {est.line() if est is not None else 'unknown: ' + why}")
    return "\n".join(lines)


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


def cmd_report(args, manifest) -> int:
    from engine.store.runs import RunStore
    from engine.study.report import FORMATS, build_report, select, write_report

    store = RunStore(manifest.runs_dir)
    names = manifest.expand_studies(select(manifest.names, args.experiments))  # a study: its steps' runs
    if not names:
        raise NotFound(
            f"no experiment matches {' '.join(args.experiments)}; the manifest has: {', '.join(manifest.names)}"
        )
    report = build_report(store, names, title=args.title, mirror=manifest.settings.data_mirror, manifest=manifest)
    if len(report.sections[0].tables[0].rows) == 0:
        raise UserError(f"no finished run of {', '.join(names)} under {manifest.runs_dir}: run the study first", code=1)
    written = write_report(report, Path(args.out), tuple(args.format or FORMATS))
    main_files = [p for p in written if p.parent == Path(args.out)]
    print(f"report of {len(report.sections[0].tables[0].rows)} runs: " + ", ".join(str(p) for p in main_files))
    return 0


def _explain_rerun(run, checks, what_differs) -> None:
    """Under a rerun that does not match its original: what the two runs did not share."""
    if not any(not c.ok and c.words[0] == "rerun" for c in checks):
        return
    differs = what_differs(run)
    print("  the rerun differs from its original" + (" in:" if differs else " in none of code, data, environment"))
    for line in differs[:12]:
        print(f"    {line}")
    if len(differs) > 12:
        print(f"    … and {len(differs) - 12} more (`lmconsole diff` lists them all)")


def cmd_verify(args, manifest) -> int:
    from engine.errors import VerifyError
    from engine.store.runs import RunStore
    from engine.study.report import select
    from engine.study.verify import save_summary, verify_run, what_differs

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
                raise NotFound(f"no finished run of {target} under {manifest.runs_dir}")
            continue
        with as_user_error():  # a run's name, id or path, as every other command takes it
            runs.append(get_run(store, target))
    failed, total = 0, 0
    for run in runs:
        try:
            checks = verify_run(run, manifest.settings.data_mirror)
        except VerifyError as exc:
            print(f"FAIL {exc}")
            failed += 1
            if run.status().get("status") == "finished":
                save_summary(run, [], error=str(exc))
            continue
        save_summary(run, checks)  # the study report states it
        bad = sum(not c.ok for c in checks)
        print(f"{run.experiment}/{run.run_id}: {len(checks)} checks, {bad} mismatch(es)")
        for c in checks:
            total += 1
            failed += not c.ok
            if not (args.quiet and c.ok):
                print(c.short())
        _explain_rerun(run, checks, what_differs)
    print(f"verify: {total} checks on {len(runs)} run(s), {failed} mismatch(es)")
    return 1 if failed else 0
