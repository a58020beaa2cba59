"""Exports: CSV round-trips exactly, LaTeX escapes, Markdown rounds; other tools can read them."""

import csv
import io
import json

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
