"""Command palette (ctrl+p): this console's actions first, named by what they do.

Every key action of the current screen (one entry per action, all its keys in the
title), "Run experiment <name>", and "Pause/resume" / "Cancel" for each job that
is queued or running, so typing "pause" or "cancel" finds them from any tab.
Textual's own system commands (theme, screenshot, ...) follow; its "Quit" is
dropped in :meth:`tui.app.LMConsole.get_system_commands` (ours asks first).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import Hit, Hits, Provider

NOT_COMMANDS = ("command_palette", "app.focus_next", "app.focus_previous", "screen.copy_text")  # keys, not commands
WIDGET_KEYS = ("cursor_", "scroll_", "page_", "select_cursor")
OURS_FIRST = 1.0  # added to our scores: the palette sorts by score, ours above the system commands


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
            entry = by_action.setdefault((id(active.node), b.action), [b.description, [], active.node, b])
            key = app.get_key_display(b)
            if key not in entry[1]:
                entry[1].append(key)
        out: list[tuple[str, str, Callable[[], object]]] = []
        for description, keys, node, b in by_action.values():
            title = f"{description} ({' / '.join(keys)})"
            out.append((title, b.tooltip or f"key {' / '.join(keys)}", partial(node.run_action, b.action)))
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
