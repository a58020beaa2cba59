"""SQuAD v2 scoring: hand-worked cases and a cross-check against the official algorithm.

``official_eval`` below is the official ``evaluate-v2.0.py`` re-typed straight from the
script (on the SQuAD JSON layout), without its printing / plotting; evaluate's squad_v2
module is a copy of it but cannot be loaded offline.
"""

import collections
import json
import os
import random
import re
import string
import subprocess
import sys

import pytest

from engine.metrics.squad_v2 import (
    SQUAD_V2_KEYS,
    compute_exact,
    compute_f1,
    normalize_answer,
    squad_v2_score,
)
from support.squad_official import o_exact, o_f1, o_normalize, official_eval

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- the official script










def _as_dataset(references):
    qas = [{"id": q, "answers": [{"text": t} for t in golds]} for q, golds in references.items()]
    return [{"paragraphs": [{"qas": qas}]}]


# ---------------------------------------------------------------- hand-worked cases
def test_normalize_answer():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear & the fig.") == "apple pear fig"
    assert normalize_answer("theatre anthem") == "theatre anthem"  # articles only as words
    assert normalize_answer("A") == ""
    assert normalize_answer("\tU.S.\n  Army ") == "us army"
    assert normalize_answer("") == ""


def test_exact_and_f1_by_hand():
    assert compute_exact("The Broncos", "broncos.") == 1
    assert compute_exact("Broncos", "Denver Broncos") == 0
    # gold {denver, broncos}, pred {broncos}: P = 1, R = 1/2, F1 = 2/3.
    assert compute_f1("Denver Broncos", "the Broncos") == pytest.approx(2 / 3)
    # repeated tokens count as a bag: gold {a1 a1 b}, pred {a1 b b}: common 2, P=R=2/3.
    assert compute_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert compute_f1("", "") == 1.0
    assert compute_f1("", "something") == 0.0
    assert compute_f1("the", "") == 1.0  # both empty after normalisation
    assert compute_f1("cat", "dog") == 0.0


def test_multiple_golds_take_the_max():
    refs = {"q": ["Denver Broncos", "Broncos", "the Denver team"]}
    r = squad_v2_score({"q": "Denver"}, refs, {"q": 0.0})
    # exact 0; F1 = max(2/3, 0, 2/3 (gold {denver, team}))
    assert r["exact"] == 0.0
    assert r["f1"] == pytest.approx(100 * 2 / 3)
    r = squad_v2_score({"q": "broncos"}, refs, {"q": 0.0})
    assert r["exact"] == 100.0 and r["f1"] == 100.0


def test_empty_gold_after_normalisation_is_dropped():
    # "The" normalises to "": dropped; "Broncos" remains the only gold.
    refs = {"q": ["The", "Broncos"]}
    assert squad_v2_score({"q": "Broncos"}, refs, {"q": 0.0})["exact"] == 100.0
    # only empty-after-normalisation golds: gold becomes [""], yet the question stays answerable
    refs = {"q": ["the", "."]}
    r = squad_v2_score({"q": ""}, refs, {"q": 0.0})
    assert r["exact"] == 100.0 and r["HasAns_total"] == 1 and r["NoAns_total"] == 0


def test_threshold_blanks_predictions():
    refs = {"a": ["Paris"], "b": [], "c": ["Rome"]}
    preds = {"a": "Paris", "b": "London", "c": "Rome"}
    na = {"a": 0.2, "b": 0.9, "c": 0.6}
    r = squad_v2_score(preds, refs, na, na_prob_thresh=1.0)  # nothing blanked
    assert (r["exact"], r["HasAns_exact"], r["NoAns_exact"]) == (pytest.approx(200 / 3), 100.0, 0.0)
    r = squad_v2_score(preds, refs, na, na_prob_thresh=0.5)  # b and c blanked
    assert r["HasAns_exact"] == 50.0 and r["NoAns_exact"] == 100.0
    assert r["exact"] == pytest.approx(200 / 3)
    r = squad_v2_score(preds, refs, na, na_prob_thresh=0.9)  # strict ">": 0.9 is not blanked
    assert r["NoAns_exact"] == 0.0


def test_best_threshold_search_by_hand():
    refs = {"a": ["Paris"], "b": [], "c": ["Rome"], "d": []}
    preds = {"a": "Paris", "b": "London", "c": "Rome", "d": "Oslo"}
    na = {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.7}
    # start 2 (no-answer questions); a +1 -> 3 (best, 0.1); b -1 -> 2; c +1 -> 3 (not >); d -1.
    r = squad_v2_score(preds, refs, na)
    assert r["best_exact"] == 75.0 and r["best_exact_thresh"] == 0.1
    assert r["best_f1"] == 75.0 and r["best_f1_thresh"] == 0.1
    # the reported threshold reproduces the best score
    assert squad_v2_score(preds, refs, na, na_prob_thresh=0.1)["exact"] == 75.0


def test_best_threshold_with_all_na_scores_tied():
    # All na_probs 0.0 (what HF run_qa passes): the walk follows input order, the best prefix
    # {a} gives 3/4 at "threshold" 0.0, but threshold 0.0 blanks nothing (-> 2/4): the official
    # order-dependent, unreachable best_* is reproduced on purpose.
    refs = {"a": ["Paris"], "b": [], "c": ["Rome"], "d": []}
    preds = {"a": "Paris", "b": "London", "c": "Lyon", "d": "Oslo"}
    na = dict.fromkeys(refs, 0.0)
    r = squad_v2_score(preds, refs, na)
    assert (r["best_exact"], r["best_exact_thresh"]) == (75.0, 0.0)
    assert squad_v2_score(preds, refs, na, na_prob_thresh=0.0)["exact"] == 25.0
    # same data, another order of na_probs: another "best"
    na2 = {q: 0.0 for q in ["b", "d", "a", "c"]}
    assert squad_v2_score(preds, refs, na2)["best_exact"] == 50.0
    assert official_eval(_as_dataset(refs), preds, na2, 1.0)["best_exact"] == 50.0


def test_keys_and_empty_groups():
    r = squad_v2_score({"a": "x"}, {"a": ["x"]}, {"a": 0.0})
    assert tuple(r) == SQUAD_V2_KEYS
    assert (r["NoAns_total"], r["NoAns_exact"], r["NoAns_f1"]) == (0, 0.0, 0.0)
    r = squad_v2_score({"a": ""}, {"a": []}, {"a": 0.0})
    assert (r["HasAns_total"], r["HasAns_exact"], r["HasAns_f1"]) == (0, 0.0, 0.0)
    assert r["exact"] == 100.0
    r = squad_v2_score({}, {}, {})
    assert r["total"] == 0 and r["exact"] == 0.0 and r["best_f1"] == 0.0
    json.dumps(r)


def test_missing_inputs_raise_and_extra_predictions_are_ignored():
    with pytest.raises(ValueError, match="no prediction"):
        squad_v2_score({}, {"a": ["x"]}, {"a": 0.0})
    with pytest.raises(ValueError, match="no na_prob"):
        squad_v2_score({"a": "x"}, {"a": ["x"]}, {})
    r = squad_v2_score({"a": "x", "zz": "y"}, {"a": ["x"]}, {"a": 0.0, "zz": -5.0})
    assert r["total"] == 1 and r["best_exact"] == 100.0


# ---------------------------------------------------------------- cross-check
WORDS = [
    "the",
    "a",
    "an",
    "Denver",
    "Broncos",
    "Paris",
    "river",
    "1905",
    "U.S.",
    "king's",
    "blue",
    "Blue",
    "war",
    "of",
    "and",
    "x",
    "!",
    "—",
    "été",
]


def _random_case(rng, n):
    refs, preds, na = {}, {}, {}
    for i in range(n):
        qid = f"q{i}"
        phrase = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        refs[qid] = [] if rng.random() < 0.45 else [phrase() for _ in range(rng.randint(1, 3))]
        r = rng.random()
        if r < 0.25:
            preds[qid] = ""
        elif r < 0.5 and refs[qid]:
            preds[qid] = rng.choice(refs[qid]) + rng.choice(["", ".", " the"])
        else:
            preds[qid] = phrase()
        # few distinct values -> many ties, which must follow the official (stable) order
        na[qid] = rng.choice([-2.0, -0.5, 0.0, 0.25, 1.0, 3.5]) if rng.random() < 0.5 else rng.uniform(-3, 3)
    return refs, preds, na


@pytest.mark.parametrize("seed", range(6))
def test_matches_official_algorithm(seed):
    rng = random.Random(seed)
    refs, preds, na = _random_case(rng, 300)
    # shuffle the na_probs order independently of the references order
    items = list(na.items())
    rng.shuffle(items)
    na = dict(items)
    for thresh in (1.0, 0.0, -0.5):
        ours = squad_v2_score(preds, refs, na, na_prob_thresh=thresh)
        official = official_eval(_as_dataset(refs), preds, na, thresh)
        assert set(official) <= set(ours)
        for key, value in official.items():
            assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_functions_match_official_helpers():
    rng = random.Random(7)
    for _ in range(500):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 5)))
        b = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 5)))
        assert normalize_answer(a) == o_normalize(a)
        assert compute_exact(a, b) == o_exact(a, b)
        assert compute_f1(a, b) == pytest.approx(o_f1(a, b))


# ---------------------------------------------------------------- import hygiene
@pytest.mark.parametrize(
    "module",
    [
        "engine.metrics.squad_v2",
        "engine.metrics.qa_postprocess",
        "engine.metrics.text",
        "engine.metrics.classification",
    ],
)
def test_metrics_modules_import_no_torch_or_ui(module):
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in ('torch', 'textual', 'rich', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
