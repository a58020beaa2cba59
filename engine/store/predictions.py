"""Each evaluation's predictions, kept per epoch in the run directory so any of them can be browsed.

On disk: ``predictions/epoch-<N>.jsonl`` (``N`` = the epoch the evaluation followed; 0 = before
training; an evaluation inside an epoch (``eval_steps``) has a fractional one, ``epoch-1.5.jsonl``),
one JSON object per line, written atomically by the task right after it evaluates, so a
kill never leaves half a file and a resumed run rewrites the epochs it evaluates again. What a
line holds is the task's (engine.study.examples reads it):

- classify: ``index, text, label, prediction, confidence`` (as the final ``predictions.jsonl``);
- qa: ``id, prediction`` (after the no-answer threshold), ``na_score``, ``confidence``;
- pretrain: one masked position of the first evaluation sequences: ``index, position, gold,
  top`` ([token, probability] pairs), ``left`` / ``right`` context.

The final evaluation's files at the run's top (``predictions.jsonl``, ``predictions.json``, ...)
stay where ``verify`` reads them; these are the history beside them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.files import atomic_write_text, read_plain

FOLDER = "predictions"
_NAME = re.compile(r"^epoch-(\d+(?:\.\d+)?)\.jsonl$")

Epoch = int | float  # whole at epoch ends, fractional for evaluations inside an epoch


def epoch_label(epoch: Epoch) -> str:
    """``2`` for an epoch's end, ``1.5`` inside one (6 significant digits: the same float, the same name)."""
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:.6g}"


def _number(label: str) -> Epoch:
    return int(label) if label.isdigit() else float(label)


def epoch_path(run_path: Path, epoch: Epoch) -> Path:
    return Path(run_path) / FOLDER / f"epoch-{epoch_label(epoch)}.jsonl"


def save_epoch(run_path: Path, epoch: Epoch, rows: list[dict]) -> Path:
    """Write one evaluation's rows (replacing an earlier attempt's file for the same epoch)."""
    path = epoch_path(run_path, epoch)
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def saved_epochs(run_path: Path) -> list[Epoch]:
    """The epochs whose evaluation predictions are saved, ascending ([] for runs made before they were)."""
    folder = Path(run_path) / FOLDER
    try:
        names = [p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(_number(m.group(1)) for m in map(_NAME.match, names) if m)


def read_epoch(run_path: Path, epoch: Epoch) -> list[dict]:
    """The rows of one evaluation (never read through a link); ValueError names the file and line
    of a damaged one, FileNotFoundError a missing one."""
    path = epoch_path(run_path, epoch)
    rows = []
    for n, line in enumerate(read_plain(path).decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n} is not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n} is not a JSON object")
        rows.append(row)
    return rows
