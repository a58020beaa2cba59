"""Nothing read from a run directory leads outside it: a file replaced by a symlink, a FIFO or a
link to a device reads as unreadable (named), never as its target, never as a hang or an endless read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine.cli.main import main
from engine.files import read_json, read_json_object
from engine.store.runs import read_events
from support import PYTHONPATH
from support.fakes import write_manifest, write_run

RID = "20260101-100000-000000-bbbb"


@pytest.mark.parametrize("name", ["results.json", "status.json", "config.json"])
def test_a_linked_run_file_is_never_read_nor_shown(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", RID)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"status": "finished", "accuracy": 0.123456789, "token": "SECRET-VALUE"}))
    (run.path / name).unlink()
    (run.path / name).symlink_to(secret)
    data, problem = read_json_object(run.path / name)
    assert data == {} and problem == f"unreadable: {name}: a symbolic link, not a file"
    assert read_json(run.path / name, "default") == "default"
    assert main(["runs", "--json"]) == 0
    out = capsys.readouterr().out
    assert "SECRET-VALUE" not in out and "0.123456789" not in out and RID in out


def _runs_cli(tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "tui.entry", "--manifest", str(tmp_path / "experiments.toml"), "runs", "--json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_an_events_fifo_does_not_hang_runs(tmp_path):
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", RID)
    run.events_path.unlink()
    os.mkfifo(run.events_path)
    proc = _runs_cli(tmp_path)  # the old reader blocked in open() forever: TimeoutExpired
    assert proc.returncode == 0 and RID in proc.stdout, proc.stderr
    assert read_events(run.events_path) == ([], 0)


ENDLESS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from engine.store.runs import read_events
print(read_events(sys.argv[1]))
"""


def test_events_linked_to_dev_zero_is_no_endless_read(tmp_path):
    path = tmp_path / "events.jsonl"
    path.symlink_to("/dev/zero")
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    proc = subprocess.run(
        [sys.executable, "-c", ENDLESS, str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "([], 0)", proc.stderr[-500:]
