"""A study shared by several machines: two worker processes ask one PostgreSQL-backed study for trials.

The test starts its own PostgreSQL server (Debian's ``postgresql`` package, which .ci/run installs):
``initdb`` into a temporary folder and ``pg_ctl`` on a free port, as the ``postgres`` user when the
tests run as root (the server refuses to run as root). In CI (``LMCONSOLE_CI=1``) a missing server
fails the test instead of skipping it (tests/conftest.py).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import optuna
import pytest
from support.fakes import write_manifest
from support.manifests import CLASSIFY, experiment, manifest_text


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """The URL of a private PostgreSQL server, stopped (and its folder removed) at the end."""
    pg = _pg_bin()
    if pg is None or not (pg / "initdb").exists():
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql)")
    # not under pytest's own temporary folder: that one is private to this user, and the server is not
    folder = Path(tempfile.mkdtemp(prefix="lmconsole-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres never runs as root: as its own user, owning the folder
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", _free_port()

    def pg_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120, cwd=folder)

    init = pg_run(str(pg / "initdb"), "-D", str(data), "-U", "lm", "--auth=trust", "-E", "UTF8")
    assert init.returncode == 0, init.stdout + init.stderr
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = pg_run(str(pg / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    assert start.returncode == 0, start.stdout + start.stderr + (folder / "log").read_text()
    try:
        yield f"postgresql+psycopg://lm@127.0.0.1:{port}/postgres"
    finally:
        pg_run(str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


WORKER = textwrap.dedent("""
    import json, sys
    from engine.manifest import load
    from engine.sweep.study import SweepStudy

    manifest = load(sys.argv[1])
    exp = manifest.get("cls")
    study = SweepStudy(exp, manifest.runs_dir, "cls")  # a shared storage: one study, named after the sweep
    mine = []
    while (asked := study.ask(f"{sys.argv[2]}-{len(mine)}")) is not None:
        number, params = asked
        trial = study.trial(number)
        for epoch in (1, 2):  # what a trial's job reports
            trial.report(params["learning_rate"] * epoch, step=epoch)
        assert study.tell(number, "complete", params["learning_rate"] * 2)
        mine.append(number)
    print(json.dumps(mine))
""")


def test_two_workers_share_one_postgresql_study_each_trial_once(tmp_path, postgres):
    sweep = textwrap.dedent(f"""
        [experiment.sweep]
        method = "random"
        trials = 6
        storage = "{postgres}"
        [experiment.sweep.parameters]
        learning_rate = {{ low = 1e-5, high = 1e-3, log = true }}
    """)
    path = write_manifest(tmp_path, manifest_text("runs", experiment(CLASSIFY, model="bert-micro") + sweep))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    outs = [w.communicate(timeout=180) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in outs]
    numbers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(numbers[0] + numbers[1]) == list(range(6))  # every trial once, none past the budget
    study = optuna.load_study(study_name="cls", storage=postgres)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 6
    # a trial asked past the budget (both workers asked at once) is failed at once, never run
    assert all(t.user_attrs.get("over_budget") for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE)
    assert not (tmp_path / "runs" / "cls" / "sweep.db").exists()  # no SQLite beside a shared study
