"""Command palette (ctrl+p): every key action of the current screen by name, and "Run <experiment>"."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ConsoleCommands(Provider):
    def _commands(self) -> list[tuple[str, str, object]]:
        screen, app = self.screen, self.app
        out = []
        seen = set()
        for active in screen.active_bindings.values():
            b = active.binding
            if not b.description or not active.enabled or b.action in ("command_palette",):
                continue
            if type(active.node).__module__.startswith("textual."):
                continue  # cursor keys of built-in widgets: noise in a command list
            title = f"{b.description} ({app.get_key_display(b)})"
            if title in seen:
                continue
            seen.add(title)
            out.append((title, b.tooltip or f"key {app.get_key_display(b)}", partial(active.node.run_action, b.action)))
        run = getattr(screen, "run_experiments", None)
        if app.manifest is not None and run is not None and getattr(app, "queue", None) is not None:
            for name in app.manifest.names:
                out.append((f"Run experiment {name}", "queue it, missing dependencies first", partial(run, [name])))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
