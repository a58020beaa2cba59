"""The study report and ``lmconsole verify`` on the demo study (tiny settings, all five steps).

The report is written in all three formats; every number it lists (report.json) equals the
value in its run's results or tables and appears in the Markdown; verify passes on the real
runs, and fails (exit 1) after one saved prediction is altered.
"""

import json
import shutil
import subprocess

import pytest
from support.tiny_study import run_tiny_study

from engine.cli.main import main
from engine.study.verify import verify_run
from engine.tables import fmt_num


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    manifest, runs = run_tiny_study(folder)
    return folder, manifest, runs


def _lookup(run, key: str):
    """A fact's key: final.<k>[.i.j], history.<i>.<k>, parameters.<head>, tables.<name>.<row>.<column>."""
    head, *rest = key.split(".")
    if head == "tables":
        t = run.read_table(rest[0])
        return t.rows[int(rest[1])][t.columns.index(rest[2])]
    value = run.results()[head]
    for part in rest:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_report_in_three_formats_with_the_runs_numbers(study, capsys):
    folder, manifest, runs = study
    out = folder / "report"
    assert main(["--manifest", str(manifest.path), "report", "demo-*", "--out", str(out)]) == 0
    md, tex, page = ((out / n).read_text() for n in ("report.md", "report.tex", "report.html"))
    facts = json.loads((out / "report.json").read_text())["facts"]
    by_ref = {f"{r.experiment}/{r.run_id}": r for r in runs.values()}
    assert {f["run"] for f in facts} == set(by_ref)  # every run contributes numbers
    for f in facts:
        assert _lookup(by_ref[f["run"]], f["key"]) == f["value"], f
        assert fmt_num(f["value"], 4, fixed=True) in md, f
    for section in (
        "Parameter counts",
        "Pretraining: demo-pretrain",
        "Classification: demo-sst2",
        "Question answering: demo-squad",
        "Parameter diffs after fine-tuning",
        "Pushed models",
        "Environment",
        "Flags on degenerate results",
    ):
        assert f"## {section}" in md and section in page and section in tex
    assert "NoAns_f1" in md and "empty_baseline_f1" in md and "sacrebleu" in md and "predicted 1 positive" in md
    assert "<img" in page and 'src="data:image/png;base64,' in page and 'src="http' not in page  # self-contained
    assert page.count("data:image/png") == 3 and tex.count(r"\includegraphics") == 3
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert "device" in md and runs["demo-pretrain"].path.joinpath("environment.json").exists()


def _section(md: str, title: str) -> str:
    """The Markdown of the section whose heading starts with ``## title`` (up to the next ``## ``)."""
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 3)
    return md[start : end if end != -1 else len(md)]


def test_report_sections_show_each_runs_own_headline_numbers(study):
    """Read from the runs' results (not from report.json): each number in its own task's section."""
    folder, manifest, runs = study
    out = folder / "report-sections"
    assert main(["--manifest", str(manifest.path), "report", "demo-*", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    expect = {
        "Pretraining: demo-pretrain": ("demo-pretrain", ("mlm_perplexity", "mlm_accuracy", "nsp_accuracy")),
        "Classification: demo-sst2": ("demo-sst2", ("accuracy", "f1", "majority_baseline")),
        "Question answering: demo-squad": ("demo-squad", ("best_f1", "HasAns_f1", "NoAns_f1", "exact")),
    }
    for title, (name, keys) in expect.items():
        # the section's "Final metrics" rows: | metric | scale | value | run |, read cell by cell
        rows = {}
        for line in _section(md, title).splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 4 and cells[3].startswith(f"{name}/"):
                rows.setdefault(cells[0], cells[2])
        final = runs[name].results()["final"]
        for key in keys:
            assert rows.get(key) == fmt_num(final[key], 4, fixed=True), (title, key, rows.get(key), final[key])


def test_report_tex_compiles_with_its_plots(study, tmp_path):
    """``pdflatex report.tex`` builds the PDF the README promises (CI installs a minimal TeX: .ci/run)."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    folder, manifest, _ = study
    out = tmp_path / "report"
    assert main(["--manifest", str(manifest.path), "report", "demo-*", "--out", str(out)]) == 0
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    log = (out / "report.log").read_text(errors="replace")
    assert "LaTeX Warning: File" not in log and "not found" not in log, log[-2000:]  # every plot found
    assert (out / "report.pdf").stat().st_size > 10_000


def test_verify_passes_then_fails_on_an_altered_prediction(study, capsys):
    folder, manifest, runs = study
    for name, run in runs.items():
        checks = verify_run(run)
        assert checks and all(c.ok for c in checks), (name, [c.line() for c in checks if not c.ok])
    assert main(["--manifest", str(manifest.path), "verify", "demo-sst2", "demo-squad"]) == 0
    sst2 = runs["demo-sst2"].path / "predictions.jsonl"
    keep = folder / "keep.jsonl"
    shutil.copy(sst2, keep)
    rows = [json.loads(x) for x in sst2.read_text().splitlines()]
    rows[0]["prediction"] = 1 - rows[0]["prediction"]
    sst2.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        capsys.readouterr()
        assert main(["--manifest", str(manifest.path), "verify", "demo-sst2"]) == 1
        out = capsys.readouterr().out
        assert "FAIL" in out and "accuracy" in out
    finally:
        shutil.copy(keep, sst2)
    preds = runs["demo-squad"].path / "predictions.json"
    saved = preds.read_text()
    altered = json.loads(saved)
    q = next(iter(altered))
    altered[q] = altered[q] + " x" if altered[q] else "x"
    preds.write_text(json.dumps(altered))
    try:
        assert main(["--manifest", str(manifest.path), "verify", "demo-squad"]) == 1
    finally:
        preds.write_text(saved)


def test_report_shows_each_table_once_states_verification_and_mixed_upstream_runs(study, capsys):
    """No table twice (a parameter diff recorded by the fine-tuning and by the inspect step after it
    is shown once, with its source); a Verification section says which runs `lmconsole verify`
    checked; a note when a fine-tuning started from another upstream run than the one shown."""
    from engine.store.runs import RunStore
    from engine.study.report import build_report

    folder, manifest, runs = study
    store = RunStore(manifest.runs_dir)
    assert main(["--manifest", str(manifest.path), "verify", "demo-sst2", "demo-squad"]) == 0
    out = capsys.readouterr().out.splitlines()
    long = [line for line in out if len(line) > 80 and not line.startswith("demo-")]
    assert not long, long  # one line per check at 80 columns, each value once
    assert any(line.startswith("demo-squad/") and "checks, 0 mismatch(es)" in line for line in out)
    report = build_report(store, manifest.names)
    tables = [(t.title, t.columns, t.rows) for sec in report.sections for t in sec.tables]
    assert len(tables) == len(set(tables)), [t[0] for t in tables if tables.count(t) > 1]
    diffs = next(sec for sec in report.sections if sec.title.startswith("Parameter diffs"))
    assert all(any(n.startswith("Source: ") for n in t.notes) for t in diffs.tables)
    verification = next(sec for sec in report.sections if sec.title == "Verification")
    rows = {row[0].split("/")[0]: row for row in verification.tables[0].rows}
    assert rows["demo-sst2"][1] == "all match" and rows["demo-sst2"][2] > 0
    assert rows["demo-pretrain"][1] == "not verified" and "lmconsole verify" in verification.text[0]
    intro = report.sections[0]
    assert not any("started from" in p for p in intro.text)
    pre = runs["demo-pretrain"]
    newer = pre.path.parent / "29991231-235959-000000-ffff"  # demo-pretrain run again, after the fine-tunings
    shutil.copytree(pre.path, newer)
    try:
        intro = build_report(store, manifest.names).sections[0]
        note = next(p for p in intro.text if "started from" in p)
        sst2 = runs["demo-sst2"]
        assert note.startswith(f"demo-sst2/{sst2.run_id} started from demo-pretrain/{pre.run_id}, not from")
        assert "demo-pretrain/29991231-235959-000000-ffff" in note
    finally:
        shutil.rmtree(newer)


def test_console_key_writes_the_report(tmp_path):
    """``w`` on the main screen writes the report of the runs on disk next to the manifest."""
    import asyncio

    from tui.screens.main import MainScreen
    from support.console import make_app, screen_text, wait_for

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("w")
            assert await wait_for(pilot, lambda: "report of" in screen_text(app), timeout=60)
            folder = app.manifest.path.parent / "report"
            assert all((folder / n).is_file() for n in ("report.md", "report.tex", "report.html"))

    asyncio.run(go())


def test_report_explains_why_the_preset_count_differs_from_the_pretrained_models(study):
    """The preset is counted with vocab_size rows; the pretrained model trained fewer tokens: the report says so."""
    import json

    from engine.store.runs import RunStore
    from engine.study.report import build_report

    folder, manifest, runs = study
    pre = runs["demo-pretrain"]
    trained = json.loads((pre.final_model() / "config.json").read_text())["vocab_size"]
    params = next(s for s in build_report(RunStore(manifest.runs_dir), manifest.names).sections if s.title == "Parameter counts")
    note = next(p for p in params.text if "is a preset" in p)
    assert "`vocab_size` = 8,000 rows" in note
    assert f"demo-pretrain/{pre.run_id} trained a WordPiece vocabulary of {trained:,} tokens" in note
