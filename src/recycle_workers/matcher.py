"""Find catalog items from what a person wrote.

This is the offline path of the analyzer: with no model to look at the photo,
the question text is matched against each item's names and synonyms. Matching
works on a folded form of the text with case, width, spacing and punctuation
removed and English plurals reduced, so "생수 병을", "생수병" and "Water Bottles"
all find their item. Korean particles need no stripping: a name is looked for
anywhere in the folded text, and a few rules stop it being found across a word
boundary where a particle would have joined two unrelated words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from recycle_workers.catalog import Catalog, Item


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item the text may be about, with a score between 0 and 1."""

    item: Item
    score: float


@dataclass(frozen=True, slots=True)
class _Needle:
    """One folded name of one item, ready to be searched for."""

    text: str
    item_id: str
    weight: float
    starts_latin: bool
    ends_latin: bool


@dataclass(frozen=True, slots=True)
class _Index:
    """Every folded name in a catalog, and the folded words that name a bin."""

    needles: tuple[_Needle, ...]
    bin_words: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Folded:
    """Folded text plus the offsets where words began before spaces were removed."""

    text: str
    word_starts: frozenset[int]
    word_ends: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Hit:
    item_id: str
    start: int
    end: int
    weight: float


def normalise(text: str) -> str:
    """Fold case, width, spacing and English plurals: '생수 병' equals '생수병'."""
    return _fold(text).text


def match(text: str, catalog: Catalog, *, limit: int = 5) -> list[Candidate]:
    """Rank the catalog's items by how well their names occur in ``text``.

    A longer name outweighs a shorter one, and a name found inside a longer
    name of another item does not count ("컵" inside "컵라면 용기"). Scores
    are half absolute (a four-syllable or eight-letter name is a full match)
    and half relative to the best candidate, so the best is never below 0.5.
    """
    folded = _fold(text)
    if not folded.text:
        return []

    hits = _kept_hits(_find_hits(folded, _index(catalog)))
    if not hits:
        return []

    raw_by_item = _raw_scores(hits)
    best_raw = max(raw_by_item.values())
    ranked = sorted(raw_by_item.items(), key=lambda pair: (-pair[1], pair[0]))
    return [
        Candidate(
            item=catalog.items[item_id],
            score=round(
                0.5 * min(1.0, raw / FULL_MATCH_WEIGHT) + 0.5 * raw / best_raw, 3
            ),
        )
        for item_id, raw in ranked[:limit]
    ]


def is_ambiguous(candidates: list[Candidate]) -> bool:
    """True when the two best candidates are close and belong to different streams."""
    if len(candidates) < 2:
        return False
    first, second = candidates[0], candidates[1]
    return (
        first.item.stream != second.item.stream
        and first.score - second.score < AMBIGUITY_MARGIN
    )


def _fold(text: str) -> _Folded:
    """Fold ``text`` and remember where each word started and ended."""
    lowered = unicodedata.normalize("NFKC", text).casefold()
    pieces: list[str] = []
    word_starts: set[int] = set()
    word_ends: set[int] = set()
    length = 0
    for word in _NOT_WORD.split(lowered):
        if not word:
            continue
        word_starts.add(length)
        for run in _SCRIPT_RUN.findall(word):
            if run.isascii() and run.isalpha():
                run = _singular(run)
            pieces.append(run)
            length += len(run)
        word_ends.add(length)
    return _Folded("".join(pieces), frozenset(word_starts), frozenset(word_ends))


def _singular(word: str) -> str:
    """Reduce a regular English plural to its singular form."""
    if len(word) <= 3 or word in _KEEP_PLURAL:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _index(catalog: Catalog) -> _Index:
    """The catalog's folded names, built once per catalog version."""
    cached = _INDEX_CACHE.get(catalog.version)
    if cached is not None:
        return cached

    needles: dict[tuple[str, str], _Needle] = {}
    for item in catalog.items.values():
        for name in _names(item):
            folded = _fold(name).text
            if _weight(folded) < 2 or (item.item_id, folded) in needles:
                continue
            needles[(item.item_id, folded)] = _Needle(
                text=folded,
                item_id=item.item_id,
                weight=_weight(folded),
                starts_latin=_is_latin(folded[0]),
                ends_latin=_is_latin(folded[-1]),
            )
    index = _Index(needles=tuple(needles.values()), bin_words=_bin_words(catalog))
    _INDEX_CACHE.clear()
    _INDEX_CACHE[catalog.version] = index
    return index


def _names(item: Item) -> list[str]:
    """Every name of ``item``; a display name such as '헌 옷(의류)' gives two."""
    names = [*item.synonyms_ko, *item.synonyms_en]
    for display in (item.name.ko, item.name.en):
        names.extend(part for part in _NAME_PARTS.split(display) if part.strip())
    return names


def _bin_words(catalog: Catalog) -> frozenset[str]:
    """Folded words that name a bin rather than a thing: stream names and a few more."""
    words = {_fold(word).text for word in _BIN_WORDS}
    for name in catalog.streams.values():
        for display in (name.ko, name.en):
            words.update(_fold(part).text for part in _NAME_PARTS.split(display))
    words.discard("")
    return frozenset(words)


def _find_hits(folded: _Folded, index: _Index) -> list[_Hit]:
    """Every acceptable occurrence of every name.

    A name that is also a bin ("음식물 쓰레기", "paper") usually says where the
    person thinks the thing goes, not what it is, so it counts for little.
    """
    text = folded.text
    hits: list[_Hit] = []
    for needle in index.needles:
        start = text.find(needle.text)
        while start != -1:
            end = start + len(needle.text)
            if _acceptable(folded, needle, start, end):
                weight = needle.weight
                if needle.text in index.bin_words:
                    weight *= BIN_WORD_FACTOR
                hits.append(_Hit(needle.item_id, start, end, weight))
            start = text.find(needle.text, start + 1)
    return hits


def _acceptable(folded: _Folded, needle: _Needle, start: int, end: int) -> bool:
    """Whether a name found at ``start:end`` is a real occurrence.

    A Latin-script name must stand as a whole word ("can" is not in "cancel").
    A name that runs across a space must begin where a word begins, so that
    "가방" is not found in "고양이가 방에", where the particle 가 ends a word.
    """
    text = folded.text
    if needle.starts_latin and start not in folded.word_starts and start > 0:
        if _is_latin(text[start - 1]):
            return False
    if needle.ends_latin and end not in folded.word_ends and end < len(text):
        if _is_latin(text[end]):
            return False
    if len(needle.text) == 1 and start not in folded.word_starts:
        # A one-syllable name such as "게" (crab) is part of too many words
        # ("어떻게"): only a word that begins with it counts.
        return False
    crosses_word = any(start < end_of_word < end for end_of_word in folded.word_ends)
    return not crosses_word or start in folded.word_starts


def _kept_hits(hits: list[_Hit]) -> list[_Hit]:
    """Drop hits that lie inside a longer hit of another item."""
    kept: list[_Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start - h.end, h.start)):
        covered = any(
            other.item_id != hit.item_id
            and other.start <= hit.start
            and hit.end <= other.end
            and other.end - other.start > hit.end - hit.start
            for other in kept
        )
        if not covered:
            kept.append(hit)
    return kept


def _raw_scores(hits: list[_Hit]) -> dict[str, float]:
    """Each item's best hit, plus a little for each further, separate mention."""
    by_item: dict[str, list[_Hit]] = {}
    for hit in hits:
        by_item.setdefault(hit.item_id, []).append(hit)

    raw: dict[str, float] = {}
    for item_id, item_hits in by_item.items():
        item_hits.sort(key=lambda h: -h.weight)
        best = item_hits[0]
        extra = sum(
            EXTRA_MENTION_BONUS
            for other in item_hits[1:]
            if other.end <= best.start or other.start >= best.end
        )
        raw[item_id] = best.weight + min(extra, 2 * EXTRA_MENTION_BONUS)
    return raw


def _weight(folded: str) -> float:
    """How much a name says: a Hangul syllable carries about two letters' worth."""
    return float(sum(2 if _is_hangul(char) else 1 for char in folded))


def _is_latin(char: str) -> bool:
    return "a" <= char <= "z"


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_SCRIPT_RUN = re.compile(r"[a-z]+|[0-9]+|[^a-z0-9]+")
_NAME_PARTS = re.compile(r"[()·,/]")
# Plurals whose singular means something else: "can I ..." is not about cans,
# and "leftover pills" are not leftovers.
_KEEP_PLURAL = frozenset({"cans", "leftovers"})
_BIN_WORDS = (
    "음식물",
    "음식물 쓰레기",
    "음식물쓰레기통",
    "일반쓰레기",
    "일반 쓰레기",
    "쓰레기",
    "종이",
    "플라스틱",
    "비닐",
    "캔",
    "유리",
    "유리병",
    "스티로폼",
    "고철",
    "재활용",
    "food waste",
    "paper",
    "plastic",
    "glass",
    "trash",
    "rubbish",
    "garbage",
    "general waste",
    "recycling",
)
_INDEX_CACHE: dict[str, _Index] = {}

AMBIGUITY_MARGIN = 0.15
FULL_MATCH_WEIGHT = 8.0
EXTRA_MENTION_BONUS = 0.5
BIN_WORD_FACTOR = 0.1
