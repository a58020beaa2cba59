"""A small WordPiece vocabulary for tokenizers built with plain transformers."""

from __future__ import annotations

import re


def wordpiece_vocab() -> list[str]:
    """Specials, characters (so nothing maps to [UNK] by accident) and corpus words."""
    import datasets

    from engine.data.embedded import embedded_config, ensure_embedded

    words: set[str] = set()
    for name, cols in (("sst2", ("sentence",)), ("squad_v2", ("question", "context"))):
        ds = datasets.load_dataset(str(ensure_embedded(name)), embedded_config(name), split="train")
        for col in cols:
            for text in ds[col][:400]:
                words.update(re.findall(r"[a-z]+", text.lower()))
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    return (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + sorted(words - set(chars))
    )
