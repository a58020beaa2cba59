"""Pretraining data at any size: wikitext lines -> NSP pairs in one Arrow file, in bounded memory, on all cores.

Three stages, streamed through files in a work folder (nothing holds the corpus in memory):

1. **tokenise** (``num_proc`` processes, blocks of :data:`BLOCK_LINES` lines, results taken in
   order): each line's kind and sentences (:func:`engine.data.nsp.line_sentences`), tokenised.
   The main process appends the tokens to ``tokens.i32`` and the sentence lengths to
   ``sentences.i32`` and notes where each document starts.
2. **plan** (main process): :func:`engine.data.nsp.plan_pairs`, the BERT recipe on sentence
   lengths only (one seeded stream in document order, so the pairs do not depend on how the
   work was split), gives each pair's token spans.
3. **assemble** (``num_proc`` processes, blocks of :data:`PAIR_BLOCK` pairs, in order):
   ``[CLS] A [SEP] B [SEP]`` and the segment ids, read from ``tokens.i32``. The main process
   writes the blocks in order to one Arrow file, after ``finish`` (if given) adds columns to
   each block (the evaluation masks: blocks are whole multiples of :data:`MASK_CHUNK` rows).

What stays in memory grows with the number of documents (three int64 each), not with tokens;
``sentences.i32`` is read through a memory map (4 bytes a sentence, page cache). Planning
overlaps assembly: the main process plans the next block while the workers build the last.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from engine.data.nsp import ARTICLE, line_sentences, plan_pairs

BLOCK_LINES = 2048  # lines per tokenising task: ~100 kB of text, a few ms of a worker
MASK_CHUNK = 512  # rows masked together (the evaluation masks are drawn chunk by chunk)
PAIR_BLOCK = 8 * MASK_CHUNK  # pairs per assembling task; a multiple of MASK_CHUNK
IN_FLIGHT = 3  # tasks queued per process: keeps them busy, bounds the memory in flight
PROGRESS_EVERY_S = 1.0


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, e.g. a Slurm or taskset allotment)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_num_proc(num_proc: int) -> int:
    """``num_proc`` as given, or every available core for 0."""
    return num_proc if num_proc > 0 else available_cores()


@dataclass(frozen=True)
class PairSettings:
    """What the pairs depend on (and nothing else: not ``num_proc``)."""

    max_seq_length: int
    short_seq_prob: float
    seed: int
    limit: int = 0  # at most this many pairs, the first ones (0 = all)


Progress = Callable[[str, int, int, int, float], None]
"""``progress(stage, done, total, tokens, elapsed_s)``: stage ``tokenise`` counts lines,
``pair`` counts documents; ``tokens`` is the number handled so far."""


# -- the workers' side ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(tok, tokens_path: str | None, cls_id: int, sep_id: int, forked: bool = False) -> None:
    if forked:
        import signal

        # A forked worker inherits the job's handlers (a SIGTERM that asks for a checkpoint); a worker
        # has nothing to save and must end when the pool is terminated.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which ends the pool
    _WORKER.update(tok=tok, tokens_path=tokens_path, cls=cls_id, sep=sep_id)


def _tokenise_block(lines: list[str]):
    """Lines -> (line kinds int8, kept sentences per line int32, sentence lengths int32, tokens int32).

    Sentences that tokenise to nothing are dropped, as documents without sentences are later.
    """
    import numpy as np

    kinds = np.zeros(len(lines), np.int8)
    sents: list[str] = []
    owner: list[int] = []
    for j, raw in enumerate(lines):
        kind, ss = line_sentences(raw)
        kinds[j] = kind
        if ss:
            sents.extend(ss)
            owner.extend([j] * len(ss))
    ids = _WORKER["tok"](sents, add_special_tokens=False)["input_ids"] if sents else []
    lens = np.fromiter(map(len, ids), np.int32, len(ids))
    keep = lens > 0
    per_line = np.bincount(np.asarray(owner, np.int64)[keep], minlength=len(lines)).astype(np.int32)
    tokens = np.fromiter(chain.from_iterable(ids), np.int32, int(lens.sum()))
    return kinds, per_line, lens[keep], tokens


def _assemble_block(spans):
    """Pair spans [n, 5] (a0, a1, b0, b1, is_random) -> (row offsets, input ids, token types, labels)."""
    import numpy as np

    a0, a1, b0, b1, rnd = (spans[:, k] for k in range(5))
    la, lb = a1 - a0, b1 - b0
    n = len(spans)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(la + lb + 3, out=offsets[1:])
    ids = np.empty(int(offsets[-1]), np.int32)
    # One read covers every A and every true-continuation B of the block (they are consecutive
    # in the token stream); a random B lies anywhere and is read on its own.
    near = rnd == 0
    lo = int(min(a0.min(), b0[near].min(initial=a0.min())))
    hi = int(max(a1.max(), b1[near].max(initial=a1.max())))
    cls_id, sep_id = _WORKER["cls"], _WORKER["sep"]
    with open(_WORKER["tokens_path"], "rb") as fh:
        fh.seek(4 * lo)
        span = np.fromfile(fh, np.int32, hi - lo)
        for k in range(n):
            o, x, y = int(offsets[k]), int(la[k]), int(lb[k])
            ids[o] = cls_id
            ids[o + 1 : o + 1 + x] = span[a0[k] - lo : a1[k] - lo]
            ids[o + 1 + x] = sep_id
            if near[k]:
                ids[o + 2 + x : o + 2 + x + y] = span[b0[k] - lo : b1[k] - lo]
            else:
                fh.seek(4 * int(b0[k]))
                ids[o + 2 + x : o + 2 + x + y] = np.fromfile(fh, np.int32, y)
            ids[o + 2 + x + y] = sep_id
    # segment ids: la + 2 zeros ([CLS] A [SEP]), lb + 1 ones (B [SEP]) per row
    runs = np.empty(2 * n, np.int64)
    runs[0::2], runs[1::2] = la + 2, lb + 1
    types = np.repeat(np.tile(np.array([0, 1], np.int8), n), runs)
    return offsets, ids, types, rnd.astype(np.int64)


# -- the main process's side ------------------------------------------------------------------


class _Pool:
    """``num_proc`` worker processes fed in order with a bounded number of tasks in flight (or none: inline)."""

    def __init__(self, num_proc: int, init_args: tuple):
        self.num_proc = num_proc
        self.pool = None
        if num_proc > 1:
            import multiprocessing as mp

            # fork: the workers inherit the tokenizer and the imports instead of loading them again.
            # A tokenizer that used its own threads before the fork would warn and go serial; the
            # workers are the parallelism here, so say so up front.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            self.pool = mp.get_context("fork").Pool(num_proc, _init_worker, (*init_args, True))
        else:
            _init_worker(*init_args)

    def ordered(self, fn: Callable, items: Iterable) -> Iterator:
        if self.pool is None:
            for item in items:
                yield fn(item)
            return
        pending: deque = deque()
        for item in items:
            pending.append(self.pool.apply_async(fn, (item,)))
            if len(pending) >= IN_FLIGHT * self.num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self, ok: bool) -> None:
        """End the workers: let them finish (``ok``) or stop them at once (an error, a cancel)."""
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


def _line_blocks(lines, column: str, block: int) -> Iterator[list[str]]:
    """The text column in blocks of ``block`` lines, read batch by batch from the dataset's Arrow files.

    The files are read with plain reads (not memory-mapped into this process), so what this
    process holds is one batch; a dataset without plain backing files is iterated instead.
    """
    import pyarrow as pa

    files = [f["filename"] for f in getattr(lines, "cache_files", [])]
    plain = bool(files) and getattr(lines, "_indices", None) is None and sum(map(_stream_rows, files)) == len(lines)

    def batches() -> Iterator[list[str]]:
        if plain:
            for f in files:
                with pa.OSFile(f) as fh:
                    for rb in pa.ipc.open_stream(fh):
                        yield rb.column(rb.schema.get_field_index(column)).to_pylist()
        else:
            for rb in lines.select_columns([column]).with_format("arrow").iter(batch_size=1000):
                yield rb.column(0).to_pylist()

    buf: list[str] = []
    for texts in batches():
        buf.extend(texts)
        while len(buf) >= block:
            yield buf[:block]
            buf = buf[block:]
    if buf:
        yield buf


def _stream_rows(path: str) -> int:
    """Rows of an Arrow stream file, read batch by batch with plain reads (a memory map would leave
    every page it touched resident in this process while it is open: the whole file)."""
    import pyarrow as pa

    with pa.OSFile(path) as fh:
        return sum(rb.num_rows for rb in pa.ipc.open_stream(fh))


class _Documents:
    """Where each document starts, in sentences and in tokens, collected while tokenising (int64 each)."""

    def __init__(self) -> None:
        import numpy as np

        self.np = np
        self.sent_starts: list = []  # arrays of sentence indices where a title line starts a document
        self.tok_starts: list = []
        self.sentences = 0
        self.tokens = 0
        self.lines = 0
        self.titles = 0

    def add(self, kinds, per_line, lens) -> None:
        np = self.np
        owner = np.repeat(np.arange(len(kinds)), per_line)
        line_tokens = np.bincount(owner, weights=lens, minlength=len(kinds)).astype(np.int64)
        sent_before = self.sentences + np.cumsum(per_line, dtype=np.int64) - per_line
        tok_before = self.tokens + np.cumsum(line_tokens) - line_tokens
        title = kinds == ARTICLE
        self.sent_starts.append(sent_before[title])
        self.tok_starts.append(tok_before[title])
        self.sentences += int(per_line.sum())
        self.tokens += int(line_tokens.sum())
        self.lines += len(kinds)
        self.titles += int(title.sum())

    def spans(self):
        """(first sentence, sentence count, first token) of each document with a sentence."""
        np = self.np
        sent = np.concatenate([[0], *self.sent_starts, [self.sentences]]).astype(np.int64)
        tok = np.concatenate([[0], *self.tok_starts, [self.tokens]]).astype(np.int64)
        count = np.diff(sent)
        keep = count > 0  # a title with no text before the next one, or text that tokenised to nothing
        return sent[:-1][keep], count[keep], tok[:-1][keep]


def build_pairs_file(
    lines,
    text_column: str,
    tok,
    out_path: Path,
    work: Path,
    settings: PairSettings,
    num_proc: int = 0,
    finish: Callable[[dict], dict] | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the NSP pairs of ``lines`` (a ``datasets.Dataset``) to the Arrow stream file ``out_path``.

    Columns ``input_ids`` (int32), ``token_type_ids`` (int8), ``next_sentence_label`` (int64),
    plus what ``finish`` returns for each block of columns (numpy arrays: ``offsets`` of the
    rows, and ``input_ids`` values). ``work`` holds the intermediate files (the caller removes
    it). ``num_proc`` 0 = every available core. Returns the number of pairs.
    """
    import numpy as np
    import pyarrow as pa

    work.mkdir(parents=True, exist_ok=True)
    tokens_path, sents_path = work / "tokens.i32", work / "sentences.i32"
    procs = resolve_num_proc(num_proc)
    report = progress or (lambda *a: None)
    docs = _Documents()
    t0 = last = time.monotonic()
    pool = _Pool(procs, (tok, str(tokens_path), tok.cls_token_id, tok.sep_token_id))
    ok = False
    try:
        with open(tokens_path, "wb") as tok_fh, open(sents_path, "wb") as sent_fh:
            for kinds, per_line, lens, tokens in pool.ordered(
                _tokenise_block, _line_blocks(lines, text_column, BLOCK_LINES)
            ):
                tokens.tofile(tok_fh)
                lens.tofile(sent_fh)
                docs.add(kinds, per_line, lens)
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    report("tokenise", docs.lines, len(lines), docs.tokens, last - t0)
        report("tokenise", docs.lines, len(lines), docs.tokens, time.monotonic() - t0)

        first, count, tok0 = docs.spans()
        n_docs = len(first)
        sent_lens = np.memmap(sents_path, np.int32, "r") if docs.sentences else np.zeros(0, np.int32)

        def doc(d: int) -> tuple[int, list[int]]:
            return int(tok0[d]), sent_lens[first[d] : first[d] + count[d]].tolist()

        planned = {"docs": 0}

        def doc_counter(d: int) -> tuple[int, list[int]]:
            planned["docs"] = max(planned["docs"], d + 1)
            return doc(d)

        def blocks() -> Iterator:
            buf: list[tuple] = []
            for span in plan_pairs(
                n_docs, doc_counter, settings.max_seq_length, settings.short_seq_prob, settings.seed, settings.limit
            ):
                buf.append(span)
                if len(buf) == PAIR_BLOCK:
                    yield np.array(buf, np.int64)
                    buf = []
            if buf:
                yield np.array(buf, np.int64)

        schema = None
        n_pairs, done_tokens, t1, last = 0, 0, time.monotonic(), 0.0
        with pa.OSFile(str(out_path), "wb") as sink:
            writer = None
            for offsets, ids, types, labels in pool.ordered(_assemble_block, blocks()):
                cols = {"offsets": offsets, "input_ids": ids, "token_type_ids": types, "next_sentence_label": labels}
                extra = finish(cols) if finish else {}
                batch = _record_batch(cols, extra)
                if writer is None:
                    schema = batch.schema
                    writer = pa.ipc.new_stream(sink, schema)
                writer.write_batch(batch)
                n_pairs += len(labels)
                done_tokens += len(ids)
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    report("pair", planned["docs"], n_docs, done_tokens, last - t1)
            if writer is None:  # no pairs: an empty file with the columns' types
                writer = pa.ipc.new_stream(sink, _empty_schema(finish))
            writer.close()
        report("pair", n_docs if not settings.limit else planned["docs"], n_docs, done_tokens, time.monotonic() - t1)
        ok = True
    finally:
        pool.close(ok)
    return n_pairs


def _list_array(offsets, values):
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(offsets.astype("int32")), pa.array(values))


def _record_batch(cols: dict, extra: dict):
    import pyarrow as pa

    off = cols["offsets"]
    arrays = {
        "input_ids": _list_array(off, cols["input_ids"]),
        "token_type_ids": _list_array(off, cols["token_type_ids"]),
        "next_sentence_label": pa.array(cols["next_sentence_label"]),
    }
    for name, values in extra.items():
        arrays[name] = _list_array(off, values)
    return pa.RecordBatch.from_pydict(arrays)


def _empty_schema(finish) -> Any:
    import pyarrow as pa

    fields = [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("token_type_ids", pa.list_(pa.int8())),
        pa.field("next_sentence_label", pa.int64()),
    ]
    if finish is not None:
        fields += [pa.field(n, pa.list_(pa.int32())) for n in getattr(finish, "columns", ())]
    return pa.schema(fields)
