"""A Hugging Face token pasted into a manifest value is redacted in the run's config.json and in
every exported file; the redacted config still reads as unchanged when the run is resumed."""

from __future__ import annotations

from support.fakes import write_manifest, write_run

from engine.cli.main import main
from engine.files import atomic_write_json
from engine.job.runner import config_changes
from engine.manifest import load
from engine.store.runs import RunStore

TOKEN = "hf_" + "Ab3dEfGh1jKlMnOpQrStUvWxYz"  # token-shaped, not a real one
MANIFEST = (
    '[[experiment]]\nname = "pre"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\n'
    f'description = "trained with {TOKEN} by mistake"\n'
)


def test_config_json_holds_no_token_and_reads_unchanged(workdir):
    manifest = load(write_manifest(workdir, MANIFEST))
    exp = manifest.get("pre")
    run = RunStore(manifest.runs_dir).create("pre", exp.to_dict())
    text = (run.path / "config.json").read_text()
    assert TOKEN not in text and "<redacted>" in text
    assert config_changes(exp, run) == {}  # resume: the redacted value is not a change


def test_exports_hold_no_token_from_an_older_run(workdir, capsys):
    write_manifest(workdir, MANIFEST)
    run = write_run(workdir / "runs", "pre", "20260101-100000-000000-aaaa")
    atomic_write_json(run.path / "config.json", {**run.config(), "description": f"x {TOKEN}", "model": TOKEN})
    assert main(["export", "--all", "--out", "exports"]) == 0
    files = [p for p in (workdir / "exports").rglob("*") if p.is_file()]
    assert files and not [p for p in files if TOKEN in p.read_text()]
    assert any("<redacted>" in p.read_text() for p in files)
