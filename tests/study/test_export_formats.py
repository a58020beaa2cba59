"""Exports: CSV round-trips exactly, LaTeX escapes, Markdown rounds; other tools can read them."""

import csv
import io
import json

import pytest

from engine.tables import Table, latex_escape

T = Table(
    name="demo",
    columns=("module", "parameters", "ratio", "note"),
    rows=(("encoder.layer_0 #1", 1538, 0.1234567890123, "50% & more"), ("cls_head", 590592, 1e-9, None)),
    title="Params_of BERT",
)


def test_csv_round_trip_exact():
    header, rows = Table.parse_csv(T.to_csv())
    assert tuple(header) == T.columns
    assert [tuple(r) for r in rows] == [tuple(r) for r in T.rows]


def test_csv_readable_by_stdlib():
    rows = list(csv.DictReader(io.StringIO(T.to_csv())))
    assert float(rows[0]["ratio"]) == 0.1234567890123
    assert rows[0]["note"] == "50% & more"


def test_json_round_trip_and_nan():
    t = Table(name="x", columns=("a",), rows=((float("nan"),), (1.5,)))
    back = Table.from_json(t.to_json())
    assert back.rows[1] == (1.5,) and back.rows[0][0] != back.rows[0][0]
    json.loads(t.to_json())  # strict JSON: no bare NaN


def test_latex_escapes_specials():
    tex = T.to_latex()
    assert r"encoder.layer\_0 \#1" in tex
    assert r"50\% \& more" in tex
    assert r"\caption{Params\_of BERT}" in tex
    assert r"\begin{tabular}{lrrl}" in tex
    assert (
        latex_escape("a_b%c&d#e$f{g}h~i^j\\")
        == r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}"
    )


def test_markdown_rounds_and_aligns():
    md = T.to_markdown()
    assert "| encoder.layer_0 #1 | 1,538 | 0.1235 | 50% & more |" in md
    assert "|---|---:|---:|---|" in md
    assert "1e-09" in md


def test_write_all_formats(tmp_path):
    from engine.tables import export_tables

    paths = export_tables([T], tmp_path)
    assert sorted(p.suffix for p in paths) == [".csv", ".json", ".md", ".tex"]


def test_latex_comparison_of_five_runs_fits_the_page(tmp_path):
    """Five ``experiment/run-id`` headers ran off the page: they are shortened (full ids in a note) and a
    table still too wide is scaled to the line width; pdflatex reports no overfull box."""
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    ids = [f"20261207-2315{i:02d}-000000-{tail}" for i, tail in enumerate(("a1b2", "c3d4", "e5f6", "a7b8", "c9d0"))]
    columns = ("metric", *(f"demo-sst2-long-name/{r}" for r in ids))
    rows = [(f"eval_metric_{k}", *(0.123456 * (k + j) for j in range(5))) for k in range(4)]
    tex = Table("comparison", columns, rows, title="Final results by run").to_latex()
    assert "metric & demo-sst2-long-name/a1b2 & demo-sst2-long-name/c3d4 &" in tex
    assert all(tex.count(r) == 1 for r in ids)  # the full ids, once each, in the note
    wide = Table("comparison", ("metric", *(f"{c}-with-a-much-longer-experiment-name" for c in columns[1:])), rows)
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{graphicx}\\begin{document}\n" + tex + wide.to_latex() + "\\end{document}\n"
    )
    out = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "Overfull \\hbox" not in out.stdout, out.stdout[-3000:]
