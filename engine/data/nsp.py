"""Pretraining data: wikitext lines -> documents -> NSP sentence pairs, and MLM masking.

Follows google-research/bert ``create_pretraining_data.py``: chunks of sentences
up to a target length (``max_seq_length - 3``, shorter with ``short_seq_prob``),
segment A = the first ``randint(1, len(chunk) - 1)`` sentences, B = the true
continuation or (about half the time) a random span of another document, whose
unused sentences are put back; the longer side is truncated from the front or
the back at random. NSP label 0 = B follows A, 1 = B is random (HF convention).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from itertools import accumulate

_ARTICLE = re.compile(r"^ ?= [^=].* = ?$")
_SECTION = re.compile(r"^ ?(= ){2,}.*(= ?){2,}$")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=\S)")


ARTICLE, SECTION, TEXT, BLANK = 1, 0, 2, 0  # line kinds: a title starts a document; headings/blank add nothing


def line_sentences(raw: str | None) -> tuple[int, list[str]]:
    """One wikitext line -> (kind, sentences): ``ARTICLE`` for `` = Title = `` (a new document), ``TEXT``
    with the line's sentences, else (blank line, section heading) no sentences."""
    line = (raw or "").strip()
    if not line:
        return BLANK, []
    if _SECTION.match(line):
        return SECTION, []  # section headings carry little text; BERT's data has none
    if _ARTICLE.match(line):
        return ARTICLE, []
    return TEXT, [s.strip() for s in _SENT_SPLIT.split(line) if s.strip()]


def documents_from_lines(lines) -> list[list[str]]:
    """Wikitext lines to documents (articles start at `` = Title = ``), each a list of sentences."""
    docs: list[list[str]] = []
    current: list[str] = []
    for raw in lines:
        kind, sents = line_sentences(raw)
        if kind == ARTICLE:
            if current:
                docs.append(current)
            current = []
        current.extend(sents)
    if current:
        docs.append(current)
    return docs


def plan_pairs(
    n_docs: int,
    doc: Callable[[int], tuple[int, list[int]]],
    max_seq_length: int,
    short_seq_prob: float,
    seed: int,
    limit: int = 0,
) -> Iterator[tuple[int, int, int, int, bool]]:
    """The recipe on sentence lengths only: yields ``(a_start, a_end, b_start, b_end, is_random_next)``.

    ``doc(d)`` gives document ``d``'s first token offset and its sentences' token counts
    (sentences of one document are contiguous in the token stream); the yielded spans are
    offsets into that stream, after truncation. One random stream (``seed``) drives every
    draw in document order, as in google-research/bert, so the pairs are a function of the
    lengths and the seed alone: whoever tokenised the text, and in how many processes.
    ``limit`` stops after that many pairs (the first ones: the same as cutting the list).
    """
    rng = random.Random(seed)
    max_tokens = max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    made = 0
    for doc_index in range(n_docs):
        base, lens = doc(doc_index)
        off = list(accumulate(lens, initial=base))  # off[k] = offset of sentence k; off[-1] = the end
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        first, n_chunk, length = 0, 0, 0
        i = 0
        while i < len(lens):
            if not n_chunk:
                first = i
            n_chunk += 1
            length += lens[i]
            if i == len(lens) - 1 or length >= target:
                a_end = rng.randint(1, n_chunk - 1) if n_chunk >= 2 else 1
                a0, a1 = off[first], off[first + a_end]
                is_random = False
                if n_docs > 1 and (n_chunk == 1 or rng.random() < 0.5):
                    is_random = True
                    target_b = target - (a1 - a0)
                    for _ in range(10):
                        other = rng.randint(0, n_docs - 1)
                        if other != doc_index:
                            break
                    o_base, o_lens = doc(other)
                    start = rng.randint(0, len(o_lens) - 1)
                    b0 = o_base + sum(o_lens[:start])
                    b1 = b0
                    for n in o_lens[start:]:
                        b1 += n
                        if b1 - b0 >= target_b:
                            break
                    # The unused sentences of this chunk go back into the stream.
                    i -= n_chunk - a_end
                else:
                    b0, b1 = a1, off[first + n_chunk]
                # Truncate the longer side, one token at a time, from the front or the back at random.
                while (a1 - a0) + (b1 - b0) > max_tokens:
                    front = rng.random() < 0.5
                    if a1 - a0 > b1 - b0:
                        a0, a1 = (a0 + 1, a1) if front else (a0, a1 - 1)
                    else:
                        b0, b1 = (b0 + 1, b1) if front else (b0, b1 - 1)
                if a1 > a0 and b1 > b0:
                    yield a0, a1, b0, b1, is_random
                    made += 1
                    if made == limit:
                        return
                n_chunk, length = 0, 0
            i += 1


def build_nsp_pairs(docs: list[list[list[int]]], max_seq_length: int, short_seq_prob: float, seed: int):
    """Documents of tokenised sentences -> list of (tokens_a, tokens_b, is_random_next) (:func:`plan_pairs`)."""
    flat = [t for d in docs for s in d for t in s]
    starts = list(accumulate((sum(map(len, d)) for d in docs), initial=0))
    lens = [[len(s) for s in d] for d in docs]
    pairs = []
    for a0, a1, b0, b1, rnd in plan_pairs(
        len(docs), lambda d: (starts[d], lens[d]), max_seq_length, short_seq_prob, seed
    ):
        pairs.append((flat[a0:a1], flat[b0:b1], rnd))
    return pairs


def encode_pair(a: list[int], b: list[int], cls_id: int, sep_id: int) -> tuple[list[int], list[int]]:
    ids = [cls_id, *a, sep_id, *b, sep_id]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    return ids, types


def mask_tokens(
    input_ids, special, mask_id: int, vocab_size: int, mlm_probability: float, max_predictions: int, generator
):
    """BERT masking, vectorised: per row ``min(max_pred, max(1, round(p * n)))`` positions.

    ``special`` marks [CLS]/[SEP]/[PAD] (never chosen). Of the chosen positions
    80% become [MASK], 10% a random token, 10% stay. Returns (masked ids, labels)
    with labels -100 at positions that are not predicted.
    """
    import torch

    n_real = (~special).sum(1)
    n_mask = torch.clamp(torch.round(n_real.float() * mlm_probability).long(), min=1, max=max_predictions)
    n_mask = torch.minimum(n_mask, n_real)
    scores = torch.rand(input_ids.shape, generator=generator)
    scores = scores.masked_fill(special, 2.0)  # specials sort last, never chosen
    ranks = scores.argsort(dim=1).argsort(dim=1)
    chosen = ranks < n_mask[:, None]
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    r = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(0, vocab_size, input_ids.shape, generator=generator)
    ids = input_ids.clone()
    ids = torch.where(chosen & (r < 0.8), torch.full_like(ids, mask_id), ids)
    ids = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, ids)
    return ids, labels
