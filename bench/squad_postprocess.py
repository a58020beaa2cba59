"""Time SQuAD v2 post-processing + scoring at the size of the SQuAD v2 dev set.

Run from the repository root:  python bench/squad_postprocess.py [--examples 12000]

Synthetic but shaped like the real thing: 12,000 questions (half unanswerable, as in dev),
about 1.1 features per question (long contexts split with doc_stride 128), seq 384, a
question of ~15 tokens, one token per context word, n_best 20 x 20, max_answer_length 30.
Logits are random float32 with a bump at the gold span for most answerable questions, so the
scores are not trivial. Prints seconds for each stage; goal: <= 20 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.metrics.qa_postprocess import postprocess_qa  # noqa: E402
from engine.metrics.squad_v2 import squad_v2_score  # noqa: E402

SEQ, QUESTION_TOKENS, DOC_STRIDE = 384, 15, 128


def make_data(n_examples: int, seed: int = 0, seq: int = SEQ):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    capacity = seq - QUESTION_TOKENS - 3  # [CLS] question [SEP] context [SEP]
    examples, features, references, spans = [], [], {}, []
    for e in range(n_examples):
        # ~10% long contexts that need a second window -> ~1.1 features per question.
        n_words = (
            int(rng.integers(capacity + 20, capacity + 120)) if rng.random() < 0.1 else int(rng.integers(80, capacity))
        )
        words = [vocab[i] for i in rng.integers(0, len(vocab), n_words)]
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]).tolist()
        context = " ".join(words)
        qid = f"q{e}"
        examples.append({"id": qid, "context": context})
        if rng.random() < 0.5:
            references[qid] = []
            answer = None
        else:
            a = int(rng.integers(0, n_words - 5))
            b = a + int(rng.integers(0, 5))
            references[qid] = [" ".join(words[a : b + 1])]
            answer = (a, b)
        window = 0
        while True:
            offsets = [None] * (QUESTION_TOKENS + 2)
            chunk = range(window, min(window + capacity, n_words))
            offsets += [(starts[w], starts[w] + len(words[w])) for w in chunk]
            offsets += [None] * (seq - len(offsets))
            features.append({"example_index": e, "offset_mapping": offsets})
            spans.append((answer, window, len(chunk)))
            if window + capacity >= n_words:
                break
            window += DOC_STRIDE
    start = rng.normal(size=(len(features), seq)).astype(np.float32)
    end = rng.normal(size=(len(features), seq)).astype(np.float32)
    for f, (answer, window, n_ctx) in enumerate(spans):
        if answer is None:
            start[f, 0] += 3.0
            end[f, 0] += 3.0
        elif rng.random() < 0.7 and window <= answer[0] and answer[1] < window + n_ctx:
            first = QUESTION_TOKENS + 2 - window
            start[f, first + answer[0]] += 5.0
            end[f, first + answer[1]] += 5.0
    return examples, features, start, end, references


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=12000)
    args = parser.parse_args()

    t = time.perf_counter()
    examples, features, start, end, references = make_data(args.examples)
    print(
        f"data: {len(examples)} examples, {len(features)} features "
        f"({len(features) / len(examples):.2f}/example), seq {start.shape[1]} "
        f"[built in {time.perf_counter() - t:.1f} s, not timed]"
    )

    t0 = time.perf_counter()
    preds, na_scores, nbest = postprocess_qa(examples, features, start, end)
    t1 = time.perf_counter()
    result = squad_v2_score(preds, references, na_scores, na_prob_thresh=0.0)
    t2 = time.perf_counter()
    print(f"postprocess_qa: {t1 - t0:.2f} s")
    print(f"squad_v2_score: {t2 - t1:.2f} s")
    print(f"total:          {t2 - t0:.2f} s  (goal <= 20 s)")
    print({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})


if __name__ == "__main__":
    main()
