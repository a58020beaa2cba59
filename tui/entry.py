"""Console-script entry point: commands go to the headless CLI, no command opens the console."""

from __future__ import annotations

import sys


def _open_console(manifest_path: str) -> int:
    from .app import run_console  # imported only when the console is really wanted

    return run_console(manifest_path)


def _shadowed() -> str:
    """A message when the ``engine`` that imports is not lmconsole's (README, "Import names")."""
    import engine

    if getattr(engine, "DISTRIBUTION", None) == "lmconsole":
        return ""
    where = getattr(engine, "__file__", None) or ", ".join(getattr(engine, "__path__", [])) or "?"
    return (
        f"lmconsole: the module 'engine' imported from {where} is not lmconsole's engine: another installed "
        "package uses that top-level name. Install lmconsole in its own virtual environment."
    )


def main(argv=None) -> int:
    import os

    # OpenMP threads that spin while idle steal the cores of a busy shared box: measured 2-11x
    # slower CPU training under load (BENCHMARKS.md, "Threads and OpenMP"). Must be set before
    # torch is imported; an explicit setting by the user wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    problem = _shadowed()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from engine.cli.main import main as cli_main

    return cli_main(argv, console=_open_console)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
