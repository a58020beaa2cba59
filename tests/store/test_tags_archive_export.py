"""Tidy exports in their own folders, tags/notes/archive/delete, the runs list, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from support.manifests import write_manifest

from engine.cli.main import main
from engine.files import atomic_write_json
from engine.store.listing import differing_keys, filter_rows, list_rows, parse_filter, sort_rows
from engine.store.meta import MetaError, change_tags, delete_run, read_meta, set_archived, set_note
from engine.store.runs import OwnerLock, RunStore
from engine.study.export import export_runs, tidy
from engine.tables import Table, latex_escape
from support.fakes import write_run

A, B, C = "20260101-100000-000000-aaaa", "20260102-100000-000000-bbbb", "20260103-100000-000000-cccc"
MANIFEST = '[[experiment]]\nname = "pre"\ntask = "pretrain"\nmodel = "bert-micro"\ndataset = "embedded:wikitext"\n'


def _config(run, **kv):
    cfg = json.loads((run.path / "config.json").read_text())
    cfg.update(kv)
    atomic_write_json(run.path / "config.json", cfg)


@pytest.fixture
def study(workdir):
    """Three runs: two pretrain (lr differs), one classify; one of them failed."""
    write_manifest(workdir, MANIFEST)
    root = workdir / "runs"
    a = write_run(root, "pre", A, params=True)
    b = write_run(root, "pre", B, status="failed", reason="RuntimeError: boom")
    c = write_run(root, "cls", C, task="classify")
    _config(a, learning_rate=5e-4, epochs=3, seed=1)
    _config(b, learning_rate=5e-4, epochs=3, seed=1)
    _config(c, learning_rate=5e-5, epochs=3, seed=1)
    return RunStore(root), (a, b, c)


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- exports ------------------------------------------------------------------------------------


def _assert_tidy_csv(path: Path) -> None:
    df = pd.read_csv(path)
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            cells = df[col].dropna().astype(str)
            # a text column holds text only: a number hiding among strings would make it unusable as numbers
            numeric = [c for c in cells if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", c)]
            assert not numeric or col in ("true", "value", "tags", "note"), (
                f"{path.name}: {col} mixes numbers {numeric[:3]} into text"
            )
            assert not re.fullmatch(r"x\d+", "|".join(cells)) and not any(re.fullmatch(r"x\d+", c) for c in cells), (
                f"{path.name}: {col} has repeat strings"
            )
        assert not df[col].astype(str).str.strip().str.lower().eq("total").any() or path.stem.endswith("_totals"), (
            f"{path.name}: a TOTAL row among the data"
        )


def test_every_exported_csv_is_tidy_for_pandas(study, tmp_path):
    store, runs = study
    written = export_runs(runs, tmp_path / "exports", ("csv", "md", "latex", "json"))
    csvs = [p for p in written if p.suffix == ".csv"]
    assert len(csvs) >= 8
    for path in csvs:
        _assert_tidy_csv(path)
    folder = written[0].parent
    grouped = pd.read_csv(folder / "pre" / A / "params_base.csv")
    assert grouped["repeat"].dtype.kind == "i" and set(grouped["repeat"]) == {1, 2}
    assert grouped["parameters"].dtype.kind == "i" and grouped["subtotal"].dtype.kind == "i"
    assert grouped["subtotal"].sum() == 141824  # summing the column gives the total once
    totals = pd.read_csv(folder / "pre" / A / "params_base_totals.csv")
    assert totals.to_dict("records") == [{"module": "TOTAL", "subtotal": 141824}]
    diff = pd.read_csv(folder / "pre" / A / "params_diff_base_vs_qa.csv")
    assert diff["delta"].sum() == -4030 and "TOTAL" not in set(diff["module"])
    comp = pd.read_csv(folder / "comparison.csv")
    assert all(comp[c].dtype.kind == "f" or comp[c].dtype.kind == "i" for c in comp.columns[1:])
    cm = pd.read_csv(folder / "pre" / A / "confusion_matrix.csv")
    assert list(cm.columns) == ["true", "pred_0", "pred_1"] and cm.iloc[:, 1:].to_numpy().tolist() == [[7, 1], [2, 6]]
    status = pd.read_csv(folder / "runs.csv")
    assert dict(zip(status["run_id"], status["status"])) == {A: "finished", B: "failed", C: "finished"}
    assert status["in_progress"].dtype == bool and not status["in_progress"].any()


def test_two_exports_never_overwrite_each_other(study, tmp_path):
    store, (a, b, c) = study
    first = export_runs([a, b], tmp_path / "exports")
    before = {p: p.read_bytes() for p in first}
    second = export_runs([a, c], tmp_path / "exports")
    third = export_runs([a, c], tmp_path / "exports")  # same runs, same second: still a new folder
    folders = {first[0].parent, second[0].parent, third[0].parent}
    assert len(folders) == 3 and all(f.parent == tmp_path / "exports" for f in folders)
    assert not set(first) & set(second) and not set(second) & set(third)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert B in (first[0].parent / "comparison.csv").read_text()
    assert B not in (second[0].parent / "comparison.csv").read_text()


def test_comparison_keeps_notes_out_of_value_columns(study, tmp_path):
    store, (a, b, c) = study
    res = json.loads((a.path / "results.json").read_text())
    res["note"] = "eval on validation: test labels hidden"
    res["eval_split"] = "validation"
    atomic_write_json(a.path / "results.json", res)
    folder = export_runs([a, c], tmp_path / "x", ("csv",))[0].parent
    comp = pd.read_csv(folder / "comparison.csv")
    assert "note" not in set(comp["metric"]) and all(comp[col].dtype.kind in "fi" for col in comp.columns[1:])
    info = pd.read_csv(folder / "comparison_info.csv")
    assert {"note", "eval_split"} <= set(info["key"])


def test_exported_comparison_never_mixes_scales_in_a_row(workdir, tmp_path):
    """A classifier's f1 (0-1) and SQuAD's f1 (0-100) get a row each, named with their scale."""
    from support.fakes import write_task_runs

    runs = write_task_runs(workdir / "runs")
    folder = export_runs([runs["classify"], runs["qa"]], tmp_path / "x", ("csv", "md"))[0].parent
    comp = pd.read_csv(folder / "comparison.csv").set_index("metric")
    cls, qa = comp.columns
    assert comp.loc["final.f1 (0-1)", cls] == pytest.approx(0.972) and pd.isna(comp.loc["final.f1 (0-1)", qa])
    assert comp.loc["final.f1 (0-100)", qa] > 1 and pd.isna(comp.loc["final.f1 (0-100)", cls])
    assert "final.f1" not in comp.index and "final.accuracy (0-1)" in comp.index
    assert "final.f1 (0-100)" in (folder / "comparison.md").read_text()


def test_export_marks_or_leaves_out_runs_still_training(study, capsys):
    store, (a, b, c) = study
    live = write_run(store.root, "pre", "20260104-100000-000000-dddd", status="running")
    lock = OwnerLock(live.path / "owner.lock")
    assert lock.acquire()  # a live owner: really running
    try:
        code, out, err = _cli(capsys, "export", "--all")
        assert code == 0 and "left out 1 run(s) still in progress" in err and "dddd" in err
        folder = Path(out.split(" to ")[-1].strip())
        assert "dddd" not in (folder / "runs.csv").read_text()
        code, out, err = _cli(capsys, "export", "--all", "--include-running", "--out", "other")
        runs_csv = pd.read_csv(Path(out.split(" to ")[-1].strip()) / "runs.csv")
        row = runs_csv[runs_csv["run_id"].str.endswith("dddd")].iloc[0]
        assert row["status"] == "running" and bool(row["in_progress"]) is True
    finally:
        lock.release()


def test_tidy_reads_old_tables_and_latex_arrows_are_valid():
    t = Table(
        name="p", columns=("module", "parameters", "repeat"), rows=(("a", 3, "x12"), ("b", 2, ""), ("TOTAL", 38, ""))
    )
    body, totals = tidy(t)
    assert body.rows == (("a", 3, 12), ("b", 2, 1)) and totals.rows == (("TOTAL", 38),)
    assert (
        latex_escape("base -> qa <- x <-> y => z")
        == r"base $\rightarrow$ qa $\leftarrow$ x $\leftrightarrow$ y $\Rightarrow$ z"
    )
    assert latex_escape("a<b>c|d_e") == r"a\textless{}b\textgreater{}c\textbar{}d\_e"
    tex = Table(
        name="d", columns=("x",), rows=((1,),), title="Parameter diff: base -> qa", notes=("1 -> 2",)
    ).to_latex()
    assert "->" not in tex and tex.count(r"$\rightarrow$") == 2


# -- tags, notes, archive, delete ------------------------------------------------------------------


def test_tags_notes_archive_in_their_own_file(study):
    store, (a, b, c) = study
    events, status = (a.path / "events.jsonl").read_bytes(), (a.path / "status.json").read_bytes()
    change_tags(a, ["baseline", "lr-sweep"])
    change_tags(a, ["v2"], ["lr-sweep"])
    set_note(a, "first try\x1b[31m")
    set_archived(a)
    assert read_meta(a) == {"tags": ["baseline", "v2"], "note": "first try[31m", "archived": True}
    assert json.loads((a.path / "meta.json").read_text())["tags"] == ["baseline", "v2"]
    assert (a.path / "events.jsonl").read_bytes() == events and (a.path / "status.json").read_bytes() == status
    with pytest.raises(MetaError, match="tag 'has space'"):
        change_tags(a, ["has space"])
    (b.path / "meta.json").write_text("{broken")
    assert read_meta(b) == {"tags": [], "note": "", "archived": False}  # a hand-broken file reads as empty


def test_delete_refuses_a_running_run(study):
    store, (a, b, c) = study
    lock = OwnerLock(b.path / "owner.lock")
    assert lock.acquire()
    try:
        with pytest.raises(MetaError, match="cancel it first"):
            delete_run(b)
        assert (b.path / "config.json").exists()
    finally:
        lock.release()
    delete_run(c)
    assert not c.path.exists() and [r.run_id for r in store.runs()] == [A, B]


def test_cli_tag_note_archive_delete(study, capsys):
    store, (a, b, c) = study
    path = f"runs/pre/{A}"  # exactly what `runs --json` prints
    code, out, _ = _cli(capsys, "runs", "--json")
    assert path in [r["path"] for r in json.loads(out)]
    assert (
        _cli(capsys, "tag", path, "+baseline", "+old", "-old", "--manifest", "experiments.toml")[1]
        == f"pre/{A}: tags baseline\n"
    )
    assert _cli(capsys, "tag", str((store.root / "pre" / A).resolve()))[1].endswith(
        "tags baseline\n"
    )  # absolute path too
    assert _cli(capsys, "note", f"pre/{A}", "lr from the paper")[0] == 0
    assert _cli(capsys, "note", f"pre/{A}")[1] == "lr from the paper\n"
    assert _cli(capsys, "archive", f"cls/{C}")[0] == 0
    code, out, _ = _cli(capsys, "runs")
    assert C not in out and A in out and "baseline" in out and "lr from the paper" in out
    code, out, _ = _cli(capsys, "runs", "--archived")
    assert C in out and A not in out and "(archived)" in out
    assert _cli(capsys, "archive", "--restore", f"cls/{C}")[0] == 0
    assert C in _cli(capsys, "runs")[1]
    code, _, err = _cli(capsys, "delete", f"cls/{C}")  # no terminal: asks for --yes instead of deleting
    assert code == 2 and "--yes" in err and c.path.exists()
    assert _cli(capsys, "delete", f"cls/{C}", "--yes")[1] == f"deleted cls/{C}\n" and not c.path.exists()
    code, _, err = _cli(capsys, "tag", "/etc", "+x")
    assert code == 2 and "not a run under the runs directory" in err
    code, _, err = _cli(capsys, "tag", f"pre/{A}", "+bad tag!")
    # the message names the tag and says what a tag may hold; exit code 2, no traceback
    assert code == 2, (code, err)
    assert err.startswith("lmconsole: tag 'bad tag!': use letters, digits") and "Traceback" not in err, err
    assert _cli(capsys, "tag", f"pre/{A}")[1].endswith("tags baseline\n")  # nothing was added


def test_global_options_after_the_subcommand(workdir, capsys):
    other = workdir / "elsewhere"
    other.mkdir()
    write_manifest(other, MANIFEST, 'runs_dir = "myruns"')
    write_run(other / "myruns", "pre", A)
    for argv in (
        ["--manifest", "elsewhere/experiments.toml", "runs"],
        ["runs", "--manifest", "elsewhere/experiments.toml"],
        ["runs", "-m", "elsewhere/experiments.toml"],
    ):
        code, out, err = _cli(capsys, *argv)
        assert code == 0 and A in out, (argv, err)
    code, out, _ = _cli(capsys, "check", "--manifest", "elsewhere/experiments.toml")
    assert code == 0 and "myruns" in out
    code, _, err = _cli(capsys, "run", "nope", "--manifest", "elsewhere/experiments.toml")
    assert code == 2 and "unknown experiment 'nope'" in err  # the manifest was read, not ./experiments.toml


def test_runs_is_aligned_with_status_progress_result(study, capsys):
    code, out, _ = _cli(capsys, "runs")
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["experiment", "run", "status", "result", "progress"]
    assert "learning_rate" in header and "epochs" not in header and "seed" not in header  # only what differs
    starts = [lines[0].index(col) for col in header]
    for line in lines[1:]:  # every cell starts under its header (or is empty)
        for i, start in enumerate(starts[1:], 1):
            if start >= len(line):
                break  # empty trailing cells (the line is right-stripped)
            end = starts[i + 1] if i + 1 < len(starts) else len(line)
            assert line[start - 1] == " " and (line[start] != " " or not line[start:end].strip()), (header[i], line)
    assert "mlm_perplexity 180" in out and "30/30 100%" in out and "RuntimeError: boom" in out
    code, out, _ = _cli(capsys, "runs", "--sort=-learning_rate", "-f", "status=finished")
    assert code == 0 and [line.split()[1] for line in out.splitlines()[1:]] == [A, C]
    code, _, err = _cli(capsys, "runs", "--sort", "nosuchkey")
    assert code == 2 and "no listed run has it" in err


def _runs_in_a_pty(columns: int, *argv: str) -> list[str]:
    """``lmconsole runs`` as a terminal ``columns`` wide shows it: its lines."""
    import os
    import pty
    import subprocess
    import sys

    main_fd, child_fd = pty.openpty()
    env = dict(os.environ, COLUMNS=str(columns), LINES="40")
    proc = subprocess.run(
        [sys.executable, "-m", "tui.entry", "runs", *argv],
        stdout=child_fd,
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
    )
    os.close(child_fd)
    out = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the pty's other end is closed: everything is read
            break
        if not chunk:
            break
        out += chunk
    os.close(main_fd)
    assert proc.returncode == 0, proc.stderr
    return out.decode().replace("\r\n", "\n").splitlines()


def test_runs_in_a_terminal_fits_its_width(study):
    """In a terminal (here a pty 60 columns wide) no line wraps: differing settings that do not fit
    are left out and named; a pipe still gets every column (the test above)."""
    lines = _runs_in_a_pty(60)
    assert lines[0].split()[:4] == ["experiment", "run", "status", "result"]
    assert all(len(line) <= 60 for line in lines), [line for line in lines if len(line) > 60]
    assert "learning_rate" not in lines[0] and any(
        "left out at this width: learning_rate" in ln for ln in " ".join(lines).split("(")[1:]
    )


def test_runs_at_80_columns_never_cuts_the_result(workdir, capsys):
    """At 80 columns, with long experiment names, a cancelled and a failed run: every result is
    whole, the run ids are short (and still name their runs), the failure's reason is shown."""
    write_manifest(workdir, MANIFEST)
    root = workdir / "runs"
    ids = [f"2026010{i}-100000-000000-{c * 4}" for i, c in enumerate("abcde", 1)]
    write_run(root, "demo-params-finetuned", ids[0], task="classify", steps=480)
    write_run(root, "demo-params-finetuned", ids[1], status="cancelled", reason="cancelled by request")
    write_run(root, "demo-params", ids[2], params=True, steps=480)
    write_run(root, "demo-params-finetuned", ids[3], status="failed", reason="RuntimeError: CUDA out of memory")
    write_run(root, "demo-params", ids[4], status="cancelled", reason="cancelled by request; resume to go on")
    lines = _runs_in_a_pty(80)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    table = "\n".join(lines)
    assert "accuracy 0.57" in table and "mlm_perplexity 180" in table, table
    for line in lines[1:6]:
        assert "…" not in line.split()[3], line  # the result column
    assert ids[0] not in table and "aaaa" in table  # short ids, as git shortens hashes
    assert "RuntimeError: CUDA out of memory" in table  # the failure's reason, whole
    assert any("shortened" in ln for ln in lines)
    code, out, _ = _cli(capsys, "tag", "dddd")  # the short id names its run
    assert code == 0 and out.startswith(f"demo-params-finetuned/{ids[3]}:")


def test_fit_width_drops_the_named_columns_from_the_right_then_cuts():
    from engine.store.listing import fit_width

    header, rows = ["a", "b", "c", "d"], [["1", "22", "333", "4444"]]
    assert fit_width(header, rows, [1, 2], 80) == (["a  b   c    d", "1  22  333  4444"], [])
    assert fit_width(header, rows, [1, 2], 12) == (["a  b   d", "1  22  4444"], ["c"])
    assert fit_width(header, rows, [1, 2], 8) == (["a  d", "1  4444"], ["b", "c"])
    assert fit_width(header, rows, [1, 2], 5) == (["a  d", "1  4…"], ["b", "c"])


# -- runs list: filter, sort, differing columns --------------------------------------------------


def test_filter_syntax_sort_and_differing_keys(study):
    store, (a, b, c) = study
    change_tags(a, ["baseline"])
    rows = list_rows(store)
    keys = lambda rs: [r.run.run_id for r in rs]  # noqa: E731
    assert keys(filter_rows(rows, "lr<1e-4")) == [C]
    assert keys(filter_rows(rows, "learning_rate>=5e-4")) == [A, B]
    assert keys(filter_rows(rows, "tag:baseline")) == [A]
    assert keys(filter_rows(rows, "!tag:baseline")) == [B, C]
    assert keys(filter_rows(rows, "status=failed")) == [B]
    assert keys(filter_rows(rows, "boom")) == [B]  # plain text: the failure reason is searched too
    assert keys(filter_rows(rows, "pre status=finished")) == [A]
    assert keys(filter_rows(rows, "accuracy>0.5 task=classify")) == [C]
    assert keys(filter_rows(rows, "mlm_perplexity<200")) == [A]
    assert keys(filter_rows(rows, "lr<abc")) == []  # text against a number: no match, no crash
    assert [t.kind for t in parse_filter("lr<1e-4 tag:x plain")] == ["cmp", "tag", "text"]
    assert differing_keys(rows) == ["learning_rate"]
    assert keys(sort_rows(rows, "learning_rate")) == [C, A, B]
    assert keys(sort_rows(rows, "result", descending=True))[-1] == B  # no result: last either way
    assert keys(sort_rows(rows, "status")) == [B, A, C]
    assert keys(sort_rows(rows, "started", descending=True)) == [C, B, A]


# -- push staging ---------------------------------------------------------------------------------


def test_push_dry_run_never_stages_in_the_current_directory(workdir, monkeypatch):
    from engine.hub.publish import push

    run = write_run(workdir / "runs", "cls", C, task="classify")
    model = run.path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    secret = workdir / "secret.txt"
    secret.write_text("do not upload")
    (model / "link.txt").symlink_to(secret)
    before = set(workdir.iterdir())
    res = push(run, "alice/demo", dry_run=True)
    folder = Path(res["folder"])
    assert set(workdir.iterdir()) == before  # nothing new in the current directory
    assert folder.is_dir() and workdir not in folder.parents
    assert "link.txt" not in res["files"] and {"config.json", "model.safetensors", "README.md"} <= set(res["files"])


# -- the console's runs list (Pilot, 80x24) ------------------------------------------------------


def test_console_runs_list_tags_note_archive_delete_filter_sort(tmp_path, monkeypatch):
    import asyncio

    from tui.screens.dialogs import ConfirmDialog, InputDialog
    from tui.screens.main import MainScreen
    from support.console import make_app, screen_text, wait_for
    from tui.widgets.runs import RunsPane

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"

    async def go():
        app = make_app(tmp_path)
        _config(next(r for r in RunStore(root).runs() if r.run_id.endswith("bbbb")), learning_rate=1e-5)
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("3")
            pane = app.screen.query_one(RunsPane)
            assert await wait_for(pilot, lambda: pane.table.row_count == 4 and "learning_rate" in pane.hyper)
            assert "lr" in screen_text(app) and "1e-05" in screen_text(app)  # the differing hyperparameter column
            keys = lambda: [r.key.value for r in pane.table.ordered_rows]  # noqa: E731
            pretrain = "pretrain/20260101-100000-000000-bbbb"
            pane.table.move_cursor(row=keys().index(pretrain))
            await pilot.press("t")
            assert await wait_for(pilot, lambda: isinstance(app.screen, InputDialog))
            await pilot.press(*"baseline", "enter")
            assert await wait_for(pilot, lambda: pane.rows[pretrain].tags == ["baseline"])
            assert "baseline" in screen_text(app)
            await pilot.press("n")
            assert await wait_for(pilot, lambda: isinstance(app.screen, InputDialog))
            await pilot.press(*"first try", "enter")
            assert await wait_for(pilot, lambda: pane.rows[pretrain].note == "first try")
            assert read_meta(RunStore(root).get(pretrain)) == {
                "tags": ["baseline"],
                "note": "first try",
                "archived": False,
            }
            # filter syntax
            for terms in ("tag:baseline", "lr<1e-4"):
                await pilot.press("slash")
                await pilot.pause(0.2)
                await pilot.press(*terms, "enter")
                assert await wait_for(pilot, lambda: keys() == [pretrain]), terms
                await pilot.press("escape")
                assert await wait_for(pilot, lambda: len(keys()) == 4)
            # sort: s moves to the next column (experiment, ascending)
            await pilot.press("s")
            assert await wait_for(pilot, lambda: pane.sort_column == "experiment")
            assert [k.split("/")[0] for k in keys()] == sorted(k.split("/")[0] for k in keys())
            assert "experiment ▲" in screen_text(app)
            # archive: hidden, A shows it, a restores
            pane.table.move_cursor(row=keys().index(pretrain))
            await pilot.press("a")
            assert await wait_for(pilot, lambda: pretrain not in keys() and len(keys()) == 3)
            await pilot.press("A")
            assert await wait_for(pilot, lambda: keys() == [pretrain])
            await pilot.press("a")
            assert await wait_for(pilot, lambda: keys() == [])
            await pilot.press("A")
            assert await wait_for(pilot, lambda: len(keys()) == 4)
            # delete asks first; No keeps the run, Yes removes it
            pane.table.move_cursor(row=keys().index(pretrain))
            await pilot.press("d")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            assert "cannot be undone" in screen_text(app)
            await pilot.press("n")
            assert (root / pretrain / "config.json").exists()
            await pilot.press("d")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            assert await wait_for(pilot, lambda: pretrain not in keys())
            assert not (root / pretrain).exists()

    asyncio.run(go())


def test_console_refuses_to_delete_a_running_run(tmp_path, monkeypatch):
    import asyncio

    from tui.screens.dialogs import ConfirmDialog
    from tui.screens.main import MainScreen
    from support.console import make_app, wait_for
    from tui.widgets.runs import RunsPane

    monkeypatch.chdir(tmp_path)

    async def go():
        app = make_app(tmp_path)
        live = next(r for r in RunStore(tmp_path / "runs").runs() if r.run_id.endswith("cccc"))
        lock = OwnerLock(live.path / "owner.lock")
        assert lock.acquire()
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
                await pilot.press("3")
                pane = app.screen.query_one(RunsPane)
                assert await wait_for(pilot, lambda: pane.table.row_count == 4)
                key = f"pretrain/{live.run_id}"
                assert await wait_for(pilot, lambda: pane.rows[key].status == "running")
                pane.table.move_cursor(row=[r.key.value for r in pane.table.ordered_rows].index(key))
                await pilot.press("d")
                await pilot.pause(0.3)
                assert not isinstance(app.screen, ConfirmDialog)
                assert await wait_for(
                    pilot, lambda: any("cancel it before deleting" in n.message for n in app._notifications)
                )
                assert (live.path / "config.json").exists()
        finally:
            lock.release()

    asyncio.run(go())


def test_params_accepts_a_run_path(study, capsys):
    from transformers import BertConfig

    store, (a, b, c) = study
    BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    ).save_pretrained(c.path / "model")
    for ref in (f"run:runs/cls/{C}", f"run:cls/{C}", "run:cls"):
        code, out, err = _cli(capsys, "params", ref, "--format", "csv")
        assert code == 0, (ref, err)
        assert "TOTAL" not in out and "encoder.layer.0." in out
    code, _, err = _cli(capsys, "params", f"run:runs/pre/{B}")
    assert code == 2 and "has no final model" in err


@pytest.mark.skipif(__import__("shutil").which("pdflatex") is None, reason="pdflatex not installed")
def test_exported_latex_compiles(study, tmp_path):
    import subprocess

    store, runs = study
    written = export_runs(runs, tmp_path / "exports", ("latex",))
    doc = tmp_path / "all.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{graphicx}\\begin{document}\n"
        + "".join(f"\\input{{{p}}}\\clearpage\n" for p in written)
        + "\\end{document}\n"
    )
    out = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "Missing $ inserted" not in out.stdout
