"""SQuAD v2 post-processing: hand-built features, equivalence with the loop version and
with an HF ``utils_qa``-shaped loop, consistency with the scorer, and speed."""

import math
import time

import numpy as np
import pytest

from engine.metrics.qa_postprocess import postprocess_qa, postprocess_qa_reference
from engine.metrics.squad_v2 import squad_v2_score

NEG = -10.0  # a logit low enough to never matter


# ---------------------------------------------------------------- hand-built features
def _words(context):
    """(start, end) character offsets of each whitespace word: one token per word."""
    out, pos = [], 0
    for w in context.split(" "):
        out.append((pos, pos + len(w)))
        pos += len(w) + 1
    return out


def _feature(example_index, context, window, seq=16, question_tokens=3):
    """[CLS] q q q [SEP] context words window[0]:window[1] [SEP] padding -> offsets."""
    offsets = [None] * (question_tokens + 2) + _words(context)[window[0] : window[1]]
    offsets += [None] * (seq - len(offsets))
    return {"example_index": example_index, "offset_mapping": offsets}


def _logits(seq, start=(), end=(), cls=(0.0, 0.0)):
    s, e = np.full(seq, NEG), np.full(seq, NEG)
    s[0], e[0] = cls
    for i, v in start:
        s[i] = v
    for i, v in end:
        e[i] = v
    return s, e


CONTEXT = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 Denver Broncos won w13"
FIRST = 5  # token index of the first context word in a feature (after [CLS] q q q [SEP])


def _run(examples, features, logits, **kw):
    start = np.stack([s for s, _ in logits])
    end = np.stack([e for _, e in logits])
    out = postprocess_qa(examples, features, start, end, **kw)
    assert out == postprocess_qa_reference(examples, features, start, end, **kw)
    return out


def test_answer_across_a_stride_boundary_is_found_in_the_second_feature():
    # Feature 0 sees words 0..9, feature 1 (stride 5) sees words 5..14. "Denver Broncos"
    # (words 10-11) is only inside feature 1's window.
    ex = [{"id": "q", "context": CONTEXT}]
    feats = [_feature(0, CONTEXT, (0, 10)), _feature(0, CONTEXT, (5, 15), seq=16)]
    f0 = _logits(16, start=[(FIRST + 9, 1.0)], end=[(FIRST + 9, 1.0)], cls=(0.5, 0.5))
    f1 = _logits(16, start=[(FIRST + 5, 4.0)], end=[(FIRST + 6, 3.0)], cls=(2.0, 1.5))
    preds, na, nbest = _run(ex, feats, [f0, f1])
    assert preds["q"] == "Denver Broncos"
    # null = min(0.5+0.5, 2.0+1.5) = 1.0; best span 7.0 -> na = 1 - 7
    assert na["q"] == pytest.approx(-6.0)
    # every other span costs a NEG logit except w9 in feature 0 (2.0); then the null (1.0)
    assert [e["text"] for e in nbest["q"][:3]] == ["Denver Broncos", "w9", ""]
    assert nbest["q"][0]["score"] == pytest.approx(7.0)
    assert sum(e["probability"] for e in nbest["q"]) == pytest.approx(1.0)
    null = [e for e in nbest["q"] if e["text"] == ""]
    assert len(null) == 1 and null[0]["score"] == pytest.approx(1.0)
    assert (null[0]["start_logit"], null[0]["end_logit"]) == (0.5, 0.5)


def test_same_span_in_two_overlapping_features_is_listed_twice():
    ex = [{"id": "q", "context": CONTEXT}]
    feats = [_feature(0, CONTEXT, (0, 10)), _feature(0, CONTEXT, (5, 15))]
    # word 7 is in both windows: token FIRST+7 in feature 0, FIRST+2 in feature 1
    f0 = _logits(16, start=[(FIRST + 7, 2.0)], end=[(FIRST + 7, 2.0)])
    f1 = _logits(16, start=[(FIRST + 2, 3.0)], end=[(FIRST + 2, 3.0)])
    preds, _, nbest = _run(ex, feats, [f0, f1], n_best_size=3)
    assert preds["q"] == "w7"
    assert [(e["text"], e["score"]) for e in nbest["q"][:2]] == [("w7", 6.0), ("w7", 4.0)]


def test_answer_outside_the_window_is_never_predicted():
    # The model points at question tokens (offsets None) in feature 0: no valid span there.
    ex = [{"id": "q", "context": CONTEXT}]
    feats = [_feature(0, CONTEXT, (0, 8))]
    f0 = _logits(16, start=[(1, 9.0), (FIRST + 2, 1.0)], end=[(2, 9.0), (FIRST + 3, 1.0)], cls=(0.0, 0.0))
    preds, na, nbest = _run(ex, feats, [f0])
    assert preds["q"] == "w2 w3"  # the best span among context tokens only
    assert na["q"] == pytest.approx(0.0 - 2.0)
    # with a window that does not hold any high-scoring token at all, the null wins
    f0 = _logits(16, start=[(1, 9.0)], end=[(2, 9.0)], cls=(1.0, 1.0))
    preds, na, nbest = _run(ex, feats, [f0], n_best_size=3)
    assert preds["q"] == "" and na["q"] == math.inf
    assert [e["text"] for e in nbest["q"]] == [""]  # only the null candidate
    assert nbest["q"][0]["probability"] == 1.0


def test_no_answer_chosen_by_threshold():
    ex = [{"id": "q", "context": CONTEXT}]
    feats = [_feature(0, CONTEXT, (0, 10))]
    f0 = _logits(16, start=[(FIRST + 1, 2.0)], end=[(FIRST + 1, 1.0)], cls=(2.5, 1.5))
    # null 4.0, best span 3.0: diff 1.0
    preds, na, _ = _run(ex, feats, [f0])
    assert preds["q"] == "" and na["q"] == pytest.approx(1.0)
    preds, _, _ = _run(ex, feats, [f0], null_score_diff_threshold=1.0)  # strict ">"
    assert preds["q"] == "w1"
    preds, na1, _ = _run(ex, feats, [f0], version_2_with_negative=False)
    assert preds["q"] == "w1" and na1 == {}


def test_span_rules_end_before_start_and_max_length():
    ex = [{"id": "q", "context": CONTEXT}]
    feats = [_feature(0, CONTEXT, (0, 10))]
    # best pair is end < start; next best is too long for max_answer_length=3
    f0 = _logits(
        16, start=[(FIRST + 6, 5.0), (FIRST + 0, 4.0), (FIRST + 4, 1.0)], end=[(FIRST + 2, 5.0), (FIRST + 5, 4.0)]
    )
    preds, _, _ = _run(ex, feats, [f0], max_answer_length=3)
    # candidates: (0,2) 9.0 len 3 ok -> "w0 w1 w2"
    assert preds["q"] == "w0 w1 w2"
    preds, _, _ = _run(ex, feats, [f0], max_answer_length=2)
    # (0,2) and (0,5) too long, (6,*) invalid, (4,5) len 2 -> 5.0
    assert preds["q"] == "w4 w5"


def test_example_id_mapping_unsorted_features_and_examples_without_features():
    ctx = "alpha beta gamma"
    ex = [{"id": "a", "context": ctx}, {"id": "b", "context": ctx}, {"id": "c", "context": ctx}]
    fb = _feature(0, ctx, (0, 3))
    fa = _feature(0, ctx, (0, 3))
    feats = [dict(fb, example_id="b"), dict(fa, example_id="a")]
    for f in feats:
        del f["example_index"]
    logits = [
        _logits(16, start=[(FIRST + 1, 3.0)], end=[(FIRST + 2, 3.0)]),
        _logits(16, start=[(FIRST + 0, 3.0)], end=[(FIRST + 0, 3.0)]),
    ]
    preds, na, nbest = _run(ex, feats, logits)
    assert list(preds) == ["a", "b", "c"]
    assert preds == {"a": "alpha", "b": "beta gamma", "c": ""}
    assert na["c"] == math.inf and nbest["c"] == []


def test_bad_shapes_raise():
    ex = [{"id": "q", "context": CONTEXT}]
    feats = [_feature(0, CONTEXT, (0, 10))]
    with pytest.raises(ValueError, match="n_features"):
        postprocess_qa(ex, feats, np.zeros((2, 16)), np.zeros((2, 16)))


# ---------------------------------------------------------------- random equivalence
def _random_data(n_examples, seed, seq=96, question_tokens=7, stride=24, integer=False):
    rng = np.random.default_rng(seed)
    capacity = seq - question_tokens - 3
    examples, features = [], []
    for e in range(n_examples):
        n_words = int(rng.integers(5, capacity * 2))  # ~half need 2+ windows
        context = " ".join(f"t{int(i)}" for i in rng.integers(0, 300, n_words))
        examples.append({"id": f"id{e}", "context": context})
        words, window = _words(context), 0
        while True:
            offs = [None] * (question_tokens + 2) + words[window : window + capacity]
            offs += [None] * (seq - len(offs) - int(rng.integers(0, 3)))  # some lists shorter
            features.append({"example_id": f"id{e}", "offset_mapping": offs})
            if window + capacity >= n_words:
                break
            window += stride
    order = rng.permutation(len(features))  # features need not be grouped by example
    features = [features[i] for i in order]
    start = rng.normal(size=(len(features), seq))
    end = rng.normal(size=(len(features), seq))
    if integer:  # many exact ties: both versions must break them the same way
        start, end = np.round(start * 2), np.round(end * 2)
    return examples, features, start, end


@pytest.mark.parametrize("seed,integer", [(0, False), (1, False), (2, True)])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"n_best_size": 5, "max_answer_length": 6},
        {"null_score_diff_threshold": -0.7},
        {"version_2_with_negative": False},
    ],
)
def test_vectorised_equals_reference(seed, integer, kw):
    examples, features, start, end = _random_data(250, seed, integer=integer)
    assert len(features) > 1.3 * len(examples)
    fast = postprocess_qa(examples, features, start.astype(np.float32), end.astype(np.float32), **kw)
    slow = postprocess_qa_reference(examples, features, start.astype(np.float32), end.astype(np.float32), **kw)
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]


def _hf_utils_qa(
    examples, features, all_start, all_end, n_best_size=20, max_answer_length=30, null_score_diff_threshold=0.0
):
    """HF ``utils_qa.postprocess_qa_predictions`` (version_2_with_negative=True), re-typed."""
    ex_index = {ex["id"]: i for i, ex in enumerate(examples)}
    per_ex = {}
    for i, f in enumerate(features):
        per_ex.setdefault(ex_index[f["example_id"]], []).append(i)
    preds, diffs, texts = {}, {}, {}
    for example_index, example in enumerate(examples):
        min_null, prelim = None, []
        for fi in per_ex[example_index]:
            s, e = all_start[fi], all_end[fi]
            om = features[fi]["offset_mapping"]
            null = s[0] + e[0]
            if min_null is None or min_null["score"] > null:
                min_null = {"offsets": (0, 0), "score": null, "start_logit": s[0], "end_logit": e[0]}
            for a in np.argsort(s)[-1 : -n_best_size - 1 : -1].tolist():
                for b in np.argsort(e)[-1 : -n_best_size - 1 : -1].tolist():
                    if a >= len(om) or b >= len(om) or om[a] is None or om[b] is None:
                        continue
                    if b < a or b - a + 1 > max_answer_length:
                        continue
                    prelim.append(
                        {"offsets": (om[a][0], om[b][1]), "score": s[a] + e[b], "start_logit": s[a], "end_logit": e[b]}
                    )
        prelim.append(min_null)
        null_score = min_null["score"]
        nbest = sorted(prelim, key=lambda x: x["score"], reverse=True)[:n_best_size]
        if not any(p["offsets"] == (0, 0) for p in nbest):
            nbest.append(min_null)
        for p in nbest:
            p["text"] = example["context"][p["offsets"][0] : p["offsets"][1]]
        i = 0
        while nbest[i]["text"] == "":
            i += 1
        best = nbest[i]
        diff = null_score - best["start_logit"] - best["end_logit"]
        diffs[example["id"]] = diff
        preds[example["id"]] = "" if diff > null_score_diff_threshold else best["text"]
        texts[example["id"]] = [p["text"] for p in nbest]
    return preds, diffs, texts


def test_matches_hf_utils_qa_on_random_logits():
    examples, features, start, end = _random_data(200, 5)
    # HF's loop predicts the literal "empty" when no span is valid: make sure one always is,
    # by lifting a context token's logits in every feature.
    for f, feat in enumerate(features):
        t = next(i for i, o in enumerate(feat["offset_mapping"]) if o is not None)
        start[f, t] += 6.0
        end[f, t] += 6.0
    for thresh in (0.0, 2.0):
        preds, na, nbest = postprocess_qa(examples, features, start, end, null_score_diff_threshold=thresh)
        hf_preds, hf_diff, hf_texts = _hf_utils_qa(examples, features, start, end, null_score_diff_threshold=thresh)
        assert preds == hf_preds
        for q in na:
            assert na[q] == pytest.approx(hf_diff[q], abs=1e-12)
            assert [e["text"] for e in nbest[q]] == hf_texts[q]


# ---------------------------------------------------------------- scoring consistency
def test_na_scores_are_consistent_with_the_scorer():
    examples, features, start, end = _random_data(300, 3)
    rng = np.random.default_rng(3)
    refs = {}
    for ex in examples:
        words = ex["context"].split()
        refs[ex["id"]] = [] if rng.random() < 0.5 else [words[int(rng.integers(0, len(words)))]]
    thresh = -0.5
    preds, na, _ = postprocess_qa(examples, features, start, end, null_score_diff_threshold=thresh)
    raw, na_raw, _ = postprocess_qa(examples, features, start, end, null_score_diff_threshold=math.inf)
    assert na == na_raw
    assert all(preds[q] == ("" if na[q] > thresh else raw[q]) for q in preds)
    # scoring the thresholded predictions == scoring the raw best spans at that threshold
    a = squad_v2_score(preds, refs, na, na_prob_thresh=thresh)
    b = squad_v2_score(raw, refs, na, na_prob_thresh=thresh)
    for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
        assert a[key] == pytest.approx(b[key])
    assert b["best_f1"] >= b["f1"]


# ---------------------------------------------------------------- speed (reduced scale)
def test_speed_at_reduced_scale():
    # 2,000 examples x ~1.1 features x seq 384: bench/squad_postprocess.py runs the full 12k.
    rng = np.random.default_rng(0)
    seq, examples, features = 384, [], []
    for e in range(2000):
        n_feat = 2 if rng.random() < 0.1 else 1
        context = " ".join(["word"] * 300)
        examples.append({"id": f"q{e}", "context": context})
        words = _words(context)
        for k in range(n_feat):
            offs = [None] * 17 + words[k * 128 : k * 128 + 300]
            features.append({"example_index": e, "offset_mapping": offs + [None] * (seq - len(offs))})
    start = rng.normal(size=(len(features), seq)).astype(np.float32)
    end = rng.normal(size=(len(features), seq)).astype(np.float32)
    t = time.perf_counter()
    preds, na, _ = postprocess_qa(examples, features, start, end)
    squad_v2_score(preds, {q: ["word"] for q in preds}, na, na_prob_thresh=0.0)
    elapsed = time.perf_counter() - t
    # ~0.4 s here on 2 cores; the bound only catches a fall back to per-pair Python loops.
    assert elapsed < 5.0, elapsed
