"""A full disk outside training is one line naming the file and the free space: no traceback, no
temporary file left, the file it would have replaced unchanged."""

from __future__ import annotations

import errno

import pytest

import engine.files
from engine.cli.main import main
from support.fakes import write_manifest, write_run

RID = "20260101-100000-000000-bbbb"


def _full(*_args):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("argv", [["note", RID, "a note"], ["tag", RID, "+best"], ["run", "params", "--detach"]])
def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", RID)
    before = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    monkeypatch.setattr(engine.files.os, "fsync", _full)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("lmconsole: disk full while writing ") and "GiB free there" in err
    after = {p for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert not [p for p in after if p.name.endswith(".tmp")]
    assert all(p.read_bytes() == data for p, data in before.items())
    assert run.path.is_dir()
