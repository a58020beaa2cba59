"""BLEU / ROUGE / METEOR over answer strings: hand-worked values, cross-checks, no network."""

import math
import random
import socket

import pytest

from engine.metrics.text import (
    VARIANTS,
    answer_text_metrics,
    bleu,
    meteor,
    meteor_variant,
    rouge,
    tokenize_13a,
    wordnet_reader,
)


@pytest.fixture
def offline(monkeypatch):
    """Fail loudly on any network access, nltk download or nltk data lookup other than an
    installed WordNet (read from disk, looked up once by ``wordnet_reader``)."""
    import nltk
    import nltk.data

    wordnet_reader()  # its one lookup, before the guard

    def refuse(*args, **kwargs):
        raise AssertionError("network or nltk data access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(nltk, "download", refuse)
    if wordnet_reader() is None:
        monkeypatch.setattr(nltk.data, "find", refuse)
        monkeypatch.setattr(nltk.data, "load", refuse)


# ---------------------------------------------------------------- 13a tokenizer
@pytest.mark.parametrize(
    "text,tokens",
    [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("It costs $3.50, or 3,000 yen.", ["It", "costs", "$", "3.50", ",", "or", "3,000", "yen", "."]),
        ("1990-2000 and well-known", ["1990", "-", "2000", "and", "well-known"]),
        ("(approx.) &amp; &quot;x&quot;", ["(", "approx", ".", ")", "&", '"', "x", '"']),
        ("king's  Army\n", ["king's", "Army"]),
        ("", []),
    ],
)
def test_tokenize_13a(text, tokens):
    assert tokenize_13a(text) == tokens


# ---------------------------------------------------------------- BLEU
def test_bleu_perfect_match():
    r = bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])
    assert r == {
        "bleu": 1.0,
        "precisions": [1.0] * 4,
        "brevity_penalty": 1.0,
        "length_ratio": 1.0,
        "translation_length": 6,
        "reference_length": 6,
    }


def test_bleu_partial_by_hand_with_shortest_reference():
    # hyp (5 tokens) vs refs of 6 and 8 tokens: reference_length is the SHORTEST, 6.
    # 1-grams 5/5; 2-grams: "on mat" unmatched -> 3/4; 3-grams 2/3; 4-grams 1/2.
    r = bleu(["the cat sat on mat"], [["the cat sat on the mat", "a cat sat on the mat , ok"]])
    assert r["precisions"] == pytest.approx([1.0, 0.75, 2 / 3, 0.5])
    assert (r["translation_length"], r["reference_length"]) == (5, 6)
    assert r["brevity_penalty"] == pytest.approx(math.exp(1 - 6 / 5))
    assert r["bleu"] == pytest.approx((1.0 * 0.75 * 2 / 3 * 0.5) ** 0.25 * math.exp(-0.2))


def test_bleu_brevity_penalty_and_zero_precision():
    r = bleu(["the cat"], ["the cat sat on the mat"], max_order=2)  # bare string reference
    assert r["precisions"] == [1.0, 1.0]
    assert r["length_ratio"] == pytest.approx(2 / 6)
    assert r["brevity_penalty"] == pytest.approx(math.exp(1 - 3))
    assert r["bleu"] == pytest.approx(math.exp(-2))
    # no 3-gram / 4-gram at all -> precision 0 -> BLEU 0 without smoothing
    r = bleu(["the cat"], [["the cat"]])
    assert r["precisions"] == [1.0, 1.0, 0.0, 0.0] and r["bleu"] == 0.0
    # Lin & Och smoothing: (m + 1) / (p + 1)
    r = bleu(["the cat"], [["the cat"]], smooth=True)
    assert r["precisions"] == pytest.approx([1.0, 1.0, 1.0, 1.0])
    assert r["bleu"] == pytest.approx(1.0)


def test_bleu_longer_translation_and_clipping():
    # "the the the" vs "the cat": unigram matches clipped to 1 of 3.
    r = bleu(["the the the"], [["the cat"]], max_order=1)
    assert r["precisions"] == [pytest.approx(1 / 3)]
    assert r["brevity_penalty"] == 1.0 and r["length_ratio"] == 1.5


def test_bleu_empty_inputs_are_defined():
    for r in (bleu([], []), bleu([""], [[""]]), bleu([""], [["a b"]])):
        assert r["bleu"] == 0.0 and r["brevity_penalty"] == 0.0
    assert bleu([], [])["length_ratio"] == 0.0
    r = bleu(["a b"], [[""]])
    assert r["bleu"] == 0.0 and r["length_ratio"] == math.inf and r["brevity_penalty"] == 1.0
    with pytest.raises(ValueError):
        bleu(["a"], [])


def test_bleu_matches_nltk_corpus_bleu_with_single_references():
    # With one reference per segment, "closest" (nltk) and "shortest" (nmt) lengths agree.
    from nltk.translate.bleu_score import corpus_bleu

    rng = random.Random(0)
    vocab = "a b c d e f".split()
    for _ in range(20):
        refs, hyps = [], []
        for _ in range(rng.randint(1, 8)):
            ref = [rng.choice(vocab) for _ in range(rng.randint(4, 12))]
            hyp = ref[:]
            for _ in range(rng.randint(0, 3)):
                hyp[rng.randrange(len(hyp))] = rng.choice(vocab)
            hyp = hyp[: rng.randint(4, len(hyp))]
            refs.append(ref)
            hyps.append(hyp)
        ours = bleu([" ".join(h) for h in hyps], [[" ".join(r)] for r in refs])
        if min(ours["precisions"]) == 0:
            continue  # nltk returns ~0 with a warning there
        assert ours["bleu"] == pytest.approx(corpus_bleu([[r] for r in refs], hyps), rel=1e-9)


# ---------------------------------------------------------------- ROUGE
def test_rouge_by_hand_max_over_references(offline):
    r = rouge(["the cat sat"], [["a cat sat", "the cat sat on"]])
    assert set(r) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    # vs ref 2: unigrams P 1, R 3/4 -> 6/7 (ref 1 gives 2/3); bigrams P 1, R 2/3 -> 0.8
    assert r["rouge1"] == pytest.approx(6 / 7)
    assert r["rouge2"] == pytest.approx(0.8)
    assert r["rougeL"] == pytest.approx(6 / 7)
    assert r["rougeLsum"] == pytest.approx(6 / 7)


def test_rouge_is_a_deterministic_plain_mean(offline):
    from rouge_score import rouge_scorer

    preds = ["Denver Broncos", "the river", "", "in 1905"]
    refs = [["Denver Broncos"], ["Thames river"], ["Paris"], ["1905"]]
    first, second = rouge(preds, refs), rouge(preds, refs)
    assert first == second
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    expected = sum(scorer.score(r[0], p)["rouge1"].fmeasure for p, r in zip(preds, refs)) / 4
    assert first["rouge1"] == pytest.approx(expected)
    assert rouge([], []) == dict.fromkeys(first, 0.0)


# ---------------------------------------------------------------- METEOR
def test_meteor_perfect_unrelated_stem_and_no_synonyms(offline):
    n = 6
    perfect = meteor(["the cat sat on the mat"], [["the cat sat on the mat"]], synonyms=False)["meteor"]
    assert perfect == pytest.approx(1 - 0.5 * (1 / n) ** 3)  # one chunk: tiny fragmentation penalty
    assert perfect > 0.99
    assert meteor(["green ideas"], [["the cat sat"]], synonyms=False)["meteor"] == 0.0
    assert meteor([""], [["the cat"]], synonyms=False)["meteor"] == 0.0
    # Porter stems match ("cats" ~ "cat"); without WordNet synonyms do not ("big" !~ "large").
    assert meteor(["cats"], [["cat"]], synonyms=False)["meteor"] == pytest.approx(1 - 0.5)
    assert meteor(["big"], [["large"]], synonyms=False)["meteor"] == 0.0
    # max over references
    two = meteor(["the cat"], [["dog", "the cat"]], synonyms=False)["meteor"]
    assert two == meteor(["the cat"], [["the cat"]], synonyms=False)["meteor"]


def test_meteor_credits_a_wordnet_synonym():
    """With WordNet installed (CI installs Debian's copy: .ci/run), a synonym counts."""
    if wordnet_reader() is None:
        pytest.skip(
            "no WordNet database for nltk (apt-get install -y wordnet-base wordnet-sense-index; "
            "python scripts/install_wordnet.py /usr/share/nltk_data)"
        )
    # "car" and "auto" share the synset car.n.01: a full match, one chunk. (nltk matches
    # synonyms against the Porter stems left after the stem stage, as evaluate's METEOR does,
    # so big/large does not match: "large" is left as "larg".)
    assert meteor(["car"], [["auto"]])["meteor"] == pytest.approx(1 - 0.5)
    assert meteor(["car"], [["auto"]], synonyms=False)["meteor"] == 0.0
    n = 4  # all four words matched in one chunk
    assert meteor(["the car was red"], [["the auto was red"]])["meteor"] == pytest.approx(1 - 0.5 * (1 / n) ** 3)
    assert "WordNet 3.0 synonyms" in meteor_variant()


# ---------------------------------------------------------------- SQuAD answers
def test_answer_text_metrics_uses_answerable_questions_only(offline):
    refs = {"a": ["Denver Broncos", "Broncos"], "b": ["Paris", ""], "c": [], "d": [""]}
    preds = {"a": "Denver Broncos", "b": "", "c": "something", "d": "x"}
    r = answer_text_metrics(preds, refs)
    assert r["n_answerable"] == 2
    assert r["rouge1"] == pytest.approx(0.5)  # 1.0 for a, 0.0 for the abstained b
    assert r["meteor"] == pytest.approx((1 - 0.5 * (1 / 2) ** 3) / 2)
    assert r["bleu"] == 0.0  # no 3-/4-grams in two-word answers: BLEU-4 is 0 (evaluate too)
    assert r["variants"] == dict(VARIANTS, meteor=meteor_variant(), sacrebleu=r["variants"]["sacrebleu"])
    assert r["sacrebleu_signature"] in r["variants"]["sacrebleu"]
    assert r["sacrebleu_signature"].startswith("nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert set(r) == {
        "bleu",
        "sacrebleu",
        "sacrebleu_signature",
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "meteor",
        "n_answerable",
        "variants",
    }
    empty = answer_text_metrics({"c": ""}, {"c": []})
    assert empty["n_answerable"] == 0 and empty["bleu"] == empty["meteor"] == empty["rouge1"] == 0.0
    with pytest.raises(ValueError, match="no prediction"):
        answer_text_metrics({}, {"a": ["x"]})
