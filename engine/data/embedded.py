"""Small synthetic corpora laid out exactly like their Hugging Face Hub counterparts.

lmconsole must be able to pretrain and fine-tune end to end with no network at all
(CI, air-gapped machines, first run before any download).  This module generates,
deterministically, three tiny stand-ins for the Hub datasets the console uses by
default and writes them in the *same folder layout* as the Hub repositories:
parquet shards plus a ``README.md`` whose YAML front matter carries a ``configs:``
block.  They therefore load with the very same call an offline Hub mirror uses::

    folder = ensure_embedded("sst2")
    ds = datasets.load_dataset(str(folder), embedded_config("sst2"), split="train")

=============  =====================  ==========================================
name           config                 mirrors
=============  =====================  ==========================================
``wikitext``   ``wikitext-2-raw-v1``  Salesforce/wikitext (lines of raw text)
``sst2``       ``sst2``               nyu-mll/glue sst2 (sentence, label, idx)
``squad_v2``   ``squad_v2``           rajpurkar/squad_v2 (extractive QA + no-answer)
=============  =====================  ==========================================

All text is produced here from templates and small hand-written vocabularies of
invented names (no text copied from any real dataset).  The corpora are built to be
*learnable* by a tiny BERT in a minute or two of CPU time: the wikitext articles
are about synthetic towns, rivers, people and bands whose facts are repeated across
sentences (masked words are predictable, consecutive lines share the article's
entity so next-sentence prediction is learnable); SST-2 sentences follow sentiment
lexicons with negation, contrast and idioms; SQuAD contexts state a handful of facts
and questions ask about stated facts, unstated facts or a distractor entity.

Generation is reproducible: every random draw comes from :class:`random.Random`
seeded with a constant, nothing iterates a ``set`` or depends on hash randomisation,
so two runs (with the same pyarrow) write byte-identical parquet files.

Importing this module is cheap: pyarrow is imported inside the writer only, and
torch / transformers / datasets are never imported here.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import string
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["EMBEDDED_NAMES", "embedded_root", "ensure_embedded", "embedded_config"]

EMBEDDED_NAMES = ("wikitext", "sst2", "squad_v2")

#: Bump a version whenever the generator of that corpus changes its output: the folder
#: name carries it, so stale copies are simply ignored.  (This matters doubly because
#: ``datasets`` keys its own Arrow cache by the folder path, not by file contents.)
_VERSIONS = {"wikitext": 4, "sst2": 1, "squad_v2": 1}
_CONFIGS = {"wikitext": "wikitext-2-raw-v1", "sst2": "sst2", "squad_v2": "squad_v2"}
_SEED = 20240611

# --------------------------------------------------------------------------------------
# Vocabularies (all invented or generic; kept small so a tiny model can learn them)
# --------------------------------------------------------------------------------------

PLACE_HEADS = (
    "Varn",
    "Kess",
    "Dunm",
    "Orl",
    "Sev",
    "Tal",
    "Brin",
    "Cald",
    "Esk",
    "Fel",
    "Gov",
    "Hask",
    "Ilm",
    "Jor",
    "Kel",
    "Lut",
    "Mor",
    "Nev",
    "Orv",
    "Pask",
    "Quill",
    "Rud",
    "Sull",
    "Tov",
    "Ulm",
    "Vask",
    "Wend",
    "Yss",
    "Zar",
    "Aub",
    "Bev",
    "Crel",
    "Dov",
    "Ebb",
    "Frin",
    "Gald",
)
PLACE_TAILS = (
    "holt",
    "moor",
    "ford",
    "wick",
    "by",
    "ton",
    "mere",
    "stead",
    "dale",
    "haven",
    "gate",
    "brook",
    "mouth",
    "well",
    "field",
    "bury",
    "combe",
    "ley",
    "thorpe",
    "worth",
    "cross",
)
RIVER_HEADS = (
    "Ar",
    "Sul",
    "Ven",
    "Ol",
    "Tam",
    "Is",
    "Cal",
    "Dor",
    "Em",
    "Lys",
    "Mer",
    "Nar",
    "Or",
    "Rhe",
    "Sav",
    "Tor",
    "Ul",
    "Wes",
    "Yl",
    "Zan",
    "Bel",
    "Kor",
    "Ask",
    "Brev",
    "Dun",
    "Fal",
    "Gor",
    "Quar",
)
RIVER_TAILS = ("en", "la", "ra", "wy", "der", "ith", "ane", "ova", "us", "el", "ent", "aire", "ock", "un")
PROVINCES = (
    "Sellmar",
    "Dravenmoor",
    "Kallis",
    "Orvenland",
    "Tesh",
    "Marrowdeep",
    "Halvard",
    "Quennet",
    "Vostria",
    "Lendmark",
    "Ebrenne",
    "Carrowgate",
    "Istmere",
    "Palvane",
    "Rudholm",
    "Wexmoor",
)
MOUNTAINS = (
    "Mount Kell",
    "Mount Arvel",
    "Mount Sorn",
    "Mount Brakka",
    "Mount Tiel",
    "Mount Odrun",
    "Mount Vesk",
    "Mount Hallan",
    "Mount Iro",
    "Mount Canna",
)
WATERS = (
    "Lake Ossa",
    "Lake Merrin",
    "Lake Tave",
    "Lake Ulden",
    "the Grey Sea",
    "the Sea of Vell",
    "the Northern Sea",
    "Lake Corra",
    "the Bay of Sarn",
    "Lake Ibb",
)
FIRST_NAMES_F = (
    "Mira",
    "Talia",
    "Edda",
    "Ilse",
    "Kaia",
    "Maren",
    "Odile",
    "Rhea",
    "Tamsin",
    "Vera",
    "Yana",
    "Zora",
    "Brisa",
    "Dagny",
    "Fenna",
    "Hesper",
    "Juno",
    "Liesl",
    "Nadia",
    "Petra",
    "Thea",
    "Vida",
)
FIRST_NAMES_M = (
    "Oren",
    "Bram",
    "Corin",
    "Joren",
    "Lorne",
    "Nils",
    "Soren",
    "Ulric",
    "Zeno",
    "Aldo",
    "Cato",
    "Elric",
    "Gideon",
    "Ivo",
    "Kester",
    "Milo",
    "Otto",
    "Silas",
    "Ugo",
    "Anselm",
    "Tobin",
    "Ewan",
)
SURNAME_HEADS = (
    "Tas",
    "Sol",
    "Brem",
    "Cad",
    "Dal",
    "Ferr",
    "Gost",
    "Hal",
    "Ives",
    "Kern",
    "Lath",
    "Mor",
    "Nett",
    "Orr",
    "Pry",
    "Quar",
    "Rell",
    "Stra",
    "Tuv",
    "Wick",
)
SURNAME_TAILS = ("ker", "vane", "ley", "mont", "ard", "ing", "ow", "sby", "holm", "ette")
BAND_ADJS = (
    "Copper",
    "Velvet",
    "Hollow",
    "Paper",
    "Silver",
    "Midnight",
    "Electric",
    "Wandering",
    "Quiet",
    "Broken",
    "Golden",
    "Northern",
    "Crimson",
    "Glass",
    "Lonely",
    "Rusty",
    "Wild",
    "Distant",
    "Painted",
    "Burning",
)
BAND_NOUNS = (
    "Lanterns",
    "Foxes",
    "Harbours",
    "Engines",
    "Sparrows",
    "Ghosts",
    "Tides",
    "Kings",
    "Wolves",
    "Mirrors",
    "Bells",
    "Owls",
    "Anchors",
    "Comets",
    "Pilots",
    "Orchards",
    "Saints",
    "Thieves",
    "Echoes",
    "Ravens",
)
WORK_ADJS = (
    "Silent",
    "Winter",
    "Last",
    "Hidden",
    "Golden",
    "Northern",
    "Bitter",
    "Distant",
    "Second",
    "Empty",
    "Quiet",
    "Long",
    "Broken",
    "Painted",
    "Lost",
)
WORK_NOUNS = (
    "Harbour",
    "Garden",
    "Letters",
    "Road",
    "Lantern",
    "Orchard",
    "Tide",
    "Bridge",
    "Island",
    "Summer",
    "Hours",
    "Mirror",
    "Fields",
    "Voyage",
    "Tower",
)
INDUSTRIES = (
    "copper mines",
    "wool trade",
    "shipyards",
    "glassworks",
    "salt works",
    "paper mills",
    "clock workshops",
    "cheese market",
    "breweries",
    "potteries",
    "timber yards",
    "silver mines",
    "lace workshops",
    "fishing fleet",
    "tanneries",
)
LANDMARKS = (
    "stone bridge",
    "clock tower",
    "cathedral",
    "old castle",
    "town hall",
    "covered market",
    "lighthouse",
    "abbey",
    "windmill",
    "observatory",
    "botanical garden",
    "opera house",
)
FESTIVALS = (
    "harvest festival",
    "lantern fair",
    "music festival",
    "horse fair",
    "flower show",
    "boat race",
    "winter market",
)
ROLES = ("merchant", "farmer", "knight", "priest", "miller", "shipwright", "soldier")
PROFESSIONS = (
    "painter",
    "poet",
    "engineer",
    "botanist",
    "astronomer",
    "architect",
    "composer",
    "novelist",
    "physician",
    "cartographer",
    "sculptor",
    "mathematician",
)
SUBJECTS = ("drawing", "music", "numbers", "plants", "the stars", "languages", "building")
QUALITIES = ("clarity", "warmth", "ambition", "precision", "humour", "strangeness")
GENRES = ("folk", "rock", "jazz", "punk", "blues", "pop", "soul", "electronic", "country", "metal")
LABELS = (
    "Greyfeather Records",
    "Blue Lantern Records",
    "Northway Records",
    "Ironbell Records",
    "Saltmarsh Records",
    "Red Kite Records",
    "Moonfield Records",
    "Oldgate Records",
)
INSTRUMENTS = ("guitar", "bass", "drums", "keyboards", "violin", "trumpet")
THEMES = ("the sea", "small towns", "lost love", "winter", "the road", "old friends", "the war")
FISH = ("trout", "salmon", "eels", "pike", "perch", "carp", "grayling", "sturgeon")
DIRECTIONS = ("north", "south", "east", "west", "north-east", "south-west")
MONTHS = ("January", "March", "April", "May", "June", "July", "August", "September", "October")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
ORDINALS = ("first", "second", "third", "fourth", "youngest", "eldest")
CENTURIES = ("sixteenth", "seventeenth", "eighteenth", "nineteenth")
FILM_GENRES = ("drama", "comedy", "thriller", "romance", "documentary", "western", "musical", "mystery")
NEWSPAPERS = ("Herald", "Courier", "Gazette", "Chronicle", "Observer", "Evening Post")

# SST-2 lexicons (lowercase, already in SST tokenisation: "is n't", "film 's").
POS_ADJS = (
    "good",
    "great",
    "charming",
    "gripping",
    "funny",
    "moving",
    "delightful",
    "clever",
    "beautiful",
    "brilliant",
    "engaging",
    "touching",
    "witty",
    "heartfelt",
    "stunning",
    "smart",
    "warm",
    "thoughtful",
    "entertaining",
    "wonderful",
    "fresh",
    "compelling",
    "lovely",
    "sharp",
    "inventive",
    "superb",
    "affecting",
    "memorable",
    "powerful",
    "satisfying",
    "joyous",
    "tender",
    "exhilarating",
    "polished",
    "absorbing",
    "lively",
)
NEG_ADJS = (
    "bad",
    "dull",
    "boring",
    "tedious",
    "clumsy",
    "flat",
    "lifeless",
    "predictable",
    "awful",
    "shallow",
    "tiresome",
    "pointless",
    "messy",
    "bland",
    "forgettable",
    "stale",
    "weak",
    "silly",
    "lazy",
    "incoherent",
    "sluggish",
    "overlong",
    "mediocre",
    "pretentious",
    "dreary",
    "painful",
    "dismal",
    "hollow",
    "cheap",
    "labored",
    "listless",
    "muddled",
    "sloppy",
    "grating",
    "joyless",
    "numbing",
)
INTENSIFIERS = (
    "very",
    "really",
    "truly",
    "remarkably",
    "thoroughly",
    "utterly",
    "quite",
    "consistently",
    "surprisingly",
    "genuinely",
    "deeply",
    "extremely",
    "so",
)
FILM_NOUNS = (
    "film",
    "movie",
    "picture",
    "comedy",
    "drama",
    "thriller",
    "story",
    "script",
    "performance",
    "cast",
    "plot",
    "direction",
    "dialogue",
    "ending",
    "soundtrack",
    "documentary",
    "romance",
    "sequel",
    "debut",
    "screenplay",
    "acting",
    "premise",
)
DIRECTORS = (
    "varga",
    "tasker",
    "solvane",
    "lindqvist",
    "okafor",
    "marchetti",
    "brennan",
    "haldane",
    "ferrante",
    "kowalczyk",
)
POS_VERBS = (
    ("work", "works"),
    ("succeed", "succeeds"),
    ("deliver", "delivers"),
    ("engage", "engages"),
    ("charm", "charms"),
    ("satisfy", "satisfies"),
    ("impress", "impresses"),
    ("entertain", "entertains"),
)
NEG_VERBS = (
    ("drag", "drags"),
    ("bore", "bores"),
    ("disappoint", "disappoints"),
    ("stumble", "stumbles"),
    ("falter", "falters"),
    ("misfire", "misfires"),
    ("annoy", "annoys"),
    ("fizzle", "fizzles"),
)
#: Idioms whose polarity is *not* that of a negation word they contain.
POS_IDIOMS = (
    "never loses its grip",
    "never misses a beat",
    "holds your attention",
    "earns its laughs",
    "rewards your patience",
    "stays with you long afterward",
    "never lets up",
    "is well worth seeing",
)
NEG_IDIOMS = (
    "never takes off",
    "never comes alive",
    "falls flat",
    "goes nowhere",
    "wastes its talented cast",
    "overstays its welcome",
    "feels like a chore",
    "is not worth your time",
)
NEGATORS = (
    "is not",
    "is n't",
    "is never",
    "is hardly",
    "is far from",
    "is not at all",
    "is by no means",
    "is n't particularly",
)
FILLERS = (
    "in the end",
    "ultimately",
    "for the most part",
    "as a whole",
    "on the whole",
    "by the final reel",
    "frankly",
    "at its core",
    "for better or worse",
)

# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def _rng(name: str) -> random.Random:
    """A Random seeded from a constant string via crc32 (never via ``hash()``)."""
    return random.Random(zlib.crc32(f"{name}/{_SEED}".encode()))


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class _Names:
    """Hands out invented names; subjects (``unique=True``) never repeat in a corpus."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()  # membership only, never iterated

    def _draw(self, make: Callable[[], str], unique: bool, avoid: str = "") -> str:
        for _ in range(10_000):
            name = make()
            if name != avoid and (not unique or name not in self.used):
                if unique:
                    self.used.add(name)
                return name
        raise RuntimeError("name space exhausted")

    def place(self, unique: bool = False, avoid: str = "") -> str:
        r = self.rng
        return self._draw(lambda: r.choice(PLACE_HEADS) + r.choice(PLACE_TAILS), unique, avoid)

    def river(self, unique: bool = False, avoid: str = "") -> str:
        r = self.rng
        return self._draw(lambda: r.choice(RIVER_HEADS) + r.choice(RIVER_TAILS), unique, avoid)

    def person(self, unique: bool = False, female: bool | None = None) -> tuple[str, bool]:
        r = self.rng
        fem = r.random() < 0.5 if female is None else female
        first = FIRST_NAMES_F if fem else FIRST_NAMES_M
        name = self._draw(lambda: r.choice(first) + " " + r.choice(SURNAME_HEADS) + r.choice(SURNAME_TAILS), unique)
        return name, fem

    def band(self, unique: bool = False, avoid: str = "") -> str:
        r = self.rng
        return self._draw(lambda: f"The {r.choice(BAND_ADJS)} {r.choice(BAND_NOUNS)}", unique, avoid)

    def film(self, unique: bool = False) -> str:
        r = self.rng
        return self._draw(lambda: f"The {r.choice(WORK_ADJS)} {r.choice(WORK_NOUNS)}", unique)

    def work(self) -> str:
        r = self.rng
        title = f"{r.choice(WORK_ADJS)} {r.choice(WORK_NOUNS)}"
        return "The " + title if r.random() < 0.5 else title


def _town(names: _Names, u: bool) -> dict:
    r = names.rng
    founded = r.randint(1150, 1780)
    name = names.place(unique=u)
    e: dict[str, Any] = dict(
        name=name,
        province=r.choice(PROVINCES),
        river=names.river(),
        neighbour=names.place(avoid=name),
        founded=founded,
        founder=names.person()[0],
        founder_role=r.choice(ROLES),
        population=f"{r.randint(2, 95)},{r.randint(0, 999):03d}",
        census=r.randint(1950, 2011),
        industry=r.choice(INDUSTRIES),
        landmark=r.choice(LANDMARKS),
        festival=r.choice(FESTIVALS),
        bank=r.choice(("left", "right")),
        dist=r.randint(5, 90),
        direction=r.choice(DIRECTIONS),
        direction2=r.choice(DIRECTIONS),
        built=founded + r.randint(10, 120),
        fire=r.randint(1600, 1890),
        railway=r.randint(1840, 1910),
        century=r.choice(CENTURIES),
        bridges=r.choice(("two", "three", "four", "five")),
        height=r.randint(20, 900),
        pct=r.randint(10, 60),
        weekday=r.choice(WEEKDAYS),
        restored=r.randint(1950, 2010),
        month=r.choice(MONTHS),
        profession=r.choice(PROFESSIONS),
        notable=names.person()[0],
        notable_born=r.randint(1700, 1960),
    )
    e.update(Pro="It", pro="it", Pos="Its", pos="its", kind="town", title=e["name"])
    return e


def _river(names: _Names, u: bool) -> dict:
    r = names.rng
    name, town1 = names.river(unique=u), names.place()
    e: dict[str, Any] = dict(
        name=name,
        province=r.choice(PROVINCES),
        length=r.randint(40, 900),
        source=r.choice(MOUNTAINS),
        mouth=r.choice(WATERS),
        town1=town1,
        town2=names.place(avoid=town1),
        tributary=names.river(avoid=name),
        fish=r.choice(FISH),
        explorer=names.person()[0],
        mapped=r.randint(1500, 1850),
        dam=r.randint(1900, 1980),
        height=r.randint(300, 2900),
        direction=r.choice(DIRECTIONS),
        bridges=r.choice(("six", "nine", "twelve")),
    )
    e.update(Pro="It", pro="it", Pos="Its", pos="its", kind="river", title=e["name"] + " River")
    return e


def _person(names: _Names, u: bool) -> dict:
    r = names.rng
    name, fem = names.person(unique=u)
    born = r.randint(1700, 1920)
    e: dict[str, Any] = dict(
        name=name,
        surname=name.split()[1],
        born=born,
        died=born + r.randint(35, 90),
        birthplace=names.place(),
        city=names.place(),
        profession=r.choice(PROFESSIONS),
        work=names.work(),
        work_year=born + r.randint(22, 34),
        award=f"{r.choice(PROVINCES)} Prize",
        award_year=born + r.randint(35, 45),
        mentor=names.person()[0],
        father=names.person(female=False)[0],
        parent_job=r.choice(ROLES),
        ordinal=r.choice(ORDINALS),
        subject=r.choice(SUBJECTS),
        quality=r.choice(QUALITIES),
        study_year=born + r.randint(15, 19),
        career_year=born + r.randint(20, 24),
        years=r.choice(("three", "five", "seven", "ten")),
        industry=r.choice(INDUSTRIES),
    )
    e["age"] = e["died"] - born
    e["a_profession"] = _a(e["profession"])  # derived, no draw: the SQuAD stream is unchanged
    e["return_year"] = e["died"] - r.randint(3, 20)
    e.update(
        Pro="She" if fem else "He",
        pro="she" if fem else "he",
        Pos="Her" if fem else "His",
        pos="her" if fem else "his",
        kind="person",
        title=name,
    )
    return e


def _band(names: _Names, u: bool) -> dict:
    r = names.rng
    formed = r.randint(1962, 2012)
    members = [names.person()[0] for _ in range(4)]
    name = names.band(unique=u)
    e: dict[str, Any] = dict(
        name=name,
        genre=r.choice(GENRES),
        genre2=r.choice(GENRES),
        hometown=names.place(),
        province=r.choice(PROVINCES),
        formed=formed,
        m1=members[0],
        m2=members[1],
        m3=members[2],
        m4=members[3],
        instr3=r.choice(INSTRUMENTS),
        instr4=r.choice(INSTRUMENTS),
        join_year=formed + r.randint(1, 3),
        sign_year=formed + r.randint(2, 4),
        debut=names.work(),
        debut_year=formed + r.randint(4, 6),
        label=r.choice(LABELS),
        single=names.work(),
        chart=r.randint(2, 40),
        tour_year=formed + r.randint(6, 9),
        other_band=names.band(avoid=name),
        theme=r.choice(THEMES),
    )
    e["a_genre"] = _a(e["genre"])
    e.update(Pro="They", pro="they", Pos="Their", pos="their", kind="band", title=e["name"])
    return e


def _film(names: _Names, u: bool) -> dict:
    r = names.rng
    # Films carry the review language of the SST-2 stand-in (the same lexicons, with
    # one polarity per film), as real wikitext's film articles carry critics' words:
    # a tokenizer trained on this corpus then covers the fine-tuning vocabulary.
    year = r.randint(1948, 2015)
    pos = r.random() < 0.55
    name = names.film(unique=u)
    star1, fem1 = names.person()
    e: dict[str, Any] = dict(
        name=name,
        year=year,
        film_genre=r.choice(FILM_GENRES),
        director=names.person()[0],
        star1=star1,
        star2=names.person()[0],
        writer=names.person()[0],
        composer=names.person()[0],
        critic=names.person()[0],
        critic2=names.person()[0],
        paper=f"{r.choice(PROVINCES)} {r.choice(NEWSPAPERS)}",
        place=names.place(),
        month=r.choice(MONTHS),
        shoot_year=year - 1,
        runtime=r.randint(78, 165),
        profession=r.choice(PROFESSIONS),
        profession2=r.choice(PROFESSIONS),
        century=r.choice(CENTURIES),
        gross=r.randint(2, 90),
        label=r.choice(LABELS),
        verdict="praised" if pos else "panned",
        rev1=_sst2_clause(r, pos),
        rev2=_sst2_np(r, pos),
        rev3=_sst2_clause(r, pos),
        rev4=_sst2_clause(r, not pos),
        rev5=_sst2_clause(r, pos),
        filler=r.choice(FILLERS).capitalize(),
    )
    e.update(a_profession=_a(e["profession"]), a_profession2=_a(e["profession2"]))
    e.update(
        Pro="It",
        pro="it",
        Pos="Its",
        pos="its",
        star_pro="she" if fem1 else "he",
        kind="film",
        title=f"{name} (film)",
    )
    return e


_ENTITY_DRAWERS = {"town": _town, "river": _river, "person": _person, "band": _band, "film": _film}


def _entity(kind: str, names: _Names, unique: bool = True) -> dict:
    """Draw one synthetic entity: a flat dict of attribute -> value.

    ``unique`` subjects get a name never used before in the corpus (articles and SQuAD
    titles are distinct entities); distractors only need a name of their own. Each kind's
    drawer takes its random draws in a fixed order: the corpus depends on it.
    """
    return _ENTITY_DRAWERS[kind](names, unique)


_FORMATTER = string.Formatter()


def _render(template: str, values: dict) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill ``template`` and return the text plus the (start, end) span of each field."""
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for literal, field, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        pos += len(literal)
        if field is not None:
            value = str(values[field])
            spans.setdefault(field, (pos, pos + len(value)))
            out.append(value)
            pos += len(value)
    return "".join(out), spans


# --------------------------------------------------------------------------------------
# (a) wikitext-2-raw-v1
# --------------------------------------------------------------------------------------

#: kind -> ((section heading or None for the lead, sentence templates), ...).  Templates
#: are natural prose; :func:`_wikify` turns them into wikitext's tokenised form.
_WIKI_SECTIONS: dict[str, tuple[tuple[str | None, tuple[str, ...]], ...]] = {
    "town": (
        (
            None,
            (
                "{name} is a town in the province of {province}, on the {bank} bank of the {river} River.",
                "It had a population of {population} at the census of {census}.",
                "The town is best known for its {industry} and for its {landmark}.",
                "{name} lies {dist} kilometres {direction} of {neighbour}.",
            ),
        ),
        (
            "History",
            (
                "{name} was founded in {founded} by {founder}, a {founder_role} from {neighbour}.",
                "{founder} chose the site because the {river} could be crossed there on foot.",
                "The {landmark} of {name} was built in {built}.",
                "In the {century} century the {industry} made {name} one of the richest towns in {province}.",
                "A great fire destroyed much of {name} in {fire}, but the {landmark} survived.",
                "The railway reached {name} in {railway}, linking the town with {neighbour}.",
            ),
        ),
        (
            "Geography",
            (
                "{name} stands on the {bank} bank of the {river} River.",
                "The {river} is crossed in the town by {bridges} bridges.",
                "To the {direction2} of {name} lie the hills of {province}.",
                "The town has a mild climate, with cold winters and warm summers.",
                "The highest point of {name} is {height} metres above sea level.",
            ),
        ),
        (
            "Economy",
            (
                "The economy of {name} has long depended on its {industry}.",
                "About {pct} per cent of the people of {name} work in the {industry}.",
                "A market is held in the main square of {name} every {weekday}.",
                "Tourism has grown since the {landmark} was restored in {restored}.",
            ),
        ),
        (
            "Culture",
            (
                "Every {month}, {name} holds a {festival}.",
                "The {festival} of {name} draws visitors from across {province}.",
                "The {landmark} is the most visited building in {name}.",
                "The {profession} {notable} was born in {name} in {notable_born}.",
            ),
        ),
    ),
    "river": (
        (
            None,
            (
                "The {name} River is a river in the province of {province}.",
                "It is {length} kilometres long and flows from {source} into {mouth}.",
                "The towns of {town1} and {town2} lie on the banks of the {name}.",
                "Anglers know the {name} for its {fish}.",
            ),
        ),
        (
            "Course",
            (
                "The {name} rises on the slopes of {source} at a height of {height} metres.",
                "It flows {direction} through a long valley in {province}.",
                "Near {town1} the {name} is joined by the {tributary}.",
                "Below {town2} the {name} becomes wide and slow.",
                "The {name} enters {mouth} after a course of {length} kilometres.",
                "The {name} is crossed by {bridges} bridges.",
            ),
        ),
        (
            "History",
            (
                "The {name} was first mapped in {mapped} by the explorer {explorer}.",
                "{explorer} followed the {name} from {mouth} to {source}.",
                "A dam was built across the {name} near {town2} in {dam}.",
                "For centuries the {name} carried timber from {province} down to {mouth}.",
            ),
        ),
        (
            "Wildlife",
            (
                "The {name} is known for its {fish}.",
                "Anglers come to {town1} to fish for {fish} in the {name}.",
                "Otters and herons live along the banks of the {name}.",
                "The water of the {name} is cold and clear near {source}.",
            ),
        ),
    ),
    "person": (
        (
            None,
            (
                "{name} ({born} – {died}) was {a_profession} from {birthplace}.",
                "{Pro} is best known for {work}, completed in {work_year}.",
                "{Pro} won the {award} in {award_year}.",
            ),
        ),
        (
            "Early life",
            (
                "{name} was born in {birthplace} in {born}, the {ordinal} child of a {parent_job}.",
                "{Pos} father, {father}, was a {parent_job} who worked in the {industry} of {birthplace}.",
                "As a child {surname} showed a gift for {subject}.",
                "In {study_year} {pro} moved to {city} to study under {mentor}.",
            ),
        ),
        (
            "Career",
            (
                "{surname} became {a_profession} in {city} in {career_year}.",
                "{Pos} first major work, {work}, was completed in {work_year}.",
                "Critics praised {work} for its {quality}.",
                "In {award_year} {surname} won the {award}.",
                "{Pro} worked with {mentor} in {city} for {years} years.",
            ),
        ),
        (
            "Later life",
            (
                "{surname} returned to {birthplace} in {return_year}.",
                "{Pro} died in {birthplace} in {died}, at the age of {age}.",
                "{Pos} work is kept in the museum of {city}.",
                "A street in {birthplace} is named after {surname}.",
            ),
        ),
    ),
    "band": (
        (
            None,
            (
                "{name} are {a_genre} band from {hometown}, formed in {formed}.",
                "The band consists of {m1}, {m2}, {m3} and {m4}.",
                "Their debut album, {debut}, was released in {debut_year} on {label}.",
            ),
        ),
        (
            "History",
            (
                "{m1} and {m2} met at school in {hometown} and formed {name} in {formed}.",
                "{m3} joined on {instr3} in {join_year}, and {m4} on {instr4} soon after.",
                "{name} played small clubs across {province} for several years.",
                "They signed with {label} in {sign_year}.",
                "{debut} was released in {debut_year} and reached number {chart} in the charts.",
                "The single {single} became the best known song of {name}.",
                "In {tour_year} {name} toured with {other_band}.",
            ),
        ),
        (
            "Musical style",
            (
                "{name} play {genre} music with influences from {genre2}.",
                "{m1} writes most of the songs of {name} and sings lead vocals.",
                "Critics have compared {name} to {other_band}.",
                "Their songs are often about {theme}.",
            ),
        ),
    ),
    "film": (
        (
            None,
            (
                "{name} is a {year} {film_genre} film directed by {director}.",
                "It stars {star1} and {star2}, and runs for {runtime} minutes.",
                "On its release, critics {verdict} the film.",
            ),
        ),
        (
            "Plot",
            (
                "{star1} plays {a_profession} who returns to {place} after many years.",
                "There {star_pro} meets {a_profession2}, played by {star2}.",
                "The story is set in {place} in the {century} century.",
                "Their friendship changes both of their lives.",
            ),
        ),
        (
            "Production",
            (
                "Filming took place in {place} in {month} {shoot_year}.",
                "{director} wrote the screenplay with {writer}.",
                "The music was composed by {composer}.",
                "The soundtrack was released on {label}.",
            ),
        ),
        (
            "Reception",
            (
                "{critic} of the {paper} wrote that {rev1}.",
                "{critic} called it {rev2}.",
                "{filler}, {rev3}.",
                "{critic2} agreed that although {rev4}, {rev5}.",
                "The film earned {gross} million at the box office.",
            ),
        ),
    ),
}
_WIKI_KINDS = ("town", "river", "person", "band", "film")
#: Articles per split; sized for ~520k characters of training text.
WIKITEXT_ARTICLES = {"train": 600, "validation": 60, "test": 60}


def _wikify(text: str) -> str:
    """Tokenise prose the way wikitext does: ``12 @,@ 400``, ``north @-@ east``, `` , ``."""
    text = re.sub(r"(?<=\d),(?=\d)", " @,@ ", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", " @.@ ", text)
    text = re.sub(r"(?<=\w)-(?=\w)", " @-@ ", text)
    text = re.sub(r"(?<!@)([,.;:()])(?!@)", r" \1 ", text)
    return " ".join(text.split())


def _wiki_article(entity: dict, rng: random.Random) -> list[str]:
    """Lines of one article: heading, lead paragraph, then a few sections."""
    lines = ["", f" = {entity['title']} = \n", ""]
    sections = _WIKI_SECTIONS[entity["kind"]]
    lead, body = sections[0], list(sections[1:])
    chosen = [lead] + [body[i] for i in sorted(rng.sample(range(len(body)), rng.randint(2, len(body))))]
    for heading, templates in chosen:
        if heading is not None:
            lines += ["", f" = = {heading} = = \n", ""]
        k = len(templates) if heading is None else rng.randint(3, len(templates))
        picked = [templates[i] for i in sorted(rng.sample(range(len(templates)), k))]
        # long sections are split into two paragraphs, like real articles
        cut = rng.randint(2, k - 2) if k >= 5 and rng.random() < 0.5 else k
        for chunk in (picked[:cut], picked[cut:]):
            if chunk:
                body_text = " ".join(_wikify(t.format(**entity)) for t in chunk)
                lines.append(f" {body_text} \n")
    return lines


def _build_wikitext(folder: Path) -> None:
    """Articles about distinct entities; each split is one flat list of lines."""
    rng = _rng("wikitext")
    names = _Names(rng)
    splits = {}
    for split, n_articles in WIKITEXT_ARTICLES.items():
        lines: list[str] = []
        for i in range(n_articles):
            kind = _WIKI_KINDS[i] if i < len(_WIKI_KINDS) else rng.choice(_WIKI_KINDS)
            lines += _wiki_article(_entity(kind, names), rng)
        splits[split] = {"text": lines}
    _write_corpus(folder, "wikitext", splits, {"text": "string"})


# --------------------------------------------------------------------------------------
# (b) GLUE sst2
# --------------------------------------------------------------------------------------

SST2_SIZES = {"train": 4000, "validation": 500, "test": 500}


def _sst2_subject(r: random.Random) -> str:
    """A neutral noun phrase: 'the film', "varga 's script", ... ("the" weighted double)."""
    noun = r.choice(FILM_NOUNS)
    return r.choice(
        (
            f"the {noun}",
            f"this {noun}",
            f"its {noun}",
            f"the {noun}",
            f"{r.choice(DIRECTORS)} 's {noun}",
            f"the director 's {noun}",
        )
    )


def _sst2_adj(r: random.Random, pos: bool) -> str:
    """An adjective of polarity ``pos``, sometimes with an intensifier."""
    adj = r.choice(POS_ADJS if pos else NEG_ADJS)
    return f"{r.choice(INTENSIFIERS)} {adj}" if r.random() < 0.35 else adj


def _sst2_np(r: random.Random, pos: bool) -> str:
    """'a gripping , funny film' / 'an utterly tedious thriller'."""
    lex = POS_ADJS if pos else NEG_ADJS
    adjs = [_sst2_adj(r, pos)]
    if r.random() < 0.4:
        adjs.append(r.choice(lex))
        adjs = [adjs[0] + r.choice((" , ", " and ")) + adjs[1]]
    return _a(f"{adjs[0]} {r.choice(FILM_NOUNS)}")


def _sst2_clause(r: random.Random, pos: bool) -> str:
    """A clause with polarity ``pos``: plain, negated, verbal or idiomatic."""
    form = r.random()
    subj = _sst2_subject(r)
    if form < 0.35:
        return f"{subj} is {_sst2_adj(r, pos)}"
    if form < 0.55:  # negation flips the adjective's polarity
        return f"{subj} {r.choice(NEGATORS)} {r.choice(NEG_ADJS if pos else POS_ADJS)}"
    if form < 0.7:
        return f"{subj} {r.choice(POS_VERBS if pos else NEG_VERBS)[1]}"
    if form < 0.85:  # negated verb: "does n't work" is negative, "never disappoints" positive
        base, third = r.choice(NEG_VERBS if pos else POS_VERBS)
        third_form = f"{subj} does not {base}" if pos else f"{subj} fails to {base}"
        return r.choice((f"{subj} does n't {base}", f"{subj} never {third}", third_form))
    return f"{subj} {r.choice(POS_IDIOMS if pos else NEG_IDIOMS)}"


def _sst2_sentence(r: random.Random, pos: bool) -> str:
    """A review sentence (or phrase) whose sentiment is ``pos`` by construction."""
    form = r.random()
    if form < 0.22:  # fragment, as SST-2 contains phrases
        s = _sst2_np(r, pos) + (" ." if r.random() < 0.5 else "")
    elif form < 0.6:
        s = _sst2_clause(r, pos) + " ."
    elif form < 0.74:  # contrast: the main clause decides, not the conceded one
        a, b = _sst2_clause(r, not pos), _sst2_clause(r, pos)
        s = r.choice((f"{a} , but {b} .", f"although {a} , {b} .", f"{b} , even if {a} ."))
    elif form < 0.87:
        s = f"{r.choice(FILLERS)} , {_sst2_clause(r, pos)} ."
    elif form < 0.95:
        s = f"{_sst2_clause(r, pos)} -- {_sst2_np(r, pos)} ."
    else:
        s = f"{_sst2_np(r, pos)} that {r.choice(POS_VERBS if pos else NEG_VERBS)[1]} ."
    return s + " "  # GLUE's SST-2 sentences end with a space


def _build_sst2(folder: Path) -> None:
    """~55 % positive; the test split is unlabeled (-1) exactly like GLUE."""
    rng = _rng("sst2")
    seen: set[str] = set()  # membership only: no duplicates across or within splits
    splits: dict[str, dict[str, list]] = {}
    for split, n in SST2_SIZES.items():
        sentences: list[str] = []
        labels: list[int] = []
        while len(sentences) < n:
            pos = rng.random() < 0.55
            s = _sst2_sentence(rng, pos)
            if s in seen:
                continue
            seen.add(s)
            sentences.append(s)
            labels.append(int(pos) if split != "test" else -1)
        splits[split] = {"sentence": sentences, "label": labels, "idx": list(range(n))}
    _write_corpus(folder, "sst2", splits, {"sentence": "string", "label": "int64", "idx": "int32"})


# --------------------------------------------------------------------------------------
# (c) rajpurkar/squad_v2
# --------------------------------------------------------------------------------------

#: kind -> fact sentences as (fields stated, templates).  The first entry is the lead
#: sentence (always used); each field is stated at most once per context.
_SQUAD_FACTS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "town": (
        (("province",), ("{name} is a town in the province of {province}.", "{name} is a small town in {province}.")),
        (
            ("founded", "founder"),
            ("It was founded in {founded} by {founder}.", "{founder} founded {name} in {founded}."),
        ),
        (("founded",), ("The town was founded in {founded}.",)),
        (("founder",), ("It was founded by {founder}, a {founder_role}.",)),
        (("industry",), ("The town is known for its {industry}.", "{name} is famous for its {industry}.")),
        (("population",), ("In {census} it had a population of {population}.",)),
        (("river",), ("{name} lies on the {river}.", "The {river} flows through the town.")),
        (("landmark",), ("Its best known building is the {landmark}.", "The {landmark} was built in {built}.")),
    ),
    "person": (
        (("profession", "birthplace"), ("{name} was a {profession} born in {birthplace}.",)),
        (("profession",), ("{name} was a {profession}.", "{name} worked as a {profession}.")),
        (("born", "birthplace"), ("{Pro} was born in {birthplace} in {born}.",)),
        (("born",), ("{Pro} was born in {born}.",)),
        (("work",), ("{Pro} is best known for {work}.", "{Pos} best known work is {work}.")),
        (("award",), ("In {award_year}, {pro} won the {award}.",)),
        (("mentor",), ("{Pro} studied under {mentor} in {city}.",)),
        (("died",), ("{Pro} died in {city} in {died}.", "{Pro} died in {died}.")),
    ),
    "river": (
        (
            ("province",),
            (
                "The {name} River is a river in the province of {province}.",
                "The {name} River flows through the province of {province}.",
            ),
        ),
        (("length",), ("It is {length} long.", "The river is {length} long.")),
        (("source", "mouth"), ("It flows from {source} into {mouth}.",)),
        (("source",), ("The river rises on {source}.",)),
        (("mouth",), ("It empties into {mouth}.",)),
        (("tributary",), ("Near {town2}, it is joined by the {tributary}.",)),
        (("town1",), ("The town of {town1} lies on its banks.",)),
        (("fish",), ("The {name} is known for its {fish}.",)),
    ),
    "band": (
        (("genre", "hometown"), ("{name} are a {genre} band from {hometown}.",)),
        (("genre",), ("{name} are a {genre} band.",)),
        (("formed", "hometown"), ("The band was formed in {hometown} in {formed}.",)),
        (("formed",), ("The band was formed in {formed}.",)),
        (("hometown",), ("They come from {hometown}.",)),
        (("singer",), ("Their lead singer is {singer}.", "{singer} sings lead vocals.")),
        (("debut", "label"), ("Their debut album, {debut}, was released on {label}.",)),
        (("debut",), ("Their debut album was {debut}.",)),
        (("label",), ("They are signed to {label}.",)),
    ),
}
#: kind -> one sentence stating one fact about a second entity of the same kind (its
#: fields are prefixed ``o_``).  Questions about that entity, or about the main entity's
#: matching fact, make the plausible-but-unanswerable questions of SQuAD 2.0.
_SQUAD_DISTRACTORS: dict[str, tuple[tuple[str, str], ...]] = {
    "town": (
        ("founded", "The nearby town of {o_name} was founded in {o_founded}."),
        ("industry", "The nearby town of {o_name} is known for its {o_industry}."),
        ("founder", "The nearby town of {o_name} was founded by {o_founder}."),
        ("river", "The nearby town of {o_name} lies on the {o_river}."),
    ),
    "person": (
        ("birthplace", "{Pro} was a friend of {o_name}, who was born in {o_birthplace}."),
        ("profession", "{Pro} often worked with {o_name}, a {o_profession}."),
        ("died", "{Pro} outlived {o_name}, who died in {o_died}."),
    ),
    "river": (
        ("fish", "The nearby {o_name} River is known for its {o_fish}."),
        ("source", "The nearby {o_name} River rises on {o_source}."),
        ("length", "The nearby {o_name} River is {o_length} long."),
    ),
    "band": (
        ("genre", "They often toured with {o_name}, a {o_genre} band."),
        ("formed", "They often toured with {o_name}, who were formed in {o_formed}."),
        ("singer", "They often toured with {o_name}, whose singer is {o_singer}."),
    ),
}
_SQUAD_QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "town": {
        "province": ("In which province is {name}?", "{name} is in what province?"),
        "founded": ("When was {name} founded?", "In what year was {name} founded?"),
        "founder": ("Who founded {name}?",),
        "industry": ("What is {name} known for?", "What is {name} famous for?"),
        "population": ("What was the population of {name}?", "How many people lived in {name}?"),
        "river": ("Which river flows through {name}?", "On what river does {name} lie?"),
        "landmark": ("What is the best known building in {name}?",),
    },
    "person": {
        "profession": ("What was {name}'s profession?", "What did {name} work as?"),
        "birthplace": ("Where was {name} born?",),
        "born": ("When was {name} born?", "In what year was {name} born?"),
        "work": ("What is {name} best known for?",),
        "award": ("What prize did {name} win?", "Which award did {name} receive?"),
        "mentor": ("Who did {name} study under?", "Who taught {name}?"),
        "died": ("When did {name} die?", "In what year did {name} die?"),
    },
    "river": {
        "province": ("In which province is the {name} River?",),
        "length": ("How long is the {name} River?",),
        "source": ("Where does the {name} River rise?",),
        "mouth": ("Into what does the {name} River flow?",),
        "tributary": ("Which river joins the {name} River?",),
        "town1": ("Which town lies on the {name} River?",),
        "fish": ("What fish is the {name} River known for?",),
    },
    "band": {
        "formed": ("When was {name} formed?", "In what year did {name} form?"),
        "hometown": ("Where are {name} from?", "What town do {name} come from?"),
        "genre": ("What kind of music do {name} play?", "What genre are {name}?"),
        "singer": ("Who is the lead singer of {name}?",),
        "debut": ("What was the debut album of {name}?",),
        "label": ("What record label are {name} signed to?",),
    },
}
_PERSON_FIELDS = ("founder", "mentor", "singer")
SQUAD_SIZES = {"train": 3000, "validation": 400}
_UNANSWERABLE_P = 0.4  # steered target for the no-answer share (lands near 0.37)
_DISTRACTOR_P = 0.5  # contexts that also state a fact about a second entity


def _squad_values(e: dict) -> dict:
    """Surface strings used by the QA templates (e.g. ``"Aren River"``, ``"212 kilometres"``)."""
    v = dict(e)
    if e["kind"] == "town":
        v["river"] = f"{e['river']} River"
    elif e["kind"] == "river":
        v["length"] = f"{e['length']} kilometres"
    elif e["kind"] == "band":
        v["singer"] = e["m1"]
    return {k: str(x) for k, x in v.items()}


def _squad_golds(context: str, span: tuple[int, int], field: str, r: random.Random) -> list[tuple[str, int]]:
    """1-3 gold answers as SQuAD dev has them: the span, plus a shorter or longer variant."""
    s, e = span
    text = context[s:e]
    alts: list[tuple[str, int]] = []
    prev = context[:s].rsplit(" ", 2)
    if len(prev) >= 2 and prev[-2] in ("in", "the", "its", "by", "on", "into"):
        alts.append((prev[-2] + " " + text, s - len(prev[-2]) - 1))
    if field in _PERSON_FIELDS or text.endswith((" River", " kilometres")):
        head, _, last = text.rpartition(" ")
        if field in _PERSON_FIELDS:
            alts.append((last, s + len(head) + 1))
        else:
            alts.append((head, s))
    golds = [(text, s)] + r.sample(alts, r.randint(0, len(alts)))
    for t, st in golds:
        assert context[st : st + len(t)] == t, (context, t, st)
    return golds


def _squad_paragraph(kind: str, names: _Names, r: random.Random) -> tuple[str, str, list, list]:
    """One context with its candidate questions, as ``(title, context, answerable,
    unanswerable)``; each candidate is ``(question, field, (start, end) or None)``."""
    main = _entity(kind, names)
    other = _entity(kind, names, unique=False)
    while other["name"] == main["name"]:
        other = _entity(kind, names, unique=False)
    mv, ov = _squad_values(main), _squad_values(other)
    facts = _SQUAD_FACTS[kind]
    order = [facts[0]] + [facts[i] for i in sorted(r.sample(range(1, len(facts)), len(facts) - 1))]
    stated: dict[str, tuple[int, int]] = {}
    sentences: list[str] = []
    budget = r.randint(2, 4)  # facts beyond the lead sentence: leave some unstated
    for fields, templates in order:
        if any(f in stated for f in fields) or (sentences and budget == 0):
            continue
        budget -= bool(sentences)
        sentences.append(r.choice(templates))
        stated.update({f: (0, 0) for f in fields})
    other_stated: dict[str, tuple[int, int]] = {}
    if r.random() < _DISTRACTOR_P:
        field, template = r.choice(_SQUAD_DISTRACTORS[kind])
        # never right before a pronoun sentence, so "it" / "they" stay unambiguous
        slots = [i for i in range(1, len(sentences) + 1) if i == len(sentences) or sentences[i].startswith("{name}")]
        sentences.insert(r.choice(slots), template)
        other_stated[field] = (0, 0)
    # render, recording the character offsets of every stated field
    values = dict(mv, **{"o_" + k: x for k, x in ov.items()})
    context = ""
    for template in sentences:
        text, spans = _render(template, values)
        for f, (a, b) in spans.items():
            if f.startswith("o_") and f[2:] in other_stated:
                other_stated[f[2:]] = (len(context) + a, len(context) + b)
            elif f in stated and stated[f] == (0, 0):
                stated[f] = (len(context) + a, len(context) + b)
        context += text + " "
    context = context.rstrip()
    assert (0, 0) not in stated.values() and (0, 0) not in other_stated.values()
    questions = _SQUAD_QUESTIONS[kind]

    def ask(ent: dict, field: str, span):
        return r.choice(questions[field]).format(name=ent["name"]), field, span

    answerable = [ask(mv, f, stated[f]) for f in questions if f in stated]
    answerable += [ask(ov, f, sp) for f, sp in other_stated.items()]
    unanswerable = [ask(mv, f, None) for f in questions if f not in stated]
    if other_stated:  # ask about the other entity what is stated only for the main one
        unanswerable += [ask(ov, f, None) for f in questions if f not in other_stated and f in stated]
    r.shuffle(answerable)
    r.shuffle(unanswerable)
    return mv["title"].replace(" ", "_"), context, answerable, unanswerable


def _build_squad(folder: Path) -> None:
    """Train has one answer per answerable question, validation 1-3 (like SQuAD dev)."""
    rng = _rng("squad_v2")
    names = _Names(rng)
    kinds = tuple(_SQUAD_FACTS)
    splits = {}
    for split, n in SQUAD_SIZES.items():
        cols: dict[str, list] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
        n_unanswerable = 0
        while len(cols["id"]) < n:
            title, context, answerable, unanswerable = _squad_paragraph(rng.choice(kinds), names, rng)
            assert len(context.split()) < 120, context
            for _ in range(min(rng.randint(4, 6), n - len(cols["id"]))):
                # steer the running no-answer fraction towards _UNANSWERABLE_P
                frac = n_unanswerable / max(1, len(cols["id"]))
                p = min(0.9, max(0.1, _UNANSWERABLE_P + 2 * (_UNANSWERABLE_P - frac)))
                pool = unanswerable if unanswerable and rng.random() < p else answerable
                if not pool:
                    break
                question, field, span = pool.pop()
                if span is None:
                    golds = []
                    n_unanswerable += 1
                elif split == "train":
                    golds = [(context[span[0] : span[1]], span[0])]
                else:
                    golds = _squad_golds(context, span, field, rng)
                for t, st in golds:
                    assert context[st : st + len(t)] == t
                digest = hashlib.sha1(f"squad_v2/{split}/{len(cols['id'])}".encode())
                cols["id"].append(digest.hexdigest()[:24])
                cols["title"].append(title)
                cols["context"].append(context)
                cols["question"].append(question)
                cols["answers"].append({"text": [t for t, _ in golds], "answer_start": [st for _, st in golds]})
        frac = n_unanswerable / n
        assert 1 / 3 <= frac <= 1 / 2, f"unanswerable fraction {frac:.3f} out of range"
        splits[split] = cols
    _write_corpus(
        folder,
        "squad_v2",
        splits,
        {"id": "string", "title": "string", "context": "string", "question": "string", "answers": "answers"},
    )


# --------------------------------------------------------------------------------------
# Writing and the public API
# --------------------------------------------------------------------------------------


def _arrow_type(name: str):
    import pyarrow as pa

    if name == "answers":
        return pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])
    return {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32()}[name]


def _write_corpus(folder: Path, name: str, splits: dict[str, dict[str, list]], schema: dict[str, str]) -> None:
    """Write ``<config>/<split>-00000-of-00001.parquet`` files and the Hub-style README."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = _CONFIGS[name]
    arrow_schema = pa.schema([(col, _arrow_type(t)) for col, t in schema.items()])
    (folder / config).mkdir(parents=True, exist_ok=True)
    yaml = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    rows = []
    for split, columns in splits.items():
        rel = f"{config}/{split}-00000-of-00001.parquet"
        table = pa.Table.from_pydict(columns, schema=arrow_schema)
        pq.write_table(table, folder / rel)
        yaml += [f"  - split: {split}", f"    path: {rel}"]
        rows.append(f"{split}: {table.num_rows} rows")
    yaml += [
        "---",
        "",
        f"# Synthetic {config} (lmconsole embedded corpus)",
        "",
        f"This is a synthetic corpus generated by lmconsole (engine/data/embedded.py), "
        f"{name} version {_VERSIONS[name]}, seed {_SEED}. All text comes from templates "
        f"and invented vocabularies; the layout mirrors the Hugging Face Hub dataset so "
        f'`datasets.load_dataset(folder, "{config}", split=...)` works offline.',
        "",
        "Rows: " + ", ".join(rows) + ".",
        "",
    ]
    (folder / "README.md").write_text("\n".join(yaml), encoding="utf-8")


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "wikitext": _build_wikitext,
    "sst2": _build_sst2,
    "squad_v2": _build_squad,
}


def _check_name(name: str) -> None:
    if name not in EMBEDDED_NAMES:
        raise ValueError(f"unknown embedded dataset {name!r}; valid names: " + ", ".join(EMBEDDED_NAMES))


def embedded_root() -> Path:
    """``$LMCONSOLE_CACHE/embedded`` (default ``~/.cache/lmconsole/embedded``), read now."""
    base = os.environ.get("LMCONSOLE_CACHE") or str(Path.home() / ".cache" / "lmconsole")
    return Path(base).expanduser() / "embedded"


def embedded_config(name: str) -> str:
    """The config name to pass to ``load_dataset`` for an embedded corpus."""
    _check_name(name)
    return _CONFIGS[name]


def ensure_embedded(name: str, root: Path | None = None) -> Path:
    """Generate corpus ``name`` under ``root`` once and return its folder.

    The folder is ``root / f"{name}-v{version}"``.  It is built in a temporary sibling
    directory and renamed into place, so a folder that exists is always complete and
    concurrent callers (threads or processes) are safe: the loser of the race discards
    its copy.
    """
    _check_name(name)
    root = Path(root) if root is not None else embedded_root()
    final = root / f"{name}-v{_VERSIONS[name]}"
    from engine.data.cache import check, remove, seal

    seal_file = root / f".{final.name}.seal.json"  # beside the corpus: its file list stays as published
    if (final / "README.md").is_file():
        if not check(final, at=seal_file):
            return final
        remove(final)  # damaged since it was built: build it again
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache may be shared
        _BUILDERS[name](tmp)
        try:
            os.rename(tmp, final)
            seal(final, to=seal_file)
        except OSError:
            if not (final / "README.md").is_file():  # not a lost race: a real problem
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


if __name__ == "__main__":  # python -m engine.data.embedded [root]
    import sys

    for _name in EMBEDDED_NAMES:
        print(ensure_embedded(_name, Path(sys.argv[1]) if len(sys.argv) > 1 else None))
