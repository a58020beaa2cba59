"""Console run view, compare, export, help, command palette and manifest errors (Pilot, 80x24)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import DataTable, OptionList, RichLog

from tui.screens.compare import CompareScreen
from tui.screens.dialogs import ExportDialog
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.manifest_error import ManifestErrorScreen
from tui.screens.run import RunScreen
from support.console import make_app, screen_text, wait_for
from support.fakes import MANIFEST, FakeRunner, write_manifest
from tui.widgets.runs import RunsPane
from tui.widgets.tables import TableView

SIZE = (80, 24)
# rows of the runs tab, newest first (see support.fakes.write_history)
FINETUNE_FAILED, PRETRAIN_INTERRUPTED, PRETRAIN_FINISHED, PARAMS = range(4)


def drive(coro):
    return asyncio.run(coro)


async def open_runs_row(app, pilot, row: int):
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    await pilot.press("3")
    pane = app.screen.query_one(RunsPane)
    assert await wait_for(pilot, lambda: pane.table.row_count == 4)
    pane.table.move_cursor(row=row)
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
    screen = app.screen
    assert await wait_for(pilot, lambda: screen.state is not None)
    return screen


async def run_pretrain_and_open(app, pilot):
    """Run the manifest's pretrain job from the Experiments tab, open its run view, wait for the end."""
    await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
    await pilot.press("down", "r", "2", "enter")
    assert await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
    screen = app.screen
    assert await wait_for(pilot, lambda: screen.state is not None and screen.state.status == "finished")
    return screen


def test_live_job_run_view_tabs_and_keys(tmp_path):
    async def go():
        runner = FakeRunner(pretrain={"steps": 20, "delay": 0.03})
        app = make_app(tmp_path, runner, history=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = await run_pretrain_and_open(app, pilot)
            assert screen.feed.job is not None  # a job of the queue, its curves followed from its run directory
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "step 20/20" in text and "4.0k tok/s" in text and "cpu, fp32 256 MB" in text
            assert "training loss" in text and "learning rate" in text and "no data yet" not in text
            assert "mlm_perplexity on test (m: next)" in text
            await pilot.press("m")
            assert screen.metric == "accuracy"  # next in line after the primary metric
            await pilot.press("2")
            results = screen.query_one("#results-table", DataTable)
            assert results.row_count >= 3 and "ep 2" in screen_text(app)
            await pilot.press("3")
            assert await wait_for(pilot, lambda: screen.query_one(TableView).table is not None)
            assert screen.query_one(TableView).table.name == "epochs"
            await pilot.press("4")
            log = screen.query_one(RichLog)
            assert any("device cpu" in line.text for line in log.lines)
            await pilot.press("p")  # finished: nothing to pause
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)

    drive(go())


def test_results_tab_keeps_numbers_on_screen_when_a_run_has_a_long_note(tmp_path):
    note = "labels of split 'test' are hidden (all -1, as in GLUE): evaluated on 'validation' instead [sic]"

    async def go():
        runner = FakeRunner(pretrain={"steps": 8, "note": note})
        app = make_app(tmp_path, runner, history=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = await run_pretrain_and_open(app, pilot)
            await pilot.press("2")
            await pilot.pause(0.2)
            results = screen.query_one("#results-table", DataTable)
            names = [results.get_row_at(i)[0] for i in range(results.row_count)]
            # long texts, and a label the same at every epoch (eval_split), go below the table
            assert "note" not in names and "eval_split" not in names
            assert "eval_split: " in str(screen.query_one("#results-extra").render())
            text = screen_text(app)
            assert "ep 2" in text  # the epoch columns and their numbers are on screen
            accuracy_line = next(line for line in text.splitlines() if line.strip().startswith("accuracy"))
            # final, best (its epoch), then the history per epoch
            assert accuracy_line.split()[1:] == ["0.7", "0.7", "(2)", "0.5", "0.6", "0.7"], accuracy_line
            assert "[sic]" in text  # the note is shown below the table, as text (not markup)

    drive(go())


def test_disk_run_with_corrupt_events_line(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_runs_row(app, pilot, PRETRAIN_INTERRUPTED)
            assert screen.feed.job is None  # a run from the history: no job
            assert screen.state.status == "interrupted"
            assert len(screen.state.steps) == 6  # the torn and non-JSON lines are skipped
            assert "interrupted: the process running this job stopped" in screen_text(app)

    drive(go())


def test_failed_run_without_tables_shows_reason_and_traceback(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_runs_row(app, pilot, FINETUNE_FAILED)
            await pilot.pause(0.1)
            text = screen_text(app)
            assert "✗ failed" in text
            # the reason and the hint in full, under the status line; enter opens the traceback
            assert "✗ ValueError: label column 'label' not found" in text
            assert "hint: see the traceback in the log" in text
            await pilot.press("enter")
            from tui.screens.dialogs import TextDialog

            assert await wait_for(pilot, lambda: isinstance(app.screen, TextDialog))
            assert "RuntimeError: boom" in screen_text(app)
            await pilot.press("escape")
            assert app.screen is screen
            await pilot.press("3")
            assert "no tables in this run (yet)" in screen_text(app)
            await pilot.press("e")  # no table shown: exports all tables of the run (none) + results
            assert isinstance(app.screen, ExportDialog)
            await pilot.press("escape")
            await pilot.press("4")
            assert any("Traceback" in line.text for line in screen.query_one(RichLog).lines)

    drive(go())


def test_inspect_run_opens_on_tables_and_exports_current_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            screen = await open_runs_row(app, pilot, PARAMS)
            view = screen.query_one(TableView)
            assert await wait_for(pilot, lambda: view.table is not None)
            assert screen.query_one("#run-tabs").active == "tables"
            assert view.table.name == "params_base"
            assert "x2" in screen_text(app)  # repeated layers grouped
            opts = screen.query_one(OptionList)
            opts.focus()
            await pilot.press("down")
            assert await wait_for(pilot, lambda: view.table.name == "params_diff_base_vs_qa")
            assert "-4,030" in screen_text(app)
            await pilot.press("e")
            assert isinstance(app.screen, ExportDialog)
            await pilot.press("tab", "tab", "space")  # untick Markdown
            await pilot.press("shift+tab", "shift+tab", "enter")
            assert await wait_for(pilot, lambda: app.last_export is not None)
            folder, written = app.last_export
            assert folder.parent == tmp_path / "exports"  # a new folder per export
            assert sorted(p.suffix for p in written) == [".csv", ".csv", ".json", ".json", ".tex", ".tex"]  # + _totals
            assert all(p.exists() and "params_diff_base_vs_qa" in p.name for p in written)
            assert "TOTAL" not in next(p for p in written if p.name.endswith("qa.csv")).read_text()
            # where it went, on screen (a notification; the path may wrap)
            assert await wait_for(pilot, lambda: any(str(folder) in n.message for n in app._notifications))
            assert await wait_for(pilot, lambda: "exported table" in screen_text(app))

    drive(go())


def test_tables_tab_at_80_columns_shows_every_count(tmp_path):
    """A parameter table's long module names are shortened, never its numbers: every count and
    subtotal is on screen at 80x24; right (or enter) moves from the table list into the table."""

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_runs_row(app, pilot, PARAMS)
            view = screen.query_one(TableView)
            assert await wait_for(pilot, lambda: view.table is not None and view.table.name == "params_base")
            await pilot.pause(0.2)
            text = screen_text(app)
            for count in ("64,000", "32,768", "4,096", "8,192", "16,384", "141,824"):
                assert count in text, (count, text)
            assert "trainable" in text and "…tention.self.query.weight" in text  # a dotted name keeps its end
            screen.query_one(OptionList).focus()
            await pilot.press("right")
            assert app.focused is view.query_one(DataTable)
            await pilot.press("left")
            assert app.focused is screen.query_one(OptionList)

    drive(go())


def test_failed_and_inspect_runs_never_promise_data_yet(tmp_path):
    """A run that has ended (or an inspect run, which trains nothing) says why there is no data,
    never "yet": nothing more will come."""

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            for row, says in (
                (FINETUNE_FAILED, ("2", "no final results: the run failed")),
                (PARAMS, ("1", "none (inspect run)")),
            ):
                await open_runs_row(app, pilot, row)
                for tab in ("1", "2"):
                    await pilot.press(tab)
                    await pilot.pause(0.2)
                    text = screen_text(app)
                    assert " yet" not in text, (row, tab, text)
                    assert tab != says[0] or says[1] in text, (says, text)
                await pilot.press("escape")
                assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))

    drive(go())


def test_qa_results_keep_the_metrics_on_screen_above_the_variants_note(tmp_path):
    """SQuAD at 80x24: the long note of text-metric variants takes at most 4 lines below the table,
    so the metrics down to best_f1 stay on screen; the headline names F1 at the best threshold."""
    from support.fakes import write_task_runs

    async def go():
        app = make_app(tmp_path)
        run = write_task_runs(tmp_path / "runs")["qa"]
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            screen = RunScreen(run=run)
            app.push_screen(screen)
            assert await wait_for(pilot, lambda: screen.state is not None)
            await pilot.press("2")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "best_f1" in text and "(best threshold 70.4)" in text, text
            assert "text metric variants:" in text

    drive(go())


def test_export_all_tables_of_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await open_runs_row(app, pilot, PRETRAIN_FINISHED)
            await pilot.press("e")
            await pilot.press(*"out", "enter")  # the folder name is selected: typing replaces it
            assert await wait_for(pilot, lambda: app.last_export is not None)
            folder, written = app.last_export
            assert folder.parent.name == "out"  # each export makes its own folder under the chosen one
            names = {p.name for p in written}
            assert {"epochs.csv", "epochs.md", "epochs.tex", "epochs.json", "comparison.md"} <= names

    drive(go())


def test_compare_selected_runs_and_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("3")
            pane = app.screen.query_one(RunsPane)
            assert await wait_for(pilot, lambda: pane.table.row_count == 4)
            await pilot.press("down", "space", "space", "v")  # the two pretrain runs
            assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            screen = app.screen
            assert await wait_for(pilot, lambda: len(screen.states) == 2)
            await pilot.pause(0.1)
            text = screen_text(app)
            assert "• A pretrain 01-02 10:00:00" in text and "x B pretrain 01-01 10:00:00" in text
            await pilot.press("2")
            table = screen.query_one("#cmp-table", DataTable)
            assert table.row_count > 0 and len(table.columns) == 3
            await pilot.press("m", "e", "enter")
            assert await wait_for(pilot, lambda: app.last_export is not None)
            assert len(list((tmp_path / "exports").glob("*/comparison.csv"))) == 1
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
            # export straight from the runs tab
            app.last_export = None
            await pilot.press("e", "enter")
            assert await wait_for(pilot, lambda: app.last_export is not None)

    drive(go())


def test_help_and_command_palette(tmp_path):
    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            text = screen_text(app)
            assert "Experiments" in text and "ctrl+p" in text
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert "Run (r)" in text and "Mark (space)" in text
            await pilot.press(*"run experiment base")
            await pilot.pause(0.3)
            assert "Run experiment baseline" in screen_text(app)
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: [j.experiment for j in app.queue.jobs] == ["baseline"])

    drive(go())


def test_help_lists_each_key_once_and_every_palette_entry_has_a_description(tmp_path):
    """The help is generated from the bindings: within a screen each key and each action appears
    once (no `K/J Move up/down` beside `J Move down`), a long line wraps in its own column; the
    palette lists the main screen's actions from any tab, each with what it does (not its key)."""
    from tui.commands import ConsoleCommands
    from tui.screens.help import sections

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            titles = set()
            for title, rows in sections(app):
                titles.add(title)
                keys = [k for row_keys, _ in rows for k in row_keys.split(" / ")]
                assert len(keys) == len(set(keys)), (title, keys)
                whats = [what for _, what in rows]
                assert len(whats) == len(set(whats)), (title, whats)
                assert all(what for what in whats), title
            examples = dict(next(rows for t, rows in sections(app) if t.startswith("Examples tab")))
            assert {k: what.split(":")[0] for k, what in examples.items()} == {
                "w": "Wrong only",
                "x": "Cell/kind",
                "o": "Order",
                "E": "Epoch",
            }
            jobs = dict(next(rows for t, rows in sections(app) if t == "Jobs"))
            assert jobs["K / shift+↑"].startswith("Move up") and jobs["J / shift+↓"].startswith("Move down")
            await pilot.press("question_mark")
            box = [ln for ln in screen_text(app).splitlines() if "│" in ln]
            for line in box:
                inner = line.split("│")[1].rstrip()
                body = inner[1:]  # the dialog's padding
                assert (
                    not body
                    or body.startswith("  ")
                    or body.split("  ")[0].strip()
                    in titles
                    | {
                        "lmconsole keys",
                        "Jobs run in their own processes: quitting leaves them going; any console or",
                    }
                    or body.startswith("`lmconsole queue")
                ), line
            await pilot.press("escape", "4")  # the System tab: nothing of the Jobs pane has focus
            commands = ConsoleCommands(app.screen)._commands()
            for title, help_text, _ in commands:
                assert help_text and not help_text.startswith("key "), (title, help_text)
            titles = [t for t, _, _ in commands]
            assert "Pause/resume (p) in jobs" in titles and "Run (r) in experiments" in titles, titles
            assert len(titles) == len(set(titles)), titles

    drive(go())


def test_manifest_error_view_and_reload(tmp_path):
    async def go():
        app = make_app(
            tmp_path,
            manifest="[settings]\nrunz = 1\n[[experiment]]\nname = 'a'\ntask = 'pretrain'\n"
            "model = 'bert-micro'\nepochs = 'x'\n",
            history=False,
        )
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: isinstance(app.screen, ManifestErrorScreen))
            text = screen_text(app)
            assert "3 problems" in text and "settings.runz: unknown key" in text and "Traceback" not in text
            await pilot.press("r")  # still broken
            assert isinstance(app.screen, ManifestErrorScreen)
            write_manifest(tmp_path, MANIFEST)
            await pilot.press("r")
            assert await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            # break it again and reload from the main screen (ctrl+r): a banner, the last good manifest stays
            good = app.manifest
            write_manifest(tmp_path, "[[experiment]]\nname = 'b'\n")
            await pilot.press("ctrl+r")
            await pilot.pause(0.1)
            assert isinstance(app.screen, MainScreen) and app.manifest is good
            text = screen_text(app)
            assert "still using the last good version" in text and "baseline" in text
            write_manifest(tmp_path, MANIFEST.replace('name = "baseline"', 'name = "baseline2"'))
            await pilot.press("ctrl+r")
            assert await wait_for(pilot, lambda: "baseline2" in screen_text(app))
            assert "still using the last good version" not in screen_text(app)

    drive(go())


def test_push_from_run_view_confirms_repo_visibility_files(tmp_path, monkeypatch):
    """`u` on a finished run: form, then a confirmation naming repo, visibility and files; a dry run writes the folder."""
    from tui.screens.dialogs import ConfirmDialog, PushDialog

    monkeypatch.chdir(tmp_path)

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            screen = await open_runs_row(app, pilot, PRETRAIN_FINISHED)
            run = screen.feed.run
            (run.path / "model").mkdir()
            (run.path / "model" / "config.json").write_text('{"model_type": "bert"}')
            (run.path / "model" / "model.safetensors").write_bytes(b"0")
            await pilot.press("u")
            assert await wait_for(pilot, lambda: isinstance(app.screen, PushDialog))
            dialog = app.screen
            dialog.query_one("#dry").value = True
            dialog.query_one("#private").value = True
            await pilot.press(*"alice/demo", "enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            question = app.screen.question
            assert "alice/demo (private)" in question and "model.safetensors" in question and "README.md" in question
            await pilot.press("y")
            assert await wait_for(pilot, lambda: any("dry run" in n.message for n in app._notifications))
            message = next(n.message for n in app._notifications if "dry run" in n.message)
            out = Path(message.split(" files in ")[1].split()[0])  # a temporary folder, not under the cwd
            assert tmp_path not in out.parents and (out / "README.md").exists() and (out / "model.safetensors").exists()
            assert not (tmp_path / "exports").exists()

    drive(go())


def test_push_refused_without_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await open_runs_row(app, pilot, PARAMS)
            await pilot.press("u")
            assert await wait_for(pilot, lambda: any("can be pushed" in n.message for n in app._notifications))

    drive(go())


def test_palette_lists_our_commands_first_one_quit_and_finds_pause(tmp_path):
    async def go():
        app = make_app(tmp_path, FakeRunner(pretrain={"block": True}))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            await pilot.press("down", "r")
            assert await wait_for(pilot, lambda: app.queue.jobs and app.queue.jobs[0].status == "running")
            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            assert screen_text(app).split("Search for commands…")[1].split()[0] == "Run"  # ours first
            await pilot.press(*"quit")
            await pilot.pause(0.3)
            text = screen_text(app)
            assert text.count("Quit (") == 1 and "^q / q" in text  # one entry, both keys; no system "Quit"
            await pilot.press("escape")
            await pilot.pause(0.3)
            await pilot.press("ctrl+p")
            await pilot.pause(0.3)
            await pilot.press(*"pause")
            assert await wait_for(
                pilot, lambda: f"Pause/resume job #{app.queue.jobs[0].id} pretrain (running)" in screen_text(app)
            )
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: app.queue.jobs[0].status == "paused")
            app.queue.control(app.queue.jobs[0], "cancel")
            assert await wait_for(pilot, lambda: app.queue.jobs[0].done)

    drive(go())


def test_results_table_shows_whole_epoch_columns_and_says_which_are_hidden(tmp_path):
    """Nine epochs of SQuAD metrics at 80x24: the epoch columns that fit are shown whole (the last one
    was cut mid-number, with a scrollbar glyph mid-screen), the headline says how many are out of
    view, and right/left move one epoch column at a time."""
    import re

    from support.fakes import write_task_runs

    async def go():
        app = make_app(tmp_path)
        run = write_task_runs(tmp_path / "runs")["qa"]
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
            app.push_screen(RunScreen(run=run))
            await pilot.pause(0.3)
            await pilot.press("2")
            assert await wait_for(pilot, lambda: "later epochs →" in screen_text(app))
            lines = screen_text(app).splitlines()
            header = next(line for line in lines if line.startswith(" metric "))
            f1 = next(line for line in lines if line.startswith(" f1 "))
            shown = re.findall(r"ep (\d+)", header)
            # as many values as headers, each a whole number with its decimal, none cut at the edge
            assert len(re.findall(r"\d+\.\d(?=\s|$)", f1)) == 2 + len(shown), (header, f1)
            later = int(re.search(r"(\d+) later epochs", screen_text(app)).group(1))
            assert len(shown) + later == 9 and shown[0] == "0"
            # no horizontal scrollbar drawn mid-screen (vertical ones keep to the right edge)
            assert not any(g in line[:77] for line in lines[:-1] for g in "▁▂▃▄▅▆▇▉▊▋▌▍▎▏"), lines
            await pilot.press("right")
            assert await wait_for(pilot, lambda: "← 1 earlier epoch" in screen_text(app))
            header = next(line for line in screen_text(app).splitlines() if line.startswith(" metric "))
            assert re.findall(r"ep (\d+)", header)[0] == "1"
            await pilot.press("left")
            assert await wait_for(pilot, lambda: "earlier epoch" not in screen_text(app))

    drive(go())
