"""The runs list shared by ``lmconsole runs`` and the console's Runs tab.

One :class:`RunRow` per run (status, progress, headline result, tags, note,
archived, hyperparameters), the hyperparameters that differ between listed runs,
a filter language and sorting:

- ``lr<1e-4``, ``epochs>=3``, ``task=qa``, ``accuracy>0.9``: compare a
  hyperparameter (config key, aliases in :data:`ALIASES`), a final metric, or a
  column (status, experiment, task, model). Numbers compare as numbers.
- ``tag:baseline`` (``!tag:old`` / ``-tag:old`` for "not tagged").
- anything else: plain text, matched in experiment, run id, status, task, model, tags, note and reason.

Terms are combined with AND. Pure reading: no file is written.
"""

from __future__ import annotations

import json
import operator
import os
import re
from collections.abc import Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store.runs import Run

from engine.files import open_plain
from engine.status import ENDED
from engine.tables import fmt_num

# Metrics worth a result column or a curve, best first (pretrain, classify, qa).
PRIMARY = ("mlm_perplexity", "accuracy", "f1", "exact", "eval_loss", "loss")
# Short words for long config keys, in filters (``lr<1e-4``) and as column headers (see short_name).
ALIASES = {
    "lr": "learning_rate",
    "bs": "batch_size",
    "wd": "weight_decay",
    "seq": "max_seq_length",
    "accum": "gradient_accumulation_steps",
    "exp": "experiment",
}
# Config keys that are not hyperparameters (bookkeeping, text, or shown in their own column).
NOT_HYPER = {
    "name",
    "description",
    "task",
    "model",
    "depends_on",
    "notes",
    "note",
    "tags",
    "heads",
    "dataset",
    "dataset_config",
    "text_column",
    "text_pair_column",
    "label_column",
    "eval_split",
    "train_split",
    "output",
    "push",
    "report_to",
    "runs_dir",
    "cache_dir",
    "sweep",  # a trial's record (study, number, parameters): its parameters are columns of their own
}
TEXT_COLUMNS = ("experiment", "run", "status", "task", "model", "tags", "note")
# A hyperparameter's column header: its alias (columns of their own keep their names: "experiment").
_SHORT = {key: alias for alias, key in ALIASES.items() if key not in TEXT_COLUMNS}
_OPS = {
    "<=": operator.le,
    ">=": operator.ge,
    "!=": operator.ne,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
}
_CLAUSE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)(<=|>=|!=|==|<|>|=)(.+)$")


def _number(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def short_name(key: str) -> str:
    """The column header of config key ``key``: its alias (``learning_rate`` -> ``lr``), else ``key`` itself."""
    return _SHORT.get(key, key)


def primary_key(metrics: dict) -> str | None:
    """The headline metric among ``metrics``' numbers: the first of :data:`PRIMARY` present, else the first number."""
    nums = [k for k, v in metrics.items() if _number(v) is not None and not isinstance(v, str)]
    return next((k for k in PRIMARY if k in nums), nums[0] if nums else None)


def primary_result(results: dict) -> tuple[str, float] | None:
    """The headline metric of a run's results: (key, value), from ``final`` first."""
    final = results.get("final")
    final = final if isinstance(final, dict) else {}
    for src in (final, results):
        key = primary_key(src)
        if key is not None:
            return key, float(src[key])
    return None


def fmt_value(v) -> str:
    if isinstance(v, float):
        return fmt_num(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return "" if v is None else str(v)


def last_step(run, tail_bytes: int = 65536) -> tuple[int, int] | None:
    """(step, total_steps) of the last StepLogged event, read from the end of ``events.jsonl``.

    Reads ``tail_bytes`` from the end, then further back a block at a time (each twice the last)
    until a StepLogged line turns up: the same answer as reading the whole file, at the cost of
    its tail only (a run's events end with steps, or a few lines after them).
    """
    try:
        with open_plain(run.events_path) as fh:
            fh.seek(0, 2)
            end = fh.tell()
            block, carry = tail_bytes, b""
            while end > 0:
                start = max(0, end - block)
                fh.seek(start)
                data = fh.read(end - start) + carry
                lines = data.split(b"\n")
                # the first piece may be the end of a line that began before ``start``: kept for the next block
                carry = lines.pop(0) if start > 0 else b""
                found = _last_step_in(lines)
                if found is not None:
                    return found
                end, block = start, block * 2
            return _last_step_in([carry]) if carry else None
    except OSError:
        return None


def _last_step_in(lines: list[bytes]) -> tuple[int, int] | None:
    for raw in reversed(lines):
        if b'"StepLogged"' not in raw:
            continue
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("event") == "StepLogged":
            try:
                return int(ev.get("step", 0)), int(ev.get("total_steps", 0) or 0)
            except (TypeError, ValueError):
                continue
    return None


@dataclass
class RunRow:
    """One run as ``lmconsole runs`` and the console's Runs, Experiments and System tabs show it."""

    run: Run
    """The run directory."""
    status: str
    """As :meth:`Run.status` says (a dead owner's run is interrupted); ``unreadable`` for a bad status.json."""
    reason: str
    """Why the run stopped, or its files' problems ("unreadable: <file>: <reason>") when it has any."""
    task: str
    """The config's task (inspect, pretrain, classify, qa); empty when the config has none."""
    model: str
    """The config's model (a preset, a Hub id, a folder or ``run:<experiment>``); empty when none."""
    progress: str
    """``120/480 25%`` from the last step logged, ``step 120`` without a total, ``100%`` once finished, else empty."""
    result_key: str
    """The headline metric of a finished run, or of a pruned trial's last evaluation (see :func:`primary_result`);
    empty before it finished."""
    result: float | None
    """That metric's value; None before the run finished (or was pruned)."""
    tags: list[str] = field(default_factory=list)
    """Tags from meta.json, in the order they were added."""
    note: str = ""
    """The note from meta.json."""
    archived: bool = False
    """Archived runs are hidden unless asked for (``--archived``, ``A`` in the console)."""
    config: dict[str, Any] = field(default_factory=dict)
    """config.json: the hyperparameters the listing compares."""
    final: dict[str, Any] = field(default_factory=dict)
    """results.json's ``final`` metrics (filters compare them: ``accuracy>0.9``)."""
    problems: list[str] = field(default_factory=list)
    """The run's unreadable files, as :meth:`Run.problems` lists them."""
    results: dict[str, Any] = field(default_factory=dict)
    """The whole results.json (the flags read its history)."""

    @property
    def key(self) -> str:
        return f"{self.run.experiment}/{self.run.run_id}"

    @property
    def result_text(self) -> str:
        return f"{self.result_key} {fmt_value(self.result)}" if self.result_key else ""

    def value(self, name: str):
        """A column, hyperparameter or final metric by name (aliases allowed); None when absent."""
        name = ALIASES.get(name, name)
        if name == "experiment":
            return self.run.experiment
        if name in ("run", "run_id", "id"):
            return self.run.run_id
        if name in ("status", "task", "model", "note", "progress"):
            return getattr(self, name)
        if name == "tags":
            return " ".join(self.tags)
        if name == "result":
            return self.result
        if name in self.config:
            return self.config[name]
        return self.final.get(name)

    def haystack(self) -> str:
        return " ".join(
            [
                self.key,
                self.status,
                self.task,
                self.model,
                " ".join(self.tags),
                self.note,
                self.reason,
                "archived" if self.archived else "",
            ]
        ).lower()


def run_row(run) -> RunRow:
    from engine.files import read_json_object
    from engine.store.meta import read_meta

    # Each JSON file is read once (a listing of 1,000 runs reads thousands of files): the status, the
    # config, the results and the problems ("unreadable: <file>: <reason>") all come from these reads.
    base = os.fspath(run.path)
    reads = {
        name: read_json_object(os.path.join(base, name)) for name in ("status.json", "config.json", "results.json")
    }
    st = run.status(reads["status.json"])
    status = str(st.get("status", "queued"))
    cfg = reads["config.json"][0]
    results = reads["results.json"][0]
    final = results.get("final")
    final = final if isinstance(final, dict) else {}
    # a pruned trial's last evaluation is its result (the sweep ranks it by that, so does the list)
    head = primary_result(results) if status in ("finished", "pruned") else None
    step = last_step(run)
    if step and step[1]:
        progress = f"{step[0]}/{step[1]} {100 * step[0] // step[1]}%"
    elif step:
        progress = f"step {step[0]}"
    else:
        progress = "100%" if status == "finished" else ""
    meta = read_meta(run)
    # as run.problems(): shown as the run's reason, the other runs still list
    problems = [problem for _, problem in reads.values() if problem]
    return RunRow(
        run=run,
        status=status,
        reason="; ".join(problems) or str(st.get("reason", "") or ""),
        task=str(cfg.get("task", "")),
        model=str(cfg.get("model", "")),
        progress=progress,
        result_key=head[0] if head else "",
        result=head[1] if head else None,
        tags=meta["tags"],
        note=meta["note"],
        archived=meta["archived"],
        config=cfg,
        final=final,
        problems=problems,
        results=results,
    )


def _hashable(v):
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (list, dict)) else v


def differing_keys(rows: list[RunRow], limit: int | None = None) -> list[str]:
    """Hyperparameters whose values differ between ``rows`` (a key missing in some runs counts)."""
    if len(rows) < 2:
        return []
    keys = list(dict.fromkeys(k for r in rows for k in r.config if k not in NOT_HYPER))
    out = []
    for k in keys:
        vals = {_hashable(r.config.get(k)) for r in rows}
        if len(vals) > 1:
            out.append(k)
    return out[:limit] if limit else out


# -- filter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    kind: str  # "tag" | "cmp" | "text"
    key: str = ""
    op: str = ""
    value: str = ""
    negate: bool = False

    def matches(self, row: RunRow) -> bool:
        if self.kind == "tag":
            hit = self.value in row.tags
        elif self.kind == "text":
            hit = self.value.lower() in row.haystack()
        else:
            hit = _compare(row.value(self.key), self.op, self.value)
        return hit != self.negate


def _compare(have, op: str, want: str) -> bool:
    if have is None:
        return op == "!="
    a, b = _number(have), _number(want)
    fn = _OPS[op]
    if a is not None and b is not None:
        return fn(a, b)
    if op in ("=", "==", "!="):
        return fn(str(have).lower(), want.lower())
    return False  # < / > between text values: no match


def parse_filter(text: str) -> list[Term]:
    terms = []
    for word in (text or "").split():
        negate = word[:1] in ("!", "-") and len(word) > 1 and word[1:].lower().startswith("tag:")
        body = word[1:] if negate else word
        if body.lower().startswith("tag:") and len(body) > 4:
            terms.append(Term("tag", value=body[4:], negate=negate))
            continue
        m = _CLAUSE.match(word)
        if m:
            terms.append(Term("cmp", key=m.group(1), op=m.group(2), value=m.group(3)))
        else:
            terms.append(Term("text", value=word))
    return terms


def filter_rows(rows: list[RunRow], text: str) -> list[RunRow]:
    terms = parse_filter(text)
    return [r for r in rows if all(t.matches(r) for t in terms)]


# -- sort ------------------------------------------------------------------------------------


def sort_key(column: str):
    """Key function for sorting rows by ``column``: numbers by value, then text; empty cells last."""

    def key(row: RunRow):
        v = row.value(column) if column not in ("started", "run") else row.run.run_id
        if column == "progress":
            m = re.search(r"(\d+)%", row.progress)
            v = int(m.group(1)) if m else None
        if v is None or v == "":
            return (2, 0.0, "")
        n = _number(v)
        return (0, n, "") if n is not None else (1, 0.0, str(v).lower())

    return key


def sort_rows(rows: list[RunRow], column: str, descending: bool = False) -> list[RunRow]:
    present = [r for r in rows if sort_key(column)(r)[0] < 2]
    empty = [r for r in rows if sort_key(column)(r)[0] == 2]
    return sorted(present, key=sort_key(column), reverse=descending) + empty


def list_rows(store, experiment: str | None = None, archived: bool | None = False) -> list[RunRow]:
    """Rows of every run (oldest first). ``archived``: False hides archived runs, True shows only them, None all."""
    rows = [run_row(r) for r in store.runs(experiment)]
    if archived is None:
        return rows
    return [r for r in rows if r.archived == archived]


def align(header: list[str], rows: list[list[str]], right: Set[int] = frozenset()) -> list[str]:
    """Text table with every column padded to its widest cell (the last column unpadded)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    out = []
    for cells in [header] + rows:
        parts = []
        for i, c in enumerate(cells):
            last = i == len(cells) - 1
            parts.append(c.rjust(widths[i]) if i in right else (c if last else c.ljust(widths[i])))
        out.append("  ".join(parts).rstrip())
    return out


def fit_width(header: list[str], rows: list[list[str]], drop: list[int], width: int) -> tuple[list[str], list[str]]:
    """:func:`align` for a terminal ``width`` columns wide: (lines, header names of the columns left out).

    Columns at the indices ``drop`` (e.g. the differing hyperparameters) go from the right while a
    line is wider than ``width``; a line still too wide is cut, ending in "…".
    """
    keep = list(range(len(header)))
    hidden: list[str] = []
    lines = align(header, rows)
    for i in reversed(drop):
        if max(map(len, lines)) <= width:
            break
        keep.remove(i)
        hidden.insert(0, header[i])
        lines = align([header[k] for k in keep], [[r[k] for k in keep] for r in rows])
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines], hidden


def short_ids(run_ids: list[str]) -> dict[str, str]:
    """Each run id's short form, as git shortens a commit hash: its random tail (``a1b2`` of
    ``20260101-100000-000000-a1b2``), taken longer from the right where two tails collide.

    :meth:`RunStore.get` accepts such a tail in place of the whole id.
    """
    out: dict[str, str] = {}
    ids = list(dict.fromkeys(run_ids))
    for rid in ids:
        n = min(len(rid), len(rid.rsplit("-", 1)[-1]) or len(rid))
        while n < len(rid) and any(o != rid and o.endswith(rid[-n:]) for o in ids):
            n += 1
        out[rid] = rid[-n:].lstrip("-") or rid
    return out


def fit_table(
    header: list[str], rows: list[list[str]], width: int, *, drop: list[int], keep: int, squeeze: int
) -> tuple[list[str], list[str]]:
    """:func:`fit_width` that never cuts column ``keep`` (what the user came for, e.g. the result).

    Columns at ``drop`` go first (from the right) while a line is wider than ``width``; if column
    ``keep`` still ends past ``width``, column ``squeeze`` (e.g. the experiment name) is shortened,
    its long cells ending in "…"; only what follows ``keep`` is then cut at the line's end.
    Returns (lines, header names of the columns left out).
    """
    cells = [list(header)] + [list(r) for r in rows]
    cols = list(range(len(header)))
    hidden: list[str] = []

    def lines_of() -> list[str]:
        return align([cells[0][c] for c in cols], [[r[c] for c in cols] for r in cells[1:]])

    for d in reversed(drop):
        if max(map(len, lines_of())) <= width:
            break
        cols.remove(d)
        hidden.insert(0, header[d])

    def col_width(c: int) -> int:
        return max(len(r[c]) for r in cells)

    while sum(col_width(c) + 2 for c in cols if c <= keep) - 2 > width and col_width(squeeze) > 6:
        w = col_width(squeeze)
        for r in cells:
            if len(r[squeeze]) >= w:
                r[squeeze] = r[squeeze][: w - 2] + "…"
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines_of()], hidden


class RowCache:
    """:func:`run_row` for many runs, re-read only when a run may have changed. Call from a worker thread.

    A row is kept while its run's status is in ``ENDED`` (finished, failed, cancelled) and none of
    status.json, meta.json and results.json changed: nothing else changes such a run (a resume,
    a tag, a note rewrite one of those files). Every other row is read again at each load: a live
    run's progress is in events.jsonl and its owner may die (running turns interrupted with no
    file written); an interrupted run turns running as soon as a resume takes its lock, before
    status.json says so; an unreadable one is read until it is fixed. The cost: one stat of three
    files per ended run, one :func:`run_row` per other run.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, RunRow]] = {}

    @staticmethod
    def _stamp(run) -> tuple:
        out = []
        for name in ("status.json", "meta.json", "results.json"):
            try:
                out.append(os.stat(run.path / name).st_mtime_ns)
            except OSError:
                out.append(0)
        return tuple(out)

    def load(self, runs) -> list[RunRow]:
        """The rows of ``runs`` (e.g. ``store.runs()``), in their order."""
        out = []
        for run in runs:
            key = str(run.path)
            stamp = self._stamp(run)
            hit = self._cache.get(key)
            if hit and hit[0] == stamp and hit[1].status in ENDED:
                out.append(hit[1])
                continue
            row = run_row(run)
            self._cache[key] = (stamp, row)
            out.append(row)
        return out
