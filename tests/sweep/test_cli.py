"""``lmconsole run`` and ``lmconsole sweep`` on a sweep: what they refuse, each in one line with what to do."""

from __future__ import annotations

from support.fakes import write_manifest

from engine.cli import main as cli

MANIFEST = """
[[experiment]]
name = "plain"
task = "classify"
model = "bert-micro"
dataset = "embedded:sst2"

[[experiment]]
name = "sw"
task = "classify"
model = "bert-micro"
dataset = "embedded:sst2"
[experiment.sweep.parameters]
learning_rate = [1e-4, 1e-3]
"""


def test_run_and_sweep_refuse_what_a_sweep_cannot_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(write_manifest(tmp_path, MANIFEST).parent)
    assert cli.main(["run", "sw", "--resume"]) == 2
    assert "sw is a sweep: its trials are queue jobs" in capsys.readouterr().err
    assert cli.main(["run", "sw", "plain"]) == 2
    assert "sw is a sweep, which is queued; run it on its own" in capsys.readouterr().err
    assert cli.main(["sweep", "plain"]) == 2
    assert "plain is no sweep" in capsys.readouterr().err
    assert cli.main(["sweep", "sw"]) == 2
    assert "sweep sw has no trials yet; queue it: lmconsole run sw" in capsys.readouterr().err
