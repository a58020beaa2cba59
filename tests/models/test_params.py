"""Reference parameter counts (engine-spec) and the grouped/diff tables."""

import subprocess
import sys

import pytest

from engine.models.params import diff_table, grouped_table, rows_for
from engine.models.presets import preset_config

REFERENCE = {
    "base": 109_482_240,
    "pretraining": 110_106_428,
    "mlm": 109_514_298,
    "classification": 109_483_778,
    "qa": 108_893_186,
}


@pytest.fixture(scope="module")
def bert_base_rows():
    config = preset_config("bert-base")
    return {h: rows_for(config, h) for h in REFERENCE}


@pytest.mark.parametrize("head", list(REFERENCE))
def test_reference_counts(bert_base_rows, head):
    assert sum(r.count for r in bert_base_rows[head]) == REFERENCE[head]


def test_base_breakdown(bert_base_rows):
    rows = bert_base_rows["base"]
    emb = sum(r.count for r in rows if r.name.startswith("embeddings."))
    enc = sum(r.count for r in rows if r.name.startswith("encoder."))
    pool = sum(r.count for r in rows if r.name.startswith("pooler."))
    word = next(r.count for r in rows if r.name == "embeddings.word_embeddings.weight")
    assert (emb, enc, pool, word) == (23_837_184, 85_054_464, 590_592, 23_440_896)


def test_grouped_view_shows_layer0_times_12(bert_base_rows):
    t = grouped_table(bert_base_rows["base"], "base")
    names = t.column("module")
    assert not any(".layer.1." in n for n in names)
    repeats = {r for r, n in zip(t.column("repeat"), names) if ".layer.0." in n}
    assert repeats == {"x12"}
    assert t.rows[-1][t.columns.index("subtotal")] == REFERENCE["base"]


def test_diff_classification(bert_base_rows):
    t = diff_table(bert_base_rows["base"], bert_base_rows["classification"], "base", "classification")
    body = {r[0]: r for r in t.rows}
    assert body["classifier"][1:] == ("added", 0, 1538, 1538)
    assert body["TOTAL"][-1] == 1538
    assert set(body) == {"classifier", "TOTAL"}


def test_diff_qa(bert_base_rows):
    t = diff_table(bert_base_rows["base"], bert_base_rows["qa"], "base", "qa")
    body = {r[0]: r for r in t.rows}
    assert body["pooler"][1:] == ("removed", 590_592, 0, -590_592)
    assert body["qa_outputs"][1:] == ("added", 0, 1538, 1538)
    assert body["TOTAL"][-1] == REFERENCE["qa"] - REFERENCE["base"]


def test_diff_pretraining_to_classification(bert_base_rows):
    t = diff_table(bert_base_rows["pretraining"], bert_base_rows["classification"], "pretraining", "classification")
    body = {r[0]: r for r in t.rows}
    assert body["cls.predictions"][-1] == -622_650
    assert body["cls.seq_relationship"][-1] == -1538
    assert body["classifier"][-1] == 1538


def test_changed_module_detected():
    small = rows_for(preset_config("bert-micro", vocab_size=1000), "base")
    big = rows_for(preset_config("bert-micro", vocab_size=2000), "base")
    t = diff_table(small, big, "v1000", "v2000")
    body = {r[0]: r for r in t.rows}
    assert body["embeddings.word_embeddings"][1] == "changed"
    assert body["embeddings.word_embeddings"][-1] == 1000 * 64


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--head", "base"], "109,482,240"),
        (["--head", "pretraining"], "110,106,428"),
        (["--head", "classification", "--diff-against", "base"], "| classifier | added | 0 | 1,538 | 1,538 |"),
        (["--head", "qa", "--diff-against", "base"], "| pooler | removed | 590,592 | 0 | -590,592 |"),
    ],
)
def test_params_cli(args, expected):
    out = subprocess.run(
        [sys.executable, "-m", "tui.entry", "params", "bert-base", *args], capture_output=True, text=True, check=True
    ).stdout
    assert expected in out


def test_params_cli_csv_parses():
    from engine.tables import Table

    out = subprocess.run(
        [sys.executable, "-m", "tui.entry", "params", "bert-base", "--head", "qa", "--format", "csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, rows = Table.parse_csv(out)
    assert header[0] == "module"
    # tidy: no TOTAL row, so the column sums to the total once; repeats are integers
    assert all(r[0] != "TOTAL" for r in rows)
    assert sum(r[header.index("subtotal")] for r in rows) == REFERENCE["qa"]
    assert {r[header.index("repeat")] for r in rows} == {1, 12}
