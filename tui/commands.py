"""Command palette (ctrl+p): this console's actions first, named by what they do.

Every key action of the current screen (one entry per action, all its keys in the
title, what it does below: the binding's tooltip), those of the main screen's other
tabs too (the entry switches to the tab first), "Run experiment <name>", and
"Pause/resume" / "Cancel" for each job that is queued or running, so typing "pause"
or "cancel" finds them from any tab.
Textual's own system commands (theme, screenshot, ...) follow; its "Quit" is
dropped in :meth:`tui.app.LMConsole.get_system_commands` (ours asks first).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.binding import Binding
from textual.command import Hit, Hits, Provider

NOT_COMMANDS = ("command_palette", "app.focus_next", "app.focus_previous", "screen.copy_text")  # keys, not commands
WIDGET_KEYS = ("cursor_", "scroll_", "page_", "select_cursor")
OURS_FIRST = 1.0  # added to our scores: the palette sorts by score, ours above the system commands


async def _in_tab(screen, tab: str, node, action: str) -> None:
    """Show ``tab`` of ``screen``, then run ``action`` on ``node`` (a pane of that tab)."""
    screen.action_tab(tab)
    await node.run_action(action)


class ConsoleCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        screen, app = self.screen, self.app
        by_action: dict[tuple, list] = {}
        for active in screen.active_bindings.values():
            b = active.binding
            if not b.description or not active.enabled or b.system or b.action in NOT_COMMANDS:
                continue
            if type(active.node).__module__.startswith("textual.") or b.action.startswith(WIDGET_KEYS):
                continue  # cursor keys of built-in widgets (and their subclasses): noise in a command list
            entry = by_action.setdefault((id(active.node), b.action), [b.description, [], active.node, b, None])
            key = app.get_key_display(Binding(b.key, b.action))
            if key not in entry[1]:
                entry[1].append(key)
        # the other tabs' panes of the screen (e.g. Jobs while the System tab shows): the same
        # actions, run after switching to their tab, so the palette does not depend on the tab
        shown = {node_id for node_id, _ in by_action}
        for node, tab in getattr(screen, "palette_panes", lambda: [])():
            if id(node) in shown:
                continue  # the focused pane: its keys are listed above
            for b in Binding.make_bindings(b for b in type(node).BINDINGS if isinstance(b, Binding)):
                if b.description:
                    entry = by_action.setdefault(
                        (id(node), b.action),
                        [b.description, [], node, b, partial(_in_tab, screen, tab, node, b.action)],
                    )
                    entry[1].append(app.get_key_display(Binding(b.key, b.action)))
        out: list[tuple[str, str, Callable[[], object]]] = []
        for description, keys, node, b, in_tab in by_action.values():
            where = f" in {in_tab.args[1]}" if in_tab else ""  # the tab it switches to
            title = f"{description} ({' / '.join(dict.fromkeys(keys))}){where}"
            out.append((title, b.tooltip or description, in_tab or partial(node.run_action, b.action)))
        run = getattr(screen, "run_experiments", None)
        queue = getattr(app, "queue", None)
        manifest = getattr(app, "manifest", None)  # None while the manifest error screen shows
        if manifest is not None and run is not None and queue is not None:
            for name in manifest.names:
                out.append((f"Run experiment {name}", "queue it, missing dependencies first", partial(run, [name])))
        control = getattr(screen, "control", None)
        if control is not None and queue is not None:
            for job in [j for j in queue.jobs if not j.done]:
                what = f"job #{job.id} {job.experiment} ({job.status})"
                out.append(
                    (
                        f"Pause/resume {what}",
                        "pause holds at the next step; resume continues",
                        partial(control, "pause", job=job, run=job.run),
                    )
                )
                out.append(
                    (
                        f"Cancel {what}",
                        "asks first; a running job saves a checkpoint",
                        partial(control, "cancel", job=job, run=job.run),
                    )
                )
        return out

    async def discover(self) -> Hits:
        for i, (title, help_text, callback) in enumerate(self._commands()):
            yield Hit(OURS_FIRST - i * 1e-6, title, callback, text=title, help=help_text)  # in this order

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(OURS_FIRST + score, matcher.highlight(title), callback, text=title, help=help_text)
