"""BLEU, ROUGE and METEOR over answer strings, offline and deterministic.

``evaluate.load("bleu" | "rouge" | "meteor")`` fetches its module script from the Hub (and
METEOR downloads WordNet), so the console computes the same numbers locally:

- ``bleu``: evaluate's ``bleu`` module = tensorflow/nmt ``compute_bleu`` over evaluate's
  ``tokenizer_13a`` (a copy of sacrebleu's 13a tokenizer that returns a token list). Corpus
  level, 0-1 scale, the SHORTEST reference length per segment, geometric mean 0 when any
  n-gram precision is 0 (no smoothing by default). sacrebleu would differ: it uses the
  closest reference length and a 0-100 scale. Empty corpus / all-empty strings: nmt divides
  by zero; here bleu is 0.0 and the length fields are defined in ``bleu``'s docstring.
- ``rouge``: ``rouge_score`` (the reference implementation evaluate wraps), rouge1/2/L/Lsum
  F-measure, no stemmer, max over references per example (``score_multi``), then the plain
  mean over examples: evaluate's default ``BootstrapAggregator`` resamples with an unseeded
  RNG, so its numbers change from run to run.
- ``meteor``: nltk ``meteor_score`` with evaluate's parameters (alpha 0.9, beta 3, gamma
  0.5), max over references, mean over examples, regex tokens instead of ``word_tokenize``
  (which needs downloaded punkt data). WITH WordNet synonyms whenever a WordNet database is
  installed for nltk (nltk's ``wordnet`` data, or Debian's wordnet-base + wordnet-sense-index
  put in place by ``scripts/install_wordnet.py``); otherwise with a stand-in that has no
  synonyms (exact and Porter-stem matches only), and the result says which.
- ``sacrebleu``: sacrebleu's corpus BLEU (0-100, closest reference length, 13a tokens,
  exponential smoothing), with its signature in the result (``sacrebleu_signature``).
  ``bleu`` stays the evaluate-style 0-1 number; both are labelled in ``variants``.

``answer_text_metrics`` applies all three to SQuAD answers. They are undefined for
unanswerable questions, so only answerable ones (at least one non-empty gold answer) count;
the result says how many and which variant was computed.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["tokenize_13a", "bleu", "sacre_bleu", "rouge", "meteor", "answer_text_metrics", "VARIANTS", "wordnet_reader"]

VARIANTS = {
    "bleu": "evaluate/nmt BLEU-4, 13a tokenizer, no smoothing, shortest reference length, 0-1",
    "rouge": "rouge_score F1, mean over answers, max over references, no stemmer, 0-1",
    "meteor": "nltk METEOR without WordNet synonyms (exact+stem), regex word/punctuation "
    "tokens, alpha 0.9 beta 3 gamma 0.5, max over references, 0-1",
}
METEOR_WORDNET = (
    "nltk METEOR with WordNet {version} synonyms (exact+stem+synonym), regex word/punctuation "
    "tokens, alpha 0.9 beta 3 gamma 0.5, max over references, 0-1"
)
SACREBLEU = "sacrebleu corpus BLEU, closest reference length, 0-100; signature {signature}"

# mteval-v13a rules, as in sacrebleu's TokenizerRegexp (language-dependent part).
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # split most punctuation
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash preceded by a digit
)


@lru_cache(maxsize=2**16)
def _tokenize_13a_cached(line: str) -> tuple[str, ...]:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return tuple(line.split())


def tokenize_13a(line: str) -> list[str]:
    """evaluate's ``Tokenizer13a``: sacrebleu 13a rules, returning the token list."""
    return list(_tokenize_13a_cached(line))


def _ngrams(tokens: Sequence[str], max_order: int) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for order in range(1, max_order + 1):
        for i in range(len(tokens) - order + 1):
            counts[tuple(tokens[i : i + order])] += 1
    return counts


def bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    max_order: int = 4,
    smooth: bool = False,
) -> dict:
    """Corpus BLEU with evaluate's semantics (keys as evaluate's ``bleu``; 0-1 scale).

    ``references[i]`` is the list of references of ``predictions[i]`` (a bare string is taken
    as a single reference). Where nmt divides by zero: an empty translation gives
    brevity_penalty 0.0; a zero total reference length gives length_ratio 0.0 (empty
    translation) or inf; bleu is then 0.0 (no n-gram can match).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    matches = [0] * max_order
    possible = [0] * max_order
    ref_len = trans_len = 0
    for pred, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else refs
        if not refs:
            raise ValueError("every prediction needs at least one reference")
        ref_toks = [_tokenize_13a_cached(r) for r in refs]
        trans = _tokenize_13a_cached(pred)
        ref_len += min(len(r) for r in ref_toks)
        trans_len += len(trans)
        merged: collections.Counter = collections.Counter()
        for r in ref_toks:
            merged |= _ngrams(r, max_order)  # max count of each n-gram over the references
        for ngram, count in (_ngrams(trans, max_order) & merged).items():
            matches[len(ngram) - 1] += count
        for order in range(1, max_order + 1):
            if len(trans) - order + 1 > 0:
                possible[order - 1] += len(trans) - order + 1

    if smooth:
        precisions = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible)]
    else:
        precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible)]
    if min(precisions) > 0:
        geo_mean = math.exp(sum((1.0 / max_order) * math.log(p) for p in precisions))
    else:
        geo_mean = 0.0

    if ref_len > 0:
        ratio = trans_len / ref_len
    else:
        ratio = math.inf if trans_len > 0 else 0.0
    if ratio > 1.0:
        bp = 1.0
    elif trans_len == 0:
        bp = 0.0  # the limit of exp(1 - 1/ratio) as ratio -> 0
    else:
        bp = math.exp(1 - 1.0 / ratio)
    return {
        "bleu": geo_mean * bp,
        "precisions": precisions,
        "brevity_penalty": bp,
        "length_ratio": ratio,
        "translation_length": trans_len,
        "reference_length": ref_len,
    }


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]], use_stemmer: bool = False) -> dict:
    """Mean rouge_score F-measure per type, max over each example's references (0-1)."""
    from rouge_score import rouge_scorer  # imports nltk: pay for it only when used

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        scores = scorer.score_multi(refs, pred)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    n = len(predictions)
    return {key: (total / n if n else 0.0) for key, total in totals.items()}


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: no synsets, so METEOR never loads WordNet."""

    def synsets(self, *args, **kwargs) -> list:
        return []


_WORDS = re.compile(r"\w+|[^\w\s]")


def meteor_tokens(text: str) -> list[str]:
    """Words and single punctuation marks (stands in for ``word_tokenize``, which needs punkt)."""
    return _WORDS.findall(text)


@lru_cache(maxsize=1)
def wordnet_reader():
    """nltk's WordNet reader when a WordNet database is installed and loads, else None."""
    try:
        import nltk
        from nltk.corpus import wordnet

        nltk.data.find("corpora/wordnet")
        wordnet.ensure_loaded()
        wordnet.synsets("film")  # reads index and data files: fails early on a broken install
        return wordnet
    except (LookupError, OSError, ValueError, ImportError):
        return None


def meteor_variant() -> str:
    wn = wordnet_reader()
    return METEOR_WORDNET.format(version=wn.get_version()) if wn is not None else VARIANTS["meteor"]


def meteor(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
    synonyms: bool | None = None,
) -> dict:
    """Mean nltk METEOR, max over each example's references.

    ``synonyms``: None = with WordNet synonyms when WordNet is installed; False = exact and
    stem matches only; True = WordNet required (LookupError without it).
    """
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score as nltk_meteor

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    wn = wordnet_reader() if synonyms is not False else None
    if synonyms and wn is None:
        raise LookupError(
            "METEOR with synonyms needs WordNet: apt-get install -y wordnet-base wordnet-sense-index "
            "&& python scripts/install_wordnet.py /usr/share/nltk_data"
        )
    stemmer, wordnet = PorterStemmer(), (wn if wn is not None else _NoSynonyms())
    scores = []
    for pred, refs in zip(predictions, references):
        refs = [refs] if isinstance(refs, str) else refs
        scores.append(
            nltk_meteor(
                [meteor_tokens(r) for r in refs],
                meteor_tokens(pred),
                stemmer=stemmer,
                wordnet=wordnet,
                alpha=alpha,
                beta=beta,
                gamma=gamma,
            )
        )
    return {"meteor": math.fsum(scores) / len(scores) if scores else 0.0}


def answer_text_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict:
    """BLEU, ROUGE and METEOR over the answerable questions, with a note of the variants.

    A question is answerable when it has a non-empty gold answer; its empty golds are dropped.
    A prediction of "" (the model abstained) scores as an empty string.
    """
    qids = [q for q in references if any(a for a in references[q])]
    missing = [q for q in qids if q not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[:3]}")
    preds = [predictions[q] for q in qids]
    refs = [[a for a in references[q] if a] for q in qids]
    out = {"bleu": bleu(preds, refs)["bleu"]}
    out.update(sacre_bleu(preds, refs))
    out.update(rouge(preds, refs))
    out.update(meteor(preds, refs))
    out["n_answerable"] = len(qids)
    out["variants"] = dict(
        VARIANTS, meteor=meteor_variant(), sacrebleu=SACREBLEU.format(signature=out["sacrebleu_signature"])
    )
    return out


def sacre_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """sacrebleu's corpus BLEU (0-100) and its signature; a variable number of references is fine."""
    from sacrebleu.metrics import BLEU

    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    width = max((len(r) for r in refs), default=1)
    # sacrebleu takes None for a missing reference in a stream (a variable number per sentence)
    streams: list[list[Any]] = [[r[i] if i < len(r) else None for r in refs] for i in range(width)]
    metric = BLEU()
    # an empty corpus scores 0.0; the call on one empty pair only fixes the signature's fields
    score = (
        metric.corpus_score(list(predictions), streams).score
        if predictions
        else 0.0 * metric.corpus_score([""], [[""]]).score
    )
    return {"sacrebleu": float(score), "sacrebleu_signature": str(metric.get_signature())}
