"""Runs named on the command line: ``experiment`` (its latest run), ``experiment/run-id``,
a run-id prefix, or the run's path (``runs/<exp>/<id>`` as ``runs --json`` prints it).

A name that matches nothing is :class:`~engine.errors.NotFound` (the store raises it); one
that is not a safe directory name or leads outside the runs directory is a ``ValueError``
in the store, which :func:`as_user_error` turns into a :class:`~engine.errors.UserError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import UserError


def get_run(store, ref: str):
    """A run by ``experiment/run-id``, ``experiment`` (latest), run-id prefix, or its path
    (relative or absolute). NotFound if none matches, ValueError for an unsafe reference."""
    path = Path(ref.strip()).expanduser()
    if ref.count("/") >= 2 or path.is_absolute() or (path / "config.json").exists():
        root = store.root.resolve()
        try:
            rel = path.resolve().relative_to(root)
        except ValueError:
            raise ValueError(f"{ref} is not a run under the runs directory {store.root}") from None
        if len(rel.parts) != 2:
            raise ValueError(f"{ref}: a run path is <runs dir>/<experiment>/<run-id>")
        ref = "/".join(rel.parts)
    return store.get(ref)


@contextmanager
def as_user_error() -> Iterator[None]:
    """A ``ValueError`` raised inside (an unsafe run name, a path outside the runs directory, an
    unreadable file of a run) becomes a UserError with its message."""
    try:
        yield
    except ValueError as exc:
        raise UserError(str(exc)) from None


def runs_of(store, refs: list[str]) -> list:
    """The runs that ``refs`` name, in order (:func:`get_run` each); a UserError for the first bad one."""
    with as_user_error():
        return [get_run(store, ref) for ref in refs]
