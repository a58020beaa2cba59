"""Install Debian's WordNet 3.0 (packages wordnet-base + wordnet-sense-index) as an nltk corpus.

    apt-get install -y wordnet-base wordnet-sense-index
    python scripts/install_wordnet.py /usr/share/nltk_data      # or any folder on NLTK_DATA

nltk's WordNet reader wants ``<nltk_data>/corpora/wordnet/`` with the database files
(data.*, index.*, *.exc, index.sense) and a small fixed ``lexnames`` file that Debian does
not ship; its 45 lines are the table of the lexnames(5WN) manual page in wordnet-base,
which this script parses (number, name, syntactic category from the name's prefix).
With the corpus in place, METEOR counts WordNet synonyms (engine.metrics.text).
"""

from __future__ import annotations

import gzip
import re
import shutil
import sys
from pathlib import Path

SOURCE = Path("/usr/share/wordnet")
MANPAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
FILES = (
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
    "index.sense",
)


def lexnames_from_manpage(text: str) -> str:
    """The lexnames file: '<NN>\\t<name>\\t<category>' per line, from the manual page's table."""
    rows = {}
    for num, name in re.findall(r"^\s*(\d\d)\s+((?:adj|adv|noun|verb)\.[A-Za-z]+)\b", text, re.M):
        rows[int(num)] = name
    if sorted(rows) != list(range(45)):
        raise SystemExit(f"install_wordnet: expected 45 lexicographer files in {MANPAGE}, found {len(rows)}")
    return "".join(f"{n:02d}\t{rows[n]}\t{CATEGORY[rows[n].split('.')[0]]}\n" for n in range(45))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    missing = [f for f in FILES if not (SOURCE / f).is_file()] + ([] if MANPAGE.is_file() else [str(MANPAGE)])
    if missing:
        print(
            f"install_wordnet: missing {', '.join(missing)}: apt-get install -y wordnet-base wordnet-sense-index",
            file=sys.stderr,
        )
        return 1
    target = Path(argv[0]) / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        shutil.copyfile(SOURCE / f, target / f)
    raw = gzip.decompress(MANPAGE.read_bytes()).decode("utf-8", "replace")
    text = re.sub(r"\\f[BIRP]|\\-", lambda m: "-" if m.group() == "\\-" else "", raw)  # roff font escapes
    (target / "lexnames").write_text(lexnames_from_manpage(text))
    print(f"WordNet 3.0 installed for nltk in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
