"""Notifications (settings.notify, through Apprise's json://) sent by the job itself: on finish and on
failure, to a local HTTP server, never carrying the Hugging Face token; never blocking or failing a job."""

from __future__ import annotations

import time

import pytest

from engine.job.notify import make_notice, notify, run_kind, send, wait_sent
from engine.job.runner import run_experiment
from engine.manifest import load
from support.fakes import write_manifest
from support.webhook import webhook

pytest.importorskip("apprise")

TOKEN = "hf_" + "FakeTokenForTheNotifyTest0123456789"  # a token-shaped secret in the environment


@pytest.fixture
def hook():
    """A local HTTP server recording the JSON bodies POSTed to it: (url, received list)."""
    with webhook() as (url, received):
        yield url, received


def _manifest(tmp_path, url: str, extra: str = ""):
    text = f"""\
[[experiment]]
name = "params"
task = "inspect"
model = "bert-micro"

[[experiment]]
name = "broken"
task = "classify"
model = "bert-micro"
dataset = "/nowhere/{TOKEN}/sst2"
text_column = "sentence"
{extra}"""
    return load(write_manifest(tmp_path, text, settings=f'runs_dir = "runs"\nnotify = ["{url}"]'))


def test_the_job_tells_on_finish_and_on_failure_without_the_token(tmp_path, hook, monkeypatch):
    url, received = hook
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    m = _manifest(tmp_path, url)

    run = run_experiment(m, "params")  # returns once its message has left (at most a few seconds)
    assert run.status()["status"] == "finished"
    assert len(received) == 1
    msg = received[0]["json"]
    assert received[0]["path"] == "/hook"
    assert msg["type"] == "success" and "params finished" in msg["title"]
    assert f"{run.experiment}/{run.run_id}" in msg["message"]

    failed = run_experiment(m, "broken")
    st = failed.status()
    assert st["status"] == "failed"
    assert len(received) == 2
    msg = received[1]["json"]
    assert msg["type"] == "failure" and "broken failed" in msg["title"]
    assert "<redacted>" in msg["message"]  # the reason named the path holding the token: scrubbed
    for r in received:
        assert TOKEN not in r["raw"]


def test_a_dead_server_never_blocks_or_fails_a_job(tmp_path):
    # Nothing listens on port 9 (discard): the connection is refused; the job still ends finished.
    m = _manifest(tmp_path, "json://127.0.0.1:9/none")
    t0 = time.monotonic()
    run = run_experiment(m, "params")
    assert run.status()["status"] == "finished"
    assert time.monotonic() - t0 < 30
    notice = make_notice("test", "x")
    assert send(["json://127.0.0.1:9/none"], notice) == [
        "json:// was not reached (the service refused it or did not answer in time)"
    ]
    assert send(["nosuchservice://abc"], notice)[0].startswith("nosuchservice:// is not a URL Apprise understands")


def test_notify_is_the_entry_point_for_other_senders(hook, monkeypatch):
    url, received = hook
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    thread = notify([url], "sweep_done", "lr-sweep", f"best trial 3: accuracy 0.91 (token {TOKEN})")
    assert thread is not None and wait_sent(10)
    (msg,) = [r["json"] for r in received]
    assert msg["title"] == "lmconsole: lr-sweep sweep done"
    assert "best trial 3" in msg["message"] and TOKEN not in msg["message"]
    assert notify([], "study_done", "s") is None  # nothing configured: nothing sent, no thread
    with pytest.raises(ValueError, match="unknown notification kind"):
        notify([url], "exploded", "x")


def test_run_kind_tells_nan_stops_apart():
    assert run_kind({"status": "failed", "reason": "loss became NaN/inf by step 12"}) == "nan"
    assert run_kind({"status": "failed", "reason": "RuntimeError: x"}) == "failed"
    assert run_kind({"status": "finished"}) == "finished"
    assert run_kind({"status": "stalled"}) == "stalled"
    assert run_kind({"status": "cancelled"}) is None


def test_notify_test_command(tmp_path, hook, capsys):
    from engine.cli.main import main

    url, received = hook
    path = write_manifest(tmp_path, '[[experiment]]\nname = "p"\ntask = "inspect"\nmodel = "bert-micro"\n')
    assert main(["--manifest", str(path), "notify", "--test"]) == 2
    assert "settings.notify" in capsys.readouterr().err
    _manifest(tmp_path, url)
    assert main(["--manifest", str(path), "notify", "--test"]) == 0
    assert "sent a test notification to 1 of 1 URL(s) (json://...)" in capsys.readouterr().out
    assert received[0]["json"]["title"] == "lmconsole: notify --test test notification"
