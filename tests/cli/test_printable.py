"""What the commands print never drives the terminal: control characters read from run directories
and the queue folder (anyone sharing the box can write them) are stripped before they reach it."""

from __future__ import annotations

import json

from engine.cli.main import main
from engine.cli.output import printable
from engine.files import atomic_write_json
from support.fakes import write_manifest, write_run

EVIL = "\x1b]0;TITLE\x07\x1b[2J\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\r\x9b31m"


def test_printable_keeps_text_tabs_and_newlines():
    assert printable(f"a{EVIL}\tb\nc") == "a]0;TITLE[2J]8;;http://x\\link]8;;\\31m\tb\nc"


def test_runs_and_queue_print_no_escape_from_a_status_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_manifest(tmp_path)
    run = write_run(tmp_path / "runs", "pretrain", "20260101-100000-000000-bbbb", status="failed", reason=EVIL)
    atomic_write_json(run.path / "status.json", {"status": "failed", "reason": f"boom {EVIL}"})
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "boom" in out and not set(out) & {"\x1b", "\x07", "\r", "\x9b"}, repr(out)
    assert main(["runs", "--json"]) == 0  # JSON escapes them itself: the value is intact
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["reason"] == f"boom {EVIL}"
