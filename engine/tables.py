"""Result tables and their exports: CSV, Markdown, LaTeX and JSON.

A :class:`Table` is plain data (column names and rows of str/int/float/None).
CSV and JSON keep full precision and parse back to the same values; Markdown
and LaTeX round floats for reading (``float_digits``) and LaTeX escapes the
characters that module names and metric keys contain (``_``, ``%``, ``&``, ``#``...).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.files import atomic_write_text

FORMATS = ("csv", "md", "latex", "json")
EXTENSIONS = {"csv": "csv", "md": "md", "latex": "tex", "json": "json"}
TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")  # table names become export file names


def flat_results(results: dict, prefix: str = "") -> dict:
    """Nested results flattened to ``a.b`` keys with scalar values (lists/matrices skipped)."""
    out = {}
    for k, v in results.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_results(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


@dataclass(frozen=True)
class Table:
    name: str  # file-safe identifier, e.g. "params_grouped"
    # Any sequences are accepted; __post_init__ stores tuples (the table is immutable).
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""
    notes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        object.__setattr__(self, "notes", tuple(self.notes))
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.name}: row {i} has {len(row)} cells, expected {len(self.columns)}")

    def column(self, name: str) -> list:
        idx = self.columns.index(name)
        return [r[idx] for r in self.rows]

    # -- JSON ---------------------------------------------------------------
    def to_json(self) -> str:
        def enc(v):
            if isinstance(v, float) and not math.isfinite(v):
                return repr(v)
            return v

        return (
            json.dumps(
                {
                    "name": self.name,
                    "title": self.title,
                    "columns": list(self.columns),
                    "rows": [[enc(v) for v in r] for r in self.rows],
                    "notes": list(self.notes),
                },
                indent=1,
                allow_nan=False,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str) -> Table:
        data = json.loads(text)

        def dec(v):
            return float(v) if v in ("nan", "inf", "-inf") else v

        return cls(
            name=data["name"],
            columns=tuple(data["columns"]),
            rows=tuple(tuple(dec(v) for v in r) for r in data["rows"]),
            title=data.get("title", ""),
            notes=tuple(data.get("notes", ())),
        )

    # -- CSV ----------------------------------------------------------------
    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            # repr() of a float is the shortest string that round-trips exactly.
            writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
        return buf.getvalue()

    @staticmethod
    def parse_csv(text: str) -> tuple[list[str], list[list]]:
        """Read CSV back, turning numeric cells into int/float (as written)."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        rows = []
        for raw in reader:
            rows.append([_parse_cell(c) for c in raw])
        return header, rows

    # -- Markdown / LaTeX ---------------------------------------------------
    def to_markdown(self, float_digits: int = 4) -> str:
        def cell(v):
            return fmt_num(v, float_digits, fixed=True).replace("|", "\\|")

        lines = []
        if self.title:
            lines += [f"**{self.title}**", ""]
        lines.append("| " + " | ".join(cell(c) for c in self.columns) + " |")
        lines.append("|" + "|".join("---:" if self._numeric(i) else "---" for i in range(len(self.columns))) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(cell(v) for v in row) + " |")
        for note in self.notes:
            lines += ["", f"_{note}_"]
        return "\n".join(lines) + "\n"

    def to_latex(self, float_digits: int = 4) -> str:
        """A ``table`` float; run-id headers shortened as git does (the full ids in a note) and a table
        still wider than a page scaled to ``\\linewidth`` (that needs ``\\usepackage{graphicx}``)."""
        spec = "".join("r" if self._numeric(i) else "l" for i in range(len(self.columns)))
        headers, full_ids = _short_run_headers(self.columns)
        body = [[fmt_num(v, float_digits, fixed=True) for v in row] for row in self.rows]
        wide = sum(max(len(c) for c in col) + 2 for col in zip(headers, *body)) > LATEX_PAGE_CHARS
        lines = [r"\begin{table}[ht]", r"\centering"]
        if self.title:
            lines.append(r"\caption{" + latex_escape(self.title) + "}")
        if wide:
            lines.append(r"\resizebox{\linewidth}{!}{% wider than the page; needs \usepackage{graphicx}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\hline"]
        lines.append(" & ".join(latex_escape(c) for c in headers) + r" \\")
        lines.append(r"\hline")
        for row in body:
            lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
        lines += [r"\hline", r"\end{tabular}" + ("}" if wide else "")]
        for note in (*self.notes, *full_ids):
            lines.append(r"\par\small " + latex_escape(note))
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        if fmt == "csv":
            return self.to_csv()
        if fmt == "md":
            return self.to_markdown()
        if fmt == "latex":
            return self.to_latex()
        if fmt == "json":
            return self.to_json()
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")

    def write(self, folder: Path, fmt: str, stem: str | None = None) -> Path:
        stem = stem or self.name
        if not TABLE_NAME.match(stem):  # a file name, never a path
            raise ValueError(f"table name {stem!r} is not a safe file name (letters, digits, '_', '-')")
        path = Path(folder) / f"{stem}.{EXTENSIONS[fmt]}"
        atomic_write_text(path, self.render(fmt))
        return path

    def _numeric(self, idx: int) -> bool:
        vals = [r[idx] for r in self.rows if r[idx] is not None and r[idx] != ""]
        return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


LATEX_PAGE_CHARS = 110  # about what a 10 pt tabular fits across a page's text width
RUN_HEADER = re.compile(r"^(?P<experiment>[^/]+)/(?P<run_id>\d{8}-\d{6}-\d{6}-(?P<tail>[0-9a-z]+))$")


def _short_run_headers(columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Headers ``experiment/<run id>`` as ``experiment/<tail>`` when the tails tell them apart, and a
    note giving the full ids; other headers unchanged."""
    matches = [RUN_HEADER.match(c) for c in columns]
    tails = [m["tail"] for m in matches if m]
    if not tails or len(set(tails)) < len(tails):
        return list(columns), []
    headers = [f"{m['experiment']}/{m['tail']}" if m else c for c, m in zip(columns, matches)]
    note = "Runs: " + "; ".join(f"{m['experiment']}/{m['tail']} = {m['run_id']}" for m in matches if m) + "."
    return headers, [note]


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


# Text-mode < > | print as other glyphs in the default OT1 font ("->" came out as "-¿"):
# arrows and math symbols go to math mode, the rest to their text commands.
_LATEX.update(
    {
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "|": r"\textbar{}",
        "→": r"$\rightarrow$",
        "←": r"$\leftarrow$",
        "±": r"$\pm$",
        "×": r"$\times$",
    }
)
_LATEX_ARROWS = re.compile(r"<->|->|<-|=>")
_ARROWS = {"<->": r"$\leftrightarrow$", "->": r"$\rightarrow$", "<-": r"$\leftarrow$", "=>": r"$\Rightarrow$"}


def latex_escape(text: str) -> str:
    parts = _LATEX_ARROWS.split(str(text))
    arrows = _LATEX_ARROWS.findall(str(text))
    out = "".join(_LATEX.get(ch, ch) for ch in parts[0])
    for arrow, part in zip(arrows, parts[1:]):
        out += _ARROWS[arrow] + "".join(_LATEX.get(ch, ch) for ch in part)
    return out


def fmt_num(v, digits: int = 4, fixed: bool = False) -> str:
    """The one number formatter (tables, report, CLI, runs list, console): text for a cell or a line.

    ``None`` is empty, ints get thousands separators, nan/inf print as such. Floats get
    ``digits`` significant digits, or with ``fixed`` (Markdown and LaTeX tables, the report)
    ``digits`` decimals, so a column lines up, except for numbers of a million and more or too
    small to show in that many decimals (those too get significant digits).
    """
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if fixed and not (v != 0 and (abs(v) >= 1e6 or abs(v) < 10**-digits)):
            return f"{v:.{digits}f}"
        return f"{v:.{digits}g}"
    return str(v)


def fmt_same(values, digits: int = 4) -> list[str]:
    """:func:`fmt_num` for numbers read side by side (a row of epochs, a column): every float with
    the same decimals, the most that ``digits`` significant digits give any of them, so ``0.97``
    never sits beside ``0.972`` (it reads ``0.970``). Non-floats as :func:`fmt_num` writes them."""

    def decimals(v: float) -> int:
        text = f"{v:.{digits}g}"
        if "e" in text or not math.isfinite(v):
            return -1  # too large or too small for decimals: significant digits, as fmt_num
        return len(text.split(".")[1]) if "." in text else 0

    floats = [v for v in values if isinstance(v, float) and not isinstance(v, bool)]
    places = [decimals(v) for v in floats]
    if not floats or -1 in places:
        return [fmt_num(v, digits) for v in values]
    d = max(places)
    return [f"{v:,.{d}f}" if isinstance(v, float) else fmt_num(v, digits) for v in values]


def fmt_duration(seconds: float | None) -> str:
    """A duration for a progress line or an ETA: ``42s``, ``3m38s``, ``2h05m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _parse_cell(cell: str):
    if cell == "":
        return None
    if cell in ("True", "False"):
        return cell == "True"
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def export_tables(tables: list[Table], out_dir: Path, formats=FORMATS, prefix: str = "") -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        for fmt in formats:
            written.append(table.write(out_dir, fmt, stem=f"{prefix}{table.name}"))
    return written
