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

_ARTICLE = re.compile(r"^ ?= [^=].* = ?$")
_SECTION = re.compile(r"^ ?(= ){2,}.*(= ?){2,}$")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=\S)")


def documents_from_lines(lines) -> list[list[str]]:
    """Wikitext lines to documents (articles start at `` = Title = ``), each a list of sentences."""
    docs: list[list[str]] = []
    current: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if _ARTICLE.match(line) and not _SECTION.match(line):
            if current:
                docs.append(current)
            current = []
            continue
        if _SECTION.match(line):
            continue  # section headings carry little text; BERT's data has none
        current.extend(s.strip() for s in _SENT_SPLIT.split(line) if s.strip())
    if current:
        docs.append(current)
    return docs


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def build_nsp_pairs(docs: list[list[list[int]]], max_seq_length: int, short_seq_prob: float, seed: int):
    """Documents of tokenised sentences -> list of (tokens_a, tokens_b, is_random_next)."""
    rng = random.Random(seed)
    max_tokens = max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    pairs = []
    n_docs = len(docs)
    for doc_index, doc in enumerate(docs):
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk: list[list[int]] = []
        length = 0
        i = 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                if chunk:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    tokens_a = [t for s in chunk[:a_end] for t in s]
                    tokens_b: list[int] = []
                    is_random = False
                    if n_docs > 1 and (len(chunk) == 1 or rng.random() < 0.5):
                        is_random = True
                        target_b = target - len(tokens_a)
                        for _ in range(10):
                            other = rng.randint(0, n_docs - 1)
                            if other != doc_index:
                                break
                        other_doc = docs[other]
                        start = rng.randint(0, len(other_doc) - 1)
                        for s in other_doc[start:]:
                            tokens_b.extend(s)
                            if len(tokens_b) >= target_b:
                                break
                        # The unused sentences of this chunk go back into the stream.
                        i -= len(chunk) - a_end
                    else:
                        for s in chunk[a_end:]:
                            tokens_b.extend(s)
                    _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
                    if tokens_a and tokens_b:
                        pairs.append((tokens_a, tokens_b, is_random))
                chunk, length = [], 0
            i += 1
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
