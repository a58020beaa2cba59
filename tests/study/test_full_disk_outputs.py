"""``report`` and ``export`` on a disk that fills up part way: one line naming the file and the free
space, no half-written file, no temporary, no partial export folder, the previous report intact."""

from __future__ import annotations

import pytest
from support.fakes import write_manifest, write_run
from support.write_hooks import WriteHooks

from engine.cli.main import main
from engine.files import atomic_write_json

MANIFEST = '[[experiment]]\nname = "pre"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\n'


@pytest.fixture
def store(workdir):
    write_manifest(workdir, MANIFEST)
    for rid in ("20260101-100000-000000-aaaa", "20260102-100000-000000-bbbb"):
        run = write_run(workdir / "runs", "pre", rid, real_pretrain_metrics=True)
        history = [{"epoch": e, "mlm_perplexity": 900.0 / e, "mlm_accuracy": 0.1 * e} for e in (1, 2)]
        atomic_write_json(run.path / "results.json", {**run.results(), "history": history})  # the report plots it
    return workdir


def _files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("lmconsole: disk full while writing ") and "GiB free there" in err, err
    return err


@pytest.mark.parametrize("full_at", [1, 3])  # the first file written (a plot), and one part way
def test_report_on_a_full_disk_keeps_the_previous_report_whole(store, capsys, full_at):
    assert main(["report", "--out", "rep"]) == 0
    before = _files(store / "rep")
    assert any(p.suffix == ".png" for p in before)  # the plots are among what a full disk could cut
    hooks = WriteHooks(store / "rep", full_at=full_at).install()
    try:
        code = main(["report", "--out", "rep"])
    finally:
        hooks.remove()
    assert code == 1
    _one_line(capsys)
    assert _files(store / "rep") == before  # nothing half-written, nothing left over


@pytest.mark.parametrize("full_at", [1, 4])
def test_export_on_a_full_disk_leaves_no_folder_behind(store, capsys, full_at):
    (store / "exports").mkdir()
    hooks = WriteHooks(store / "exports", full_at=full_at).install()
    try:
        code = main(["export", "--all", "--out", "exports"])
    finally:
        hooks.remove()
    assert code == 1
    _one_line(capsys)
    assert list((store / "exports").iterdir()) == []
