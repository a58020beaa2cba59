"""``lmconsole check`` prints the memory estimate of every training experiment, and says why when it cannot."""

from __future__ import annotations

from engine.cli import main as cli
from engine.manifest import load
from engine.models.memory import experiment_estimate
from support.fakes import MANIFEST, write_manifest


def test_check_prints_an_estimate_for_every_training_experiment(workdir, capsys, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_VISIBLE_GPUS", "")  # the host's RAM, whatever this machine has
    path = write_manifest(
        workdir,
        MANIFEST + '\n[[experiment]]\nname = "far"\ntask = "qa"\nmodel = "x/y"\ndataset = "embedded:squad_v2"\n',
    )
    assert cli.main(["--manifest", str(path), "check"]) == 0
    out = capsys.readouterr().out
    section = out.split("memory estimate per device")[1].splitlines()[1:]
    m = load(path)
    training = [e for e in m.experiments if e.task in ("pretrain", "classify", "qa")]
    assert len(section) == len(training) >= 4
    for exp, line in zip(training, section):
        est = experiment_estimate(m, exp, on_gpu=False)[0]
        if exp.name == "far":
            assert line.split() == [
                "far",
                "unknown:",
                "x/y:",
                *"no local config.json (mirror or cache) to read its size from".split(),
            ]
        else:
            assert est is not None and line.split(None, 1) == [exp.name, est.line()], line
            assert "of host RAM (fp32: weights" in line
