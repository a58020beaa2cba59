"""Models and tokenizers: presets, head classes, WordPiece tokenizers.

Where a model comes from (a preset, a run, a folder, a mirror, the Hub) is decided by
:mod:`engine.models.source`.

Presets are configs only (random weights): ``bert-base`` is ``BertConfig()``
(= bert-base-uncased's shape); ``bert-tiny`` and ``bert-micro`` are small
enough to train on a laptop CPU. Tokenizers come from the checkpoint, or are
WordPiece tokenizers trained on a corpus and cached by content hash. Training is
deterministic (:mod:`engine.models.wordpiece`): the same text and settings give a
byte-identical ``tokenizer.json`` in any process, so a fresh cache gives the same vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from engine.manifest import PRESETS  # the preset shapes live with the manifest, which validates model names

HEAD_CLASSES = {
    "base": "BertModel",
    "pretraining": "BertForPreTraining",
    "mlm": "BertForMaskedLM",
    "classification": "BertForSequenceClassification",
    "qa": "BertForQuestionAnswering",
}
AUTO_CLASSES = {
    "base": "AutoModel",
    "pretraining": "AutoModelForPreTraining",
    "mlm": "AutoModelForMaskedLM",
    "classification": "AutoModelForSequenceClassification",
    "qa": "AutoModelForQuestionAnswering",
}


def cache_root() -> Path:
    return Path(os.environ.get("LMCONSOLE_CACHE", "~/.cache/lmconsole")).expanduser()


def preset_config(name: str, vocab_size: int | None = None):
    from transformers import BertConfig

    kwargs = dict(PRESETS[name])
    if vocab_size and name != "bert-base":
        kwargs["vocab_size"] = vocab_size
    return BertConfig(**kwargs)


def model_class(head: str, config):
    import transformers

    if getattr(config, "model_type", "bert") == "bert":
        return getattr(transformers, HEAD_CLASSES[head])
    return getattr(transformers, AUTO_CLASSES[head])


def build_meta(config, head: str):
    """Instantiate ``head`` on the meta device: shapes without memory or init cost."""
    import torch

    cls = model_class(head, config)
    with torch.device("meta"):
        if hasattr(cls, "from_config") and not hasattr(cls, "config_class"):
            return cls.from_config(config)
        return cls(config)


def train_wordpiece(texts_iter, vocab_size: int, key: str, lowercase: bool = True, log=None):
    """Train (or load from cache) a BERT WordPiece tokenizer; returns a fast tokenizer.

    ``key`` identifies the corpus (e.g. a hash of dataset + split + rows); the
    cache folder is keyed by it and the settings, so reruns are instant.
    """
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # a lazy module mypy cannot see

    from engine.data.cache import check, corrupt_error, remove, seal
    from engine.models.wordpiece import TRAINER_VERSION

    # The key holds everything the vocabulary depends on: the corpus, the settings and the
    # trainer's version (older caches came from the hash-ordered Rust trainer and are not reused).
    digest = hashlib.sha256(
        json.dumps([key, vocab_size, lowercase, "wordpiece", TRAINER_VERSION]).encode()
    ).hexdigest()[:16]
    folder = cache_root() / "tokenizers" / f"wordpiece-{vocab_size}-{digest}"
    problem = ""
    if (folder / "tokenizer.json").exists():
        problem = check(folder) or _tokenizer_problem(folder)
        if not problem:
            return BertTokenizerFast.from_pretrained(str(folder))
        if log is not None:
            log(f"the cached tokenizer {folder} is corrupt ({problem}): rebuilding it", "warning")
        remove(folder)
    from tokenizers import BertWordPieceTokenizer

    from engine.models.wordpiece import count_words, train_vocab

    vocab = train_vocab(count_words(texts_iter, lowercase), vocab_size, min_frequency=2)
    tok = BertWordPieceTokenizer(
        {t: i for i, t in enumerate(vocab)}, lowercase=lowercase, clean_text=True, strip_accents=lowercase
    )
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    fast = BertTokenizerFast(
        tokenizer_object=tok._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=lowercase,
    )
    fast.save_pretrained(str(tmp))
    seal(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process won the race: use theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    again = check(folder) or _tokenizer_problem(folder)
    if again:
        raise corrupt_error("tokenizer", folder, again)
    return BertTokenizerFast.from_pretrained(str(folder))


def _tokenizer_problem(folder: Path) -> str:
    """A load check of a cached WordPiece tokenizer: it loads and has its special tokens and a vocabulary."""
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # a lazy module mypy cannot see

    try:
        tok = BertTokenizerFast.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any damage
        return f"does not load: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__}"
    vocab = tok.get_vocab()
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in vocab]
    if missing or len(vocab) <= 5:
        return f"vocabulary of {len(vocab)} tokens" + (f", missing {', '.join(missing)}" if missing else "")
    return ""
