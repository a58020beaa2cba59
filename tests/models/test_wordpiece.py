"""A trained WordPiece vocabulary depends on the text and settings only, never on the process.

The Rust trainer's hash-map order is seeded per process, so the decisive checks train in two
separate processes (with different ``PYTHONHASHSEED`` too) from fresh caches and compare the
bytes of ``tokenizer.json``.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from engine.models.wordpiece import count_words, train_vocab

# Trains in a fresh process under $LMCONSOLE_CACHE and prints the hash of tokenizer.json.
CHILD = """
import hashlib, random, sys
from engine.models.presets import cache_root, train_wordpiece
kind, vocab_size = sys.argv[1], int(sys.argv[2])
if kind == "embedded":
    import datasets
    from engine.data.embedded import embedded_config, ensure_embedded
    folder = ensure_embedded("wikitext")
    texts = list(datasets.load_dataset(str(folder), embedded_config("wikitext"), split="train")["text"])
else:  # Zipfian text over invented words: many equally frequent pairs, so many ties to break
    r = random.Random(7)
    types = ["".join(r.choice("abcdefghij") for _ in range(r.randint(2, 9))) for _ in range(3000)]
    words = r.choices(types, [1 / (i + 1) for i in range(len(types))], k=60_000)
    texts = [" ".join(words[i : i + 40]) for i in range(0, len(words), 40)]
tok = train_wordpiece(iter([texts]), vocab_size, "determinism-" + kind)
(path,) = (cache_root() / "tokenizers").glob("wordpiece-*/tokenizer.json")
print(len(tok), hashlib.sha256(path.read_bytes()).hexdigest())
"""


def _train_in_child(tmp_path: Path, kind: str, vocab_size: int, hash_seed: str) -> str:
    cache = tmp_path / f"cache-{hash_seed}"
    env = {**os.environ, "LMCONSOLE_CACHE": str(cache), "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(vocab_size)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(("kind", "vocab_size"), [("embedded", 4000), ("generated", 2000)])
def test_two_fresh_trainings_in_separate_processes_give_identical_bytes(tmp_path, kind, vocab_size):
    first = _train_in_child(tmp_path, kind, vocab_size, "1")
    second = _train_in_child(tmp_path, kind, vocab_size, "2")
    assert first == second
    assert int(first.split()[0]) > 1000  # a real vocabulary, not just the alphabet


def test_ties_are_broken_by_order_not_by_input_order():
    words = {"ab": 3, "cd": 3, "ef": 3, "abcd": 2, "xy": 1}
    shuffled = list(words.items())
    random.Random(1).shuffle(shuffled)
    assert train_vocab(words, 40) == train_vocab(dict(shuffled), 40)
    vocab = train_vocab(words, 40)
    # equally frequent pairs merge in id order: a+##b before c+##d before e+##f
    assert vocab.index("ab") < vocab.index("cd") < vocab.index("ef")


def test_the_vocabulary_is_learned_from_the_text():
    words = count_words(["The river Ollam flows north.", "The river is long; the river is old."] * 5)
    assert words["river"] == 15 and words["the"] == 15 and words[";"] == 5  # lowercased, punctuation split
    vocab = train_vocab(words, 200)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "river" in vocab and "##r" in vocab
    assert len(vocab) == len(set(vocab))
    # "flows" is seen 5 times and becomes one token; a pair seen once (min_frequency 2) is never merged
    assert "flows" in vocab
    assert "xyz" not in train_vocab({"xyz": 1}, 200)


def test_a_trained_tokenizer_splits_words_into_its_pieces(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_CACHE", str(tmp_path))
    from engine.models.presets import train_wordpiece

    tok = train_wordpiece(iter([["the river flows north"] * 5, ["rivers flow"] * 3]), 60, "pieces")
    assert tok.tokenize("The river flows") == ["the", "river", "flows"]
    assert tok("river")["input_ids"][0] == tok.cls_token_id
    assert tok.convert_ids_to_tokens(tok("rivers")["input_ids"])[1:-1] == ["rivers"]


def test_the_cache_key_holds_the_trainer_version(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONSOLE_CACHE", str(tmp_path))
    import engine.models.wordpiece as wordpiece
    from engine.models.presets import train_wordpiece

    train_wordpiece(iter([["the river flows"] * 3]), 60, "versioned")
    monkeypatch.setattr(wordpiece, "TRAINER_VERSION", wordpiece.TRAINER_VERSION + 1)
    train_wordpiece(iter([["the river flows"] * 3]), 60, "versioned")
    folders = sorted(p.name for p in (tmp_path / "tokenizers").iterdir())
    assert len(folders) == 2, folders  # a new trainer version never reuses an old vocabulary
