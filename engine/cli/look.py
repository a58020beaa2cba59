"""Looking inside a trained model: ``predict`` tries a run's model on new input, ``examples``
lists the evaluation rows it got wrong (from the predictions the run saved: the final evaluation's,
or any epoch's with ``--epoch``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.cli.output import safe_print
from engine.cli.refs import as_user_error, get_run
from engine.errors import UserError


def _run(manifest, ref: str):
    from engine.store.runs import RunStore

    with as_user_error():
        return get_run(RunStore(manifest.runs_dir), ref)


def _inputs(args, predictor) -> list[dict]:
    """The rows to predict: ``--file`` lines, or the texts of the command line (with the QA context)."""
    from engine.study.predict import read_jsonl_inputs

    if args.file:
        if args.texts:
            raise UserError("give texts on the command line or --file, not both")
        return read_jsonl_inputs(args.file, predictor.input_keys)
    if not args.texts:
        raise UserError(f"give a text to predict (or --file in.jsonl with {', '.join(predictor.input_keys)})")
    if predictor.task != "qa":
        if args.context or args.context_file:
            raise UserError(f"--context is for question answering; {predictor.run_name} is a {predictor.task} run")
        return [{"text": t} for t in args.texts]
    context = args.context
    if args.context_file:
        try:
            context = Path(args.context_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --context-file {args.context_file}: {exc}") from None
    if not context or not context.strip():
        raise UserError(f"{predictor.run_name} answers questions: give the passage with --context or --context-file")
    return [{"question": q, "context": context} for q in args.texts]


def cmd_predict(args, manifest) -> int:
    from engine.study.predict import answer_lines, load_predictor

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    run = _run(manifest, args.run)
    predictor = load_predictor(run, args.device)
    rows = _inputs(args, predictor)
    results = predictor.predict(rows, top_k=args.top_k)
    if args.out:
        text = "".join(json.dumps(r) + "\n" for r in results)
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
        print(f"{len(results)} predictions of {predictor.run_name} written to {args.out}", file=sys.stderr)
        return 0
    if args.json or args.file:
        for r in results:
            safe_print(json.dumps(r))
        return 0
    for r in results:
        for line in answer_lines(predictor.task, r):
            safe_print(line)
    return 0


def _cell(value: str, examples) -> tuple[int, int]:
    """``--cell GOLD,PRED`` by class names or label indices."""
    names = list(examples.names)
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2:
        raise UserError(f"--cell {value!r}: give GOLD,PREDICTED (class names or indices: {', '.join(names)})")
    out = []
    for p in parts:
        if p in names:
            out.append(names.index(p))
        elif p.isdigit() and int(p) < len(names):
            out.append(int(p))
        else:
            raise UserError(f"--cell {value!r}: {p!r} is not a class of this run ({', '.join(names)})")
    return out[0], out[1]


QA_KIND_OPTIONS = {"wrong": 1, "unanswerable": 2, "no-answer": 3}  # --kind -> position in QA_KINDS


def cmd_examples(args, manifest) -> int:
    from engine.study.examples import QA_KINDS, ClassExamples, MaskExamples, epoch_words, load_examples
    from engine.tables import export_tables

    run = _run(manifest, args.run)
    ex = load_examples(run, manifest.settings.data_mirror, epoch=args.epoch)
    by_conf = args.sort == "confidence"
    rows: list
    if isinstance(ex, MaskExamples):
        if args.cell or args.kind:
            raise UserError("--cell and --kind are for fine-tuned runs; a pretraining run takes --wrong")
        rows = ex.select(wrong_only=args.wrong, by_confidence=by_conf)
        summary = [f"{ex.run_name}{epoch_words(ex.epoch)}: {len(ex.rows)} masked positions, gold token ranked"]
        summary += [f"  {k}: {n}" for k, n in ex.counts().items()]
    elif isinstance(ex, ClassExamples):
        if args.kind:
            raise UserError("--kind is for question answering runs; use --wrong or --cell here")
        cell = _cell(args.cell, ex) if args.cell else None
        rows = ex.select(wrong_only=args.wrong, cell=cell, by_confidence=by_conf)
        counts = ex.counts()
        wrong = sum(r.wrong for r in ex.rows)
        summary = [f"{ex.run_name}{epoch_words(ex.epoch)}: {len(ex.rows)} evaluation rows, {wrong} wrong"]
        summary += [
            f"  gold {ex.name(g)} -> predicted {ex.name(p)}: {counts[g][p]}"
            for g in range(len(counts))
            for p in range(len(counts))
        ]
    else:
        if args.cell:
            raise UserError("--cell is for classification runs; use --kind wrong|unanswerable|no-answer here")
        kind = QA_KINDS[QA_KIND_OPTIONS[args.kind]] if args.kind else ""
        rows = ex.select(kind=kind, wrong_only=args.wrong or bool(kind), by_confidence=by_conf)
        summary = [f"{ex.run_name}{epoch_words(ex.epoch)}: {len(ex.rows)} questions"]
        summary += [f"  {k}: {n}" for k, n in ex.counts().items()]
    table = ex.table(rows)  # type: ignore[arg-type]  # rows are of ex's own kind
    if args.out:
        formats = tuple(args.format or ("csv", "json"))
        try:
            written = export_tables([table, ex.counts_table()], Path(args.out), formats)
        except OSError as exc:
            raise UserError(
                f"cannot write to --out {args.out}: {exc.strerror or exc}; choose a writable folder"
            ) from None
        print(f"{len(rows)} examples and the counts written: {', '.join(str(p) for p in written)}")
        return 0
    if args.format:
        if len(args.format) > 1:
            raise UserError("print one --format at a time (or write several with --out FOLDER)")
        safe_print(table.render(args.format[0]))
        return 0
    for line in summary:
        safe_print(line)
    shown = rows[: args.limit] if args.limit else rows
    safe_print(f"\n{len(rows)} matching, {len(shown)} shown ({'most confident first' if by_conf else 'in order'}):")
    for r in shown:
        safe_print(_example_line(ex, r))
    return 0


def _example_line(ex, r) -> str:
    from engine.study.examples import ClassExamples, MaskExamples

    if isinstance(ex, MaskExamples):
        mark = "WRONG" if r.wrong else "ok"
        tops = ", ".join(f"{t} {p:.3f}" for t, p in r.top)
        return f"  #{r.index}:{r.position:<4} gold {r.gold!r} {mark}: {tops}\n    {r.masked_text()}"
    if isinstance(ex, ClassExamples):
        mark = "WRONG" if r.wrong else "ok"
        said = f"gold {ex.name(r.gold)}, predicted {ex.name(r.prediction)} ({r.confidence:.3f})"
        return f"  #{r.index:<5} {said} {mark}: {r.text}"
    gold = " | ".join(r.gold) if r.gold else "(no answer)"
    pred = repr(r.prediction) if r.prediction else "(no answer)"
    return (
        f"  [{r.kind}] {r.question}\n    gold {gold}; predicted {pred} "
        f"({r.confidence:.3f}, null - span {r.na_score:.3f})\n    {r.marked_context()}"
    )
