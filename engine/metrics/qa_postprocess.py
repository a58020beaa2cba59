"""Turn start/end logits of SQuAD features into answer texts, vectorised with numpy.

Semantics follow HF ``utils_qa.postprocess_qa_predictions`` (the post-processing behind
``run_qa.py``), computed with array operations over all features at once instead of a
Python double loop over 20 x 20 start/end pairs per feature. On 12k synthetic SQuAD-v2-dev
sized questions (2 CPU cores) this takes about 1.5-2 s against 3-7 s for the loop version
below, whose cost grows with the number of valid pairs (``bench/squad_postprocess.py``):

1. per feature, the ``n_best_size`` highest start logits and end logits over ALL tokens (the
   top-n is taken before masking, as HF does), then every start x end pair as one
   broadcast ``n x n`` score matrix ``start_logit + end_logit``;
2. a pair is dropped when either token is outside the context (its ``offset_mapping`` entry
   is None / shorter than 2 / past the end of the list), when end < start, or when it spans
   more than ``max_answer_length`` tokens;
3. per example, the null score is the MINIMUM over its features of
   ``start_logits[0] + end_logits[0]`` (the [CLS] position);
4. the best non-null span over all features of the example is the answer, unless
   ``null_score - best_span_score > null_score_diff_threshold`` (then ``""``).

The returned ``na_scores[qid]`` is exactly that ``null_score - best_span_score``: higher
means the model prefers "no answer" more, and
``squad_v2_score(predictions, refs, na_probs=na_scores, na_prob_thresh=threshold)`` agrees
with the predictions. For a meaningful ``best_f1`` threshold search, score the
UN-thresholded answers: ``postprocess_qa(..., null_score_diff_threshold=math.inf)``
returns the best span for every question, and its scores at ``na_prob_thresh=0.0`` equal
those of the default predictions.

Decisions where HF is quirky (documented, tested):

- spans whose text is empty (degenerate offsets) are dropped like out-of-context spans;
- an example without any valid span (or without features) predicts ``""`` with
  ``na_score = inf`` (HF predicts the literal text "empty");
- exact score ties are broken deterministically: higher logit first then lower token index
  when choosing the top-n, and (score desc, spans before null, feature, start, end) when
  ranking candidates; HF's order under ties depends on numpy's unstable argsort.
- ``version_2_with_negative=False``: no null candidate, and ``na_scores`` is empty.
- ``token_is_max_context`` is not supported (our features do not carry it).

``nbest[qid]`` lists the top ``n_best_size`` candidates over all features (a span seen by two
overlapping features appears twice, as in HF), plus the null candidate when it is not among
them; each entry has text, start_logit, end_logit, score and probability (softmax over the
listed entries). ``postprocess_qa_reference`` is the straightforward loop version with the
same contract, kept to test the vectorised one against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["postprocess_qa", "postprocess_qa_reference"]

Result = tuple[dict[str, str], dict[str, float], dict[str, list[dict]]]


def _prepare(examples, features, start_logits, end_logits, n_best_size):
    """Validate shapes; map each feature to its example index."""
    if n_best_size < 1:
        raise ValueError(f"n_best_size must be >= 1, got {n_best_size}")
    start = np.asarray(start_logits, dtype=np.float64)
    end = np.asarray(end_logits, dtype=np.float64)
    if start.ndim != 2 or start.shape != end.shape or start.shape[0] != len(features):
        raise ValueError(
            f"start/end logits must both be [n_features={len(features)}, seq]; got {start.shape} and {end.shape}"
        )
    id_to_index = {ex["id"]: i for i, ex in enumerate(examples)}
    ex_idx = np.empty(len(features), dtype=np.int64)
    for f, feat in enumerate(features):
        i = feat["example_index"] if "example_index" in feat else id_to_index[feat["example_id"]]
        ex_idx[f] = i
    return start, end, ex_idx


def _offset(om, i):
    """(start_char, end_char) of token i, or None when it is not a context token."""
    if i >= len(om):
        return None
    o = om[i]
    if o is None or len(o) < 2:
        return None
    return int(o[0]), int(o[1])


def _char_offsets(features, idx: np.ndarray, which: int) -> np.ndarray:
    """Start (which=0) or end (which=1) character of the tokens in idx, -1 outside the context.

    Only the 2n top tokens of each feature are looked up: converting whole offset lists
    (seq entries each, 5M for SQuAD dev) into arrays would cost more than everything else.
    """
    out: list[int] = []
    for feat, row in zip(features, idx.tolist()):
        om = feat["offset_mapping"]
        size = len(om)
        for i in row:
            o = om[i] if i < size else None
            out.append(o[which] if o is not None and len(o) > 1 else -1)
    return np.array(out, dtype=np.int64).reshape(idx.shape)


def _top_set(x: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest entries of each row, in no particular order.

    The same set as ``argsort(-x, kind="stable")[:, :k]`` (ties go to the lower index), at
    the cost of an argpartition: rows where a tie straddles the k-th place are redone with
    the stable sort. Ties at -inf (masked entries) do not matter and are not redone.
    """
    idx = np.argpartition(-x, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(x, idx, axis=1).min(axis=1, initial=np.inf)
    tied = np.isfinite(kth) & ((x >= kth[:, None]).sum(axis=1) > k)
    if tied.any():
        idx[tied] = np.argsort(-x[tied], axis=1, kind="stable")[:, :k]
    return idx


def _softmax_groups(scores: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Softmax within runs of equal ``group`` values (shared by both implementations, so
    their probabilities are bit-identical)."""
    if len(scores) == 0:
        return scores
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    counts = np.diff(np.r_[starts, len(scores)])
    exps = np.exp(scores - np.repeat(np.maximum.reduceat(scores, starts), counts))
    return exps / np.repeat(np.add.reduceat(exps, starts), counts)


def _decide(qid, best_text, best_score, null_score, thresh, v2, preds, na_scores):
    if not v2:
        preds[qid] = best_text if best_text is not None else ""
        return
    if best_text is None:  # no valid span: nothing to answer with
        preds[qid], na_scores[qid] = "", math.inf
        return
    diff = null_score - best_score
    na_scores[qid] = diff
    preds[qid] = "" if diff > thresh else best_text


def postprocess_qa(
    examples: Sequence[Mapping],
    features: Sequence[Mapping],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    version_2_with_negative: bool = True,
) -> Result:
    """Vectorised post-processing; returns (predictions, na_scores, nbest) keyed by example id.

    examples: dicts with "id" and "context" (a ``datasets`` split works too).
    features: dicts with "example_index" (position in ``examples``) or "example_id", and
        "offset_mapping": per token a (start_char, end_char) pair, or None for tokens that
        are not context (question, special tokens, padding). Any order, any number per example.
    start_logits, end_logits: [n_features, seq]; upcast to float64, so scores are float64.
    """
    start, end, ex_idx = _prepare(examples, features, start_logits, end_logits, n_best_size)
    ctx_len = np.array([len(ex["context"]) for ex in examples], dtype=np.int64)
    c_feat, c_score, cols = _span_candidates(features, start, end, ctx_len[ex_idx], n_best_size, max_answer_length)
    c_null = np.zeros(len(c_score), dtype=bool)
    if version_2_with_negative and len(start):
        c_feat, c_score, cols, c_null = _with_null_candidates(start, end, ex_idx, c_feat, c_score, cols, c_null)
    ranked = _rank(ex_idx[c_feat], c_feat, c_score, c_null, cols, len(examples), n_best_size)
    return _answers(examples, ranked, c_score, c_null, cols, null_score_diff_threshold, version_2_with_negative)


def _span_candidates(features, start, end, ctx_len, n_best_size: int, max_answer_length: int):
    """Each feature's ``n_best_size`` best valid spans: (feature index, score, columns) per candidate.

    ``ctx_len``: per feature, its example's context length in characters.
    """
    n_feat, seq = start.shape
    n = min(n_best_size, seq)
    # Top-n token indices per feature, sorted by token index so that the flattened n x n
    # grid below is in (start token, end token) order.
    si = np.sort(_top_set(start, n), axis=1)
    ei = np.sort(_top_set(end, n), axis=1)
    s_char = _char_offsets(features, si, 0)
    e_char = _char_offsets(features, ei, 1)

    # Broadcast n x n candidate matrix per feature, masked to valid spans.
    length = ei[:, None, :] - si[:, :, None] + 1
    span_end = np.minimum(e_char[:, None, :], ctx_len[:, None, None])
    valid = (
        (s_char[:, :, None] >= 0)
        & (e_char[:, None, :] >= 0)
        & (length >= 1)
        & (length <= max_answer_length)
        & (span_end > s_char[:, :, None])  # non-empty text
    )
    s_val = np.take_along_axis(start, si, axis=1)
    e_val = np.take_along_axis(end, ei, axis=1)
    score = np.where(valid, s_val[:, :, None] + e_val[:, None, :], -np.inf).reshape(n_feat, n * n)

    # Per feature, its n_best_size best candidates suffice: the example's n-best over all of
    # its features is drawn from them (ties resolved in grid order = (start, end) order).
    k = min(n_best_size, n * n)
    top = _top_set(score, k)
    c_score = np.take_along_axis(score, top, axis=1).ravel()
    keep = np.isfinite(c_score)
    c_feat = np.repeat(np.arange(n_feat), k)[keep]
    c_si, c_ei = (top // n).ravel()[keep], (top % n).ravel()[keep]
    cols = {
        "start_tok": si[c_feat, c_si],
        "end_tok": ei[c_feat, c_ei],
        "start_logit": s_val[c_feat, c_si],
        "end_logit": e_val[c_feat, c_ei],
        "a": s_char[c_feat, c_si],
        "b": e_char[c_feat, c_ei],
    }
    return c_feat, c_score[keep], cols


def _with_null_candidates(start, end, ex_idx, c_feat, c_score, cols, c_null):
    """Append one null candidate per example: the feature with the smallest [CLS] score.

    The first such feature on ties, as HF's strict comparison keeps it.
    """
    n_feat = len(start)
    null = start[:, 0] + end[:, 0]
    order = np.lexsort((np.arange(n_feat), null, ex_idx))
    first = np.r_[True, ex_idx[order][1:] != ex_idx[order][:-1]]
    nf = order[first]
    zeros = np.zeros(len(nf), dtype=np.int64)
    extra = {
        "start_tok": zeros,
        "end_tok": zeros,
        "start_logit": start[nf, 0],
        "end_logit": end[nf, 0],
        "a": zeros,
        "b": zeros,
    }
    cols = {key: np.concatenate([col, extra[key]]) for key, col in cols.items()}
    return (
        np.concatenate([c_feat, nf]),
        np.concatenate([c_score, null[nf]]),
        cols,
        np.concatenate([c_null, np.ones(len(nf), dtype=bool)]),
    )


def _rank(c_ex, c_feat, c_score, c_null, cols, n_ex: int, n_best_size: int) -> dict:
    """Rank candidates per example (score desc, spans before null, feature, start, end).

    Returns the selected candidates in rank order (top n_best plus the null), each example's
    slice of them (``bounds``), their probabilities, and per example its best span and null candidate.
    """
    order = np.lexsort((cols["end_tok"], cols["start_tok"], c_feat, c_null, -c_score, c_ex))
    ranked_ex = c_ex[order]
    rank = np.arange(len(order)) - np.searchsorted(ranked_ex, ranked_ex)
    sel = order[(rank < n_best_size) | c_null[order]]  # top n_best, plus the null if beyond
    bounds = np.searchsorted(c_ex[sel], np.arange(n_ex + 1)).tolist()
    prob = _softmax_groups(c_score[sel], c_ex[sel])

    # Best span = first non-null candidate in rank order; null score per example.
    spans = np.flatnonzero(~c_null[order])
    has_span, first = np.unique(ranked_ex[spans], return_index=True)
    best = np.full(n_ex, -1, dtype=np.int64)
    best[has_span] = order[spans[first]]
    null_of = np.full(n_ex, -1, dtype=np.int64)
    nulls = np.flatnonzero(c_null)
    null_of[c_ex[nulls]] = nulls
    return {
        "sel": sel.tolist(),
        "bounds": bounds,
        "prob": prob.tolist(),
        "best": best.tolist(),
        "null_of": null_of.tolist(),
    }


def _answers(examples, ranked: dict, c_score, c_null, cols, thresh: float, version_2_with_negative: bool) -> Result:
    """(predictions, na_scores, nbest) from the ranked candidates (Python lists: one conversion, fast loop)."""
    score_l, prob_l = c_score.tolist(), ranked["prob"]
    a_l, b_l, null_l = cols["a"].tolist(), cols["b"].tolist(), c_null.tolist()
    sl_l, el_l = cols["start_logit"].tolist(), cols["end_logit"].tolist()
    sel_l, bounds, best_l, null_of_l = ranked["sel"], ranked["bounds"], ranked["best"], ranked["null_of"]

    preds: dict[str, str] = {}
    na_scores: dict[str, float] = {}
    nbest: dict[str, list[dict]] = {}
    for i, ex in enumerate(examples):
        ctx = ex["context"]
        nbest[ex["id"]] = [
            {
                "text": "" if null_l[c] else ctx[a_l[c] : b_l[c]],
                "start_logit": sl_l[c],
                "end_logit": el_l[c],
                "score": score_l[c],
                "probability": prob_l[j],
            }
            for j, c in enumerate(sel_l[bounds[i] : bounds[i + 1]], start=bounds[i])
        ]
        b, z = best_l[i], null_of_l[i]
        _decide(
            ex["id"],
            ctx[a_l[b] : b_l[b]] if b >= 0 else None,
            score_l[b] if b >= 0 else None,
            score_l[z] if z >= 0 else None,
            thresh,
            version_2_with_negative,
            preds,
            na_scores,
        )
    return preds, na_scores, nbest


def postprocess_qa_reference(
    examples: Sequence[Mapping],
    features: Sequence[Mapping],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    version_2_with_negative: bool = True,
) -> Result:
    """The HF-shaped loop: same contract as ``postprocess_qa``, kept as its test oracle."""
    start, end, ex_idx = _prepare(examples, features, start_logits, end_logits, n_best_size)
    per_example: dict[int, list[int]] = {}
    for f, i in enumerate(ex_idx.tolist()):
        per_example.setdefault(i, []).append(f)

    preds: dict[str, str] = {}
    na_scores: dict[str, float] = {}
    nbest: dict[str, list[dict]] = {}
    for i, ex in enumerate(examples):
        ctx = ex["context"]
        cands = []  # (sort key, text, start_logit, end_logit, score)
        null = None
        for f in per_example.get(i, []):
            s, e = start[f], end[f]
            om = features[f]["offset_mapping"]
            null_score = float(s[0]) + float(e[0])
            if null is None or null[4] > null_score:
                null = ((-null_score, True, f, 0, 0), "", float(s[0]), float(e[0]), null_score)
            starts = np.argsort(-s, kind="stable")[:n_best_size].tolist()
            ends = np.argsort(-e, kind="stable")[:n_best_size].tolist()
            for a in starts:
                for b in ends:
                    oa, ob = _offset(om, a), _offset(om, b)
                    if oa is None or ob is None:
                        continue
                    if b < a or b - a + 1 > max_answer_length:
                        continue
                    text = ctx[oa[0] : ob[1]]
                    if not text:
                        continue
                    sc = float(s[a]) + float(e[b])
                    cands.append(((-sc, False, f, a, b), text, float(s[a]), float(e[b]), sc))
        if version_2_with_negative and null is not None:
            cands.append(null)
        cands.sort(key=lambda c: c[0])
        kept = cands[:n_best_size]
        if version_2_with_negative and null is not None and null not in kept:
            kept.append(null)
        probs = _softmax_groups(np.array([c[4] for c in kept]), np.zeros(len(kept))).tolist()
        nbest[ex["id"]] = [
            {"text": c[1], "start_logit": c[2], "end_logit": c[3], "score": c[4], "probability": p}
            for c, p in zip(kept, probs)
        ]
        spans = [c for c in cands if not c[0][1]]
        best_text, best_score = (spans[0][1], spans[0][4]) if spans else (None, None)
        _decide(
            ex["id"],
            best_text,
            best_score,
            null[4] if null else None,
            null_score_diff_threshold,
            version_2_with_negative,
            preds,
            na_scores,
        )
    return preds, na_scores, nbest


def chosen_probability(candidates: list[dict], answer: str) -> float:
    """The n-best probability of the candidate that became the answer ("" = the null answer); 0 if none is."""
    chosen = next((c for c in candidates if c.get("text", "") == answer), None)
    return float(chosen["probability"]) if chosen else 0.0
