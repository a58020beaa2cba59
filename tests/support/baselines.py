"""Baselines a pretrained masked LM must beat, computed from a run's own data and vocabulary.

A masked LM that predicts every masked token by its training frequency, ignoring context,
is the "unigram plateau" of MLM training; beating it clearly is what shows that a model
uses context. NSP's baseline is chance (the pairs are half random).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class MlmBaselines:
    unigram_perplexity: float  # add-one unigram model of the training split, scored on the masked targets
    most_frequent_rate: float  # MLM accuracy of always predicting the training split's most frequent token
    nsp_majority: float  # NSP accuracy of always predicting the more frequent label of the evaluation split
    masked_tokens: int
    vocab_size: int


def mlm_baselines(train_ids, eval_labels, eval_nsp, vocab_size: int, special_ids) -> MlmBaselines:
    """Baselines from the training pairs' token ids and the evaluation split's masked targets.

    ``train_ids``: token id lists of the training pairs; ``eval_labels``: per-position targets
    (-100 = not masked); ``vocab_size``: the run's vocabulary (add-one smoothing over all of it);
    ``special_ids``: [CLS], [SEP], [PAD] and such, never counted (they are never masked).
    """
    special = set(special_ids)
    counts: Counter[int] = Counter(t for seq in train_ids for t in seq if t not in special)
    total = sum(counts.values())
    targets = [t for row in eval_labels for t in row if t != -100]
    if not targets or not total:
        raise ValueError("no masked targets or no training tokens: nothing to compare with")
    nll = -math.fsum(math.log((counts[t] + 1) / (total + vocab_size)) for t in targets)
    top = counts.most_common(1)[0][0]
    nsp = list(eval_nsp)
    return MlmBaselines(
        unigram_perplexity=math.exp(nll / len(targets)),
        most_frequent_rate=sum(t == top for t in targets) / len(targets),
        nsp_majority=max(nsp.count(0), nsp.count(1)) / len(nsp),
        masked_tokens=len(targets),
        vocab_size=vocab_size,
    )


def run_baselines(run, mirror: str = "") -> MlmBaselines:
    """:func:`mlm_baselines` of a finished pretraining run: its saved tokenizer, its pairs rebuilt
    (same seed and cache key as the job, so normally read from the cache)."""
    import types

    from transformers import AutoTokenizer

    from engine.manifest import Settings
    from engine.tasks.pretrain import prepare_split

    exp = types.SimpleNamespace(**run.config())
    ctx = types.SimpleNamespace(
        exp=exp,
        manifest=types.SimpleNamespace(settings=Settings(data_mirror=mirror)),
        log=lambda msg, level="info": None,
        emit=lambda event: None,
    )
    tok = AutoTokenizer.from_pretrained(str(run.final_model()))
    train = prepare_split(ctx, tok, exp.train_split, exp.seed, mask=False)
    ev = prepare_split(ctx, tok, exp.eval_split, exp.seed, mask=True)
    return mlm_baselines(train["input_ids"], ev["mlm_labels"], ev["next_sentence_label"], len(tok), tok.all_special_ids)
