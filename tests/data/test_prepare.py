"""Pretraining data preparation at scale (engine/data/prepare.py): same pairs for any number of
processes, the same pairs as the recipe on whole documents, flat memory as the corpus grows, progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from support.prep_corpus import WordTokenizer, write_lines

from engine.data import prepare
from engine.data.nsp import build_nsp_pairs, documents_from_lines, encode_pair
from engine.data.prepare import PairSettings, build_pairs_file
from engine.events import ProgressUpdated
from engine.store.follow import phase_text

SETTINGS = PairSettings(max_seq_length=64, short_seq_prob=0.1, seed=3)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks small enough that a few hundred documents make many tasks for each process."""
    monkeypatch.setattr(prepare, "BLOCK_LINES", 97)
    monkeypatch.setattr(prepare, "PAIR_BLOCK", 128)  # no masks here: any size will do


def _pairs(tmp_path: Path, name: str, lines, num_proc: int, settings=SETTINGS, progress=None) -> dict:
    out = tmp_path / f"{name}.arrow"
    n = build_pairs_file(lines, "text", WordTokenizer(), out, tmp_path / name, settings, num_proc, progress=progress)
    ds = datasets.Dataset.from_file(str(out))
    assert len(ds) == n
    return ds.to_dict()


def test_pairs_identical_for_one_and_two_processes_and_equal_to_the_recipe(tmp_path, small_blocks):
    lines = write_lines(tmp_path / "lines.arrow", 150)
    one = _pairs(tmp_path, "one", lines, 1)
    two = _pairs(tmp_path, "two", lines, 2)
    assert len(one["input_ids"]) > 3 * prepare.PAIR_BLOCK  # several blocks of pairs, many of lines
    assert one == two
    # The recipe on whole tokenised documents (what the engine did in one process, in lists) gives
    # the same pairs: the streamed stages change where the work happens, not what it makes.
    tok = WordTokenizer()
    docs = [[ids for ids in tok(d)["input_ids"] if ids] for d in documents_from_lines(lines["text"])]
    ref = build_nsp_pairs([d for d in docs if d], SETTINGS.max_seq_length, SETTINGS.short_seq_prob, SETTINGS.seed)
    encoded = [encode_pair(a, b, tok.cls_token_id, tok.sep_token_id) for a, b, _ in ref]
    assert one["input_ids"] == [ids for ids, _ in encoded]
    assert one["token_type_ids"] == [types for _, types in encoded]
    assert one["next_sentence_label"] == [int(r) for _, _, r in ref]


def test_limit_keeps_the_first_pairs_and_progress_reports_lines_and_documents(tmp_path, small_blocks):
    lines = write_lines(tmp_path / "lines.arrow", 60)
    seen: list[tuple] = []
    full = _pairs(tmp_path, "full", lines, 1, progress=lambda *a: seen.append(a))
    cut = _pairs(tmp_path, "cut", lines, 2, PairSettings(64, 0.1, 3, limit=100))
    assert cut["input_ids"] == full["input_ids"][:100]
    stages = {s[0]: s for s in seen}  # the last report of each stage
    assert stages["tokenise"][1:3] == (len(lines), len(lines))
    assert stages["pair"][1] == stages["pair"][2] > 10  # every document paired
    assert stages["pair"][3] == sum(map(len, full["input_ids"]))  # tokens written
    text = phase_text(ProgressUpdated("tokenise train", 50, 200, unit="lines", tokens_per_s=123_456.0, eta_s=75.0))
    assert text == "tokenise train 50/200 (25%) lines · 123.5k tok/s · ETA 1m15s"


def test_peak_memory_flat_as_the_corpus_grows(tmp_path):
    """Preparing 8x more text (about 0.13 M vs 1 M tokens) raises the peak RSS by little.

    Held as Python lists (as before), the larger corpus cost about 60 bytes a token: tens of MB more.
    The corpus is written here; a fresh process builds its pairs and reports how far its RSS rose
    above where it stood before the build (the peak is reset there: imports are not measured).
    """
    script = Path(__file__).resolve().parents[1] / "support" / "prep_corpus.py"
    peaks = {}
    for n_docs in (300, 2400):
        write_lines(tmp_path / f"lines{n_docs}.arrow", n_docs)
        out = subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"lines{n_docs}.arrow"), "1", str(tmp_path / str(n_docs))],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        peaks[n_docs] = (res["rss_peak_mb"] - res["rss_before_mb"], res["tokens"])
    (small, small_tokens), (big, big_tokens) = peaks[300], peaks[2400]
    assert big_tokens > 7 * small_tokens
    assert big - small < 8, peaks  # MB (measured: about 3 here, 15 with the tokens held as Python ints)
