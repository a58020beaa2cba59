"""A stop signal after a job's last step boundary (during its final evaluation or model save): the
job finishes and keeps its results, the process is not killed by the signal (a finished run used to
end with rc -15, or a KeyboardInterrupt), and ``lmconsole run`` starts nothing more."""

from __future__ import annotations

import os
import signal

import pytest
from support.fakes import write_manifest

import engine.job.preempt
import engine.job.runner
from engine.cli.main import main

# Two quick experiments: on code that ignores a late stop the second one runs (and fails the test fast).
MANIFEST = "".join(
    f'[[experiment]]\nname = "{name}"\ntask = "inspect"\nmodel = "bert-micro"\n\n' for name in ("params", "more")
)


def _late_signal_task(sig):
    from engine.tasks.inspect import run as real

    def run(ctx):  # the inspect task has no step boundary: the signal comes while it works
        os.kill(os.getpid(), sig)
        return real(ctx)

    return run


@pytest.mark.parametrize(
    "sig, argv, code, words",
    [
        (signal.SIGTERM, ["params"], 0, "SIGTERM arrived after the last step: this run finished"),
        (signal.SIGINT, ["params", "more"], 130, "stopped by SIGINT; not started: more"),
    ],
)
def test_a_late_stop_signal_lets_the_run_finish_and_starts_nothing_more(
    workdir, monkeypatch, capsys, sig, argv, code, words
):
    write_manifest(workdir, MANIFEST)
    monkeypatch.setattr(engine.job.preempt, "_late", [], raising=False)
    monkeypatch.setattr(engine.job.runner, "task_function", lambda task: _late_signal_task(sig))
    delivered = []  # what reaches the handler the job found (pytest's): the process would die of it
    previous = signal.signal(sig, lambda s, f: delivered.append(s))
    try:
        rc = main(["run", *argv])
    finally:
        signal.signal(sig, previous)
    err = capsys.readouterr().err
    assert (rc, delivered) == (code, []), err
    assert words in err, err
    runs = workdir / "runs"
    assert [p.read_text().count('"finished"') for p in runs.glob("*/*/status.json")] == [1]
    assert not (runs / "more").exists()
