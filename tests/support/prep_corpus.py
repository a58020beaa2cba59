"""A synthetic wikitext-like corpus of any size and a word-level tokenizer, for the data preparation tests.

``python tests/support/prep_corpus.py LINES NUM_PROC WORK`` builds the NSP pairs of a corpus
written by :func:`write_lines` with :func:`engine.data.prepare.build_pairs_file` and prints one
JSON line: pairs, tokens, the process's RSS (MB) before the build and its peak during it. Only
datasets, pyarrow, numpy and tokenizers are imported (no torch, no transformers), so the peak
measures the preparation, not the libraries a job would load anyway.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDS = [f"w{i}" for i in range(400)]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class WordTokenizer:
    """The slice of a transformers tokenizer the preparation uses: ``tok(texts, add_special_tokens=False)``."""

    pad_token_id, unk_token_id, cls_token_id, sep_token_id, mask_token_id = range(5)

    def __init__(self) -> None:
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = {w: i for i, w in enumerate(SPECIALS + WORDS + ["."])}
        self.tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        self.tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()

    def __len__(self) -> int:
        return self.tok.get_vocab_size()

    def __call__(self, texts, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=add_special_tokens)]}


def lines(n_docs: int, seed: int = 0):
    """Wikitext-shaped lines: a title, paragraphs of sentences, blank lines, a section heading."""
    rng = random.Random(seed)
    for d in range(n_docs):
        yield f" = Title {d} = "
        yield ""
        for p in range(rng.randint(2, 6)):
            if p == 2:
                yield " = = Section = = "
            sents = [" ".join(rng.choices(WORDS, k=rng.randint(3, 24))) + " ." for _ in range(rng.randint(1, 9))]
            yield " " + " ".join(sents) + " "
            yield ""


def write_lines(path: Path, n_docs: int, seed: int = 0):
    """The corpus as a memory-mapped ``datasets.Dataset`` (column ``text``), written 1,000 lines at a time."""
    import datasets
    import pyarrow as pa

    schema = pa.schema([pa.field("text", pa.string())])
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        buf: list[str] = []
        for line in lines(n_docs, seed):
            buf.append(line)
            if len(buf) == 1000:
                writer.write_batch(pa.record_batch([pa.array(buf)], schema=schema))
                buf = []
        if buf:
            writer.write_batch(pa.record_batch([pa.array(buf)], schema=schema))
    return datasets.Dataset.from_file(str(path))


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith(key + ":"))


def reset_peak_rss() -> float:
    """Start a new peak-RSS window (Linux: ``clear_refs`` 5 resets VmHWM); the RSS now, in MB."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """The peak RSS since :func:`reset_peak_rss` (MB)."""
    return _status_mb("VmHWM")


def main(lines_path: Path, num_proc: int, work: Path) -> dict:
    """Build the pairs of the corpus at ``lines_path`` (:func:`write_lines`), written by another process."""
    import datasets

    from engine.data import prepare
    from engine.data.prepare import PairSettings, build_pairs_file

    # Small blocks (256 lines, 512 pairs): the small corpus already has many, so the per-block working set
    # (text, token lists) is in both peaks and their difference is what grows with the corpus.
    prepare.BLOCK_LINES, prepare.PAIR_BLOCK = 256, 512
    ds = datasets.Dataset.from_file(str(lines_path))
    tok = WordTokenizer()
    before = reset_peak_rss()
    n = build_pairs_file(ds, "text", tok, work / "pairs.arrow", work / "tmp", PairSettings(128, 0.1, 7), num_proc)
    after = peak_rss_mb()
    import pyarrow.compute as pc

    pairs = datasets.Dataset.from_file(str(work / "pairs.arrow"))
    tokens = pc.sum(pc.list_value_length(pairs.with_format("arrow")[:]["input_ids"])).as_py()
    return {"pairs": n, "rows": len(pairs), "tokens": tokens, "rss_before_mb": before, "rss_peak_mb": after}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))))
