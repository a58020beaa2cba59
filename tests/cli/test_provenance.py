"""``rerun``, ``diff`` and ``clone``: new runs from a run's own record, never the manifest's current values."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from support.manifests import CLASSIFY, PRETRAIN, REPO, experiment, manifest_text

from engine.cli import main as cli
from engine.manifest import load
from engine.store.runs import RunStore

COMMENTED = "# my study: keep this comment\n"


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git repository holding a manifest with comments, and one finished tiny pretraining run."""
    repo = tmp_path_factory.mktemp("project")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    pre = experiment(PRETRAIN, learning_rate=0.001, seed=7, extra="# the pretraining, tuned by hand")
    text = COMMENTED + manifest_text(str(repo / "runs"), pre, experiment(CLASSIFY, max_train_samples=48))
    (repo / "experiments.toml").write_text(text)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    assert cli.main(["--manifest", str(repo / "experiments.toml"), "run", "pre", "-q"]) == 0
    return repo


def _main(repo, *args) -> int:
    return cli.main(["--manifest", str(repo / "experiments.toml"), *args])


def _copy_run(repo, run, run_id: str):
    """A second run of ``pre``, as if another job had written it (copied, then edited by the test)."""
    dest = repo / "runs" / "pre" / run_id
    shutil.copytree(run.path, dest, ignore=shutil.ignore_patterns("owner.lock", "checkpoints", "model"))
    return dest


def test_diff_names_a_changed_learning_rate_and_an_upgraded_package(project, capsys):
    run = RunStore(project / "runs").latest("pre")
    other = _copy_run(project, run, "20990101-000000-000000-bbbb")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "learning_rate": 0.0005}))
    packages = (other / "packages.txt").read_text().splitlines()
    upgraded = [("torch==99.0.0" if line.startswith("torch==") else line) for line in packages]
    (other / "packages.txt").write_text("\n".join(upgraded) + "\n")
    capsys.readouterr()
    assert _main(project, "diff", f"pre/{run.run_id}", "pre/20990101-000000-000000-bbbb") == 0
    out = capsys.readouterr().out.splitlines()
    lr = next(line for line in out if "learning_rate" in line)
    assert lr.split() == ["config", "learning_rate", "0.001", "0.0005"]
    torch_line = next(line for line in out if " torch " in line)
    assert torch_line.split()[:2] == ["packages", "torch"] and torch_line.split()[-1] == "99.0.0"
    # aligned: the value columns start at the same place on every row
    rows = [line for line in out[2:] if line.strip()]
    assert len({line.index(" a") if i == 0 else None for i, line in enumerate(rows)} - {None}) == 1
    assert len(rows) == 3, out  # the header and the two differences, nothing else
    shutil.rmtree(other)


def test_diff_of_a_run_with_itself_says_nothing_differs(project, capsys):
    run = RunStore(project / "runs").latest("pre")
    assert _main(project, "diff", f"pre/{run.run_id}", f"pre/{run.run_id}") == 0
    assert "no differences" in capsys.readouterr().out


def test_clone_keeps_comments_and_gives_a_valid_manifest(project, capsys, tmp_path):
    manifest = tmp_path / "experiments.toml"
    shutil.copy(project / "experiments.toml", manifest)
    run = RunStore(project / "runs").latest("pre")
    before = manifest.read_text()
    assert cli.main(["--manifest", str(manifest), "clone", f"pre/{run.run_id}", "pre-copy"]) == 0
    after = manifest.read_text()
    assert after.startswith(before) and COMMENTED in after and "# the pretraining, tuned by hand" in after
    assert f"# cloned from run pre/{run.run_id}" in after
    m = load(manifest)  # what `lmconsole check` validates
    copy, orig = m.get("pre-copy"), m.get("pre")
    assert copy.learning_rate == orig.learning_rate == 0.001 and copy.seed == 7 and copy.vocab_size == 2000
    assert cli.main(["--manifest", str(manifest), "check"]) == 0
    # a name the manifest has already, or an unsafe one: refused, the file untouched
    assert cli.main(["--manifest", str(manifest), "clone", f"pre/{run.run_id}", "pre"]) == 2
    assert cli.main(["--manifest", str(manifest), "clone", f"pre/{run.run_id}", "../x"]) == 2
    assert "already an experiment" in capsys.readouterr().err
    assert manifest.read_text() == after


def test_rerun_repeats_the_run_exactly_and_says_what_changed(project, capsys):
    store = RunStore(project / "runs")
    first = store.latest("pre", status="finished")
    # the manifest moved on since: the rerun must not see it; the tree is now dirty too
    text = (project / "experiments.toml").read_text()
    (project / "experiments.toml").write_text(text.replace("learning_rate = 0.001", "learning_rate = 0.5"))
    try:
        capsys.readouterr()
        assert _main(project, "rerun", f"pre/{first.run_id}") == 0
        out = capsys.readouterr().out
    finally:
        (project / "experiments.toml").write_text(text)
    assert "changed since pre/" in out and "code dirty: False -> True" in out
    again = store.latest("pre", status="finished")
    assert again.run_id != first.run_id
    assert again.config()["learning_rate"] == 0.001 and again.config()["seed"] == 7
    env = json.loads((again.path / "environment.json").read_text())
    assert env["rerun_of"] == f"pre/{first.run_id}"
    ra, rb = first.results(), again.results()
    assert ra["final"] == rb["final"]  # the same numbers on the same machine
    for column in ("train_loss", "mlm_perplexity", "mlm_accuracy", "nsp_accuracy"):  # all but elapsed_s
        assert first.read_table("epochs").column(column) == again.read_table("epochs").column(column), column
    capsys.readouterr()
    assert _main(project, "verify", f"pre/{again.run_id}") == 0  # recomputed, and equal to the original's
    out = capsys.readouterr().out
    assert f"ok   mlm_perplexity = original's = {ra['final']['mlm_perplexity']:.10g}" in out


def test_verify_flags_a_rerun_whose_numbers_moved_and_says_what_differs(project):
    from engine.study.verify import against_original, what_differs

    store = RunStore(project / "runs")
    first = store.runs("pre")[0]  # the oldest: the module's own run, no rerun
    assert against_original(first) == []  # not a rerun: nothing to compare
    # an older id than any real run: `latest` never picks it for the other tests
    dest = _copy_run(project, first, "20000101-000000-000000-beef")
    try:
        results = json.loads((dest / "results.json").read_text())
        results["final"]["mlm_loss"] *= 1.01  # the third digit moves: outside the tolerance
        results["final"]["mlm_perplexity"] *= 1 + 1e-6  # the seventh: inside it
        (dest / "results.json").write_text(json.dumps(results))
        env = json.loads((dest / "environment.json").read_text())
        env["rerun_of"] = f"pre/{first.run_id}"
        (dest / "environment.json").write_text(json.dumps(env))
        packages = (dest / "packages.txt").read_text()
        (dest / "packages.txt").write_text(packages.replace("torch==", "torch==9.", 1))
        rerun = store.get(f"pre/{dest.name}")
        checks = {c.metric: c for c in against_original(rerun)}
        final = first.results()["final"]
        assert set(checks) == {f"{k} = original's" for k, v in final.items() if not isinstance(v, str)}
        assert [m for m, c in checks.items() if not c.ok] == ["mlm_loss = original's"]
        assert checks["mlm_loss = original's"].short().startswith("  FAIL mlm_loss = original's: rerun ")
        assert any(line.startswith("packages torch: ") for line in what_differs(rerun))
    finally:
        shutil.rmtree(dest)


def test_rerun_detached_goes_through_the_queue(project):
    store = RunStore(project / "runs")
    before = {r.run_id for r in store.runs("pre")}
    first = store.latest("pre", status="finished")
    proc = subprocess.run(
        [sys.executable, "-m", "tui.entry", "--manifest", str(project / "experiments.toml")]
        + ["rerun", f"pre/{first.run_id}", "--detach"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"a rerun of pre/{first.run_id}" in proc.stdout
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        new = [r for r in store.runs("pre") if r.run_id not in before]
        if new and new[0].status().get("status") in ("finished", "failed"):
            break
        time.sleep(0.5)
    assert new and new[0].status()["status"] == "finished", new and new[0].status()
    env = json.loads((new[0].path / "environment.json").read_text())
    assert env["rerun_of"] == f"pre/{first.run_id}"
    assert new[0].results()["final"] == first.results()["final"]


def test_rerun_of_a_fine_tuning_starts_from_the_same_pretrained_run(project, capsys):
    store = RunStore(project / "runs")
    assert _main(project, "run", "cls", "-q") == 0
    first = store.latest("cls", status="finished")
    start = first.results()["start_model"]
    # a newer pretraining run appears: `run:pre` would now mean it, the rerun must not
    newer = _copy_run(project, store.get(start), "20990101-000000-000000-cccc")
    shutil.copytree(store.get(start).path / "model", newer / "model")
    capsys.readouterr()
    assert _main(project, "rerun", f"cls/{first.run_id}") == 0
    again = store.latest("cls", status="finished")
    assert again.run_id != first.run_id
    assert again.config()["model"] == str((store.get(start).path / "model").resolve())
    assert again.results()["final"] == first.results()["final"]
    shutil.rmtree(newer)
