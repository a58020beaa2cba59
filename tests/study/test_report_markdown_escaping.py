"""report.md shows raw HTML from a manifest value or a title as text, as report.html and
report.tex escape theirs: Markdown viewers would otherwise render (or run) it."""

from __future__ import annotations

from support.fakes import write_manifest, write_run

from engine.cli.main import main

MANIFEST = '[[experiment]]\nname = "pre"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\n'


def test_report_md_has_no_raw_html(workdir, capsys):
    write_manifest(workdir, MANIFEST)
    # an unmatched backtick must not hide the tag from the escaping (Markdown shows such a backtick as is)
    evil = "x` <img src=x onerror=alert(1)>"
    write_run(workdir / "runs", "pre", "20260101-100000-000000-aaaa", config={"dataset": evil, "dataset_config": evil})
    assert main(["report", "--out", "rep", "--title", "<script>alert(2)</script> study", "--format", "md"]) == 0
    md = (workdir / "rep" / "report.md").read_text()
    assert "<img" not in md and "<script" not in md
    assert "&lt;script>alert(2)&lt;/script> study" in md and "&lt;img src=x" in md
