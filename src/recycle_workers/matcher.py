"""Find catalog items from what a person wrote.

This is the offline path of the analyzer: with no model to look at the photo,
the question text is matched against each item's names and synonyms.
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


def normalise(text: str) -> str:
    """Fold case, width and spacing so that '생수 병' and '생수병' compare equal."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NOT_WORD.sub("", folded)


def match(text: str, catalog: Catalog, *, limit: int = 5) -> list[Candidate]:
    """Rank the catalog's items by how well their names occur in ``text``.

    A name that occurs whole scores by its length relative to the longest name
    found, so "컵라면 용기" beats "용기" when both occur.
    """
    haystack = normalise(text)
    if not haystack:
        return []

    best_by_item: dict[str, int] = {}
    for item in catalog.items.values():
        for name in _names(item):
            needle = normalise(name)
            if needle and needle in haystack:
                best_by_item[item.item_id] = max(best_by_item.get(item.item_id, 0), len(needle))

    if not best_by_item:
        return []
    longest = max(best_by_item.values())
    ranked = sorted(best_by_item.items(), key=lambda pair: (-pair[1], pair[0]))
    return [
        Candidate(item=catalog.items[item_id], score=round(length / longest, 3))
        for item_id, length in ranked[:limit]
    ]


def is_ambiguous(candidates: list[Candidate]) -> bool:
    """True when the two best candidates are close and belong to different streams."""
    if len(candidates) < 2:
        return False
    first, second = candidates[0], candidates[1]
    return first.item.stream != second.item.stream and first.score - second.score < AMBIGUITY_MARGIN


def _names(item: Item) -> tuple[str, ...]:
    return (item.name.ko, item.name.en, *item.synonyms_ko, *item.synonyms_en)


_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)

AMBIGUITY_MARGIN = 0.15
