"""The rule catalog: one JSON file per item, validated against ``item.schema.json``.

The catalog is package data. :func:`load_catalog` reads every ``items/*.json``,
checks each against the schema and returns a :class:`Catalog`, whose ``version``
is a hash of the content so that cached answers never outlive a rule change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Literal

import jsonschema

Stream = Literal[
    "paper",
    "paper_pack",
    "clear_pet",
    "plastic",
    "vinyl",
    "styrofoam",
    "glass",
    "metal",
    "clothing",
    "battery",
    "lamp",
    "e_waste",
    "medicine",
    "food_waste",
    "general_waste",
    "non_combustible",
    "bulky_waste",
]
Condition = Literal[
    "lid_on",
    "not_washed",
    "contaminated",
    "heavily_contaminated",
    "label_on",
    "broken",
    "contents_left",
]


class CatalogError(Exception):
    """The catalog data is missing or does not match its schema."""


@dataclass(frozen=True, slots=True)
class Text:
    ko: str
    en: str

    def in_lang(self, lang: str) -> str:
        return self.en if lang == "en" else self.ko


@dataclass(frozen=True, slots=True)
class ConditionalStep:
    when: Condition
    text: Text


@dataclass(frozen=True, slots=True)
class NotAccepted:
    text: Text
    stream: Stream


@dataclass(frozen=True, slots=True)
class Item:
    """One kind of waste and the rules for putting it out."""

    item_id: str
    name: Text
    stream: Stream
    materials: tuple[str, ...]
    synonyms_ko: tuple[str, ...]
    synonyms_en: tuple[str, ...]
    steps: tuple[Text, ...]
    conditional_steps: tuple[ConditionalStep, ...] = ()
    not_accepted: NotAccepted | None = None
    source: str = ""


@dataclass(frozen=True)
class Catalog:
    """All items, by id, and the content hash that versions them."""

    items: dict[str, Item]
    version: str
    streams: dict[str, Text] = field(default_factory=dict)

    def get(self, item_id: str) -> Item | None:
        return self.items.get(item_id)

    def __len__(self) -> int:
        return len(self.items)


def load_schema() -> dict:
    return json.loads(_package_files().joinpath("item.schema.json").read_text("utf-8"))


def load_catalog(items_dir: Traversable | None = None) -> Catalog:
    """Read and validate every item of the packaged catalog.

    ``items_dir`` reads the item files from another folder instead (a test's
    edited copy, say); the schema and stream names still come from the package.
    Raises :class:`CatalogError` naming the first file that does not validate.
    """
    validator = jsonschema.Draft202012Validator(load_schema())
    digest = hashlib.sha256()
    items: dict[str, Item] = {}

    folder = items_dir if items_dir is not None else _package_files().joinpath("items")
    item_files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    for entry in item_files:
        raw = entry.read_bytes()
        digest.update(entry.name.encode() + b"\0" + raw)
        document = json.loads(raw)
        problem = jsonschema.exceptions.best_match(validator.iter_errors(document))
        if problem is not None:
            where = "/".join(str(part) for part in problem.absolute_path) or "(top)"
            raise CatalogError(f"catalog item {entry.name}: {where}: {problem.message}")
        if f"{document['item_id']}.json" != entry.name:
            raise CatalogError(
                f"catalog item {entry.name}: item_id {document['item_id']!r} "
                "does not match the file name"
            )
        items[document["item_id"]] = _item_from_document(document)

    if not items:
        raise CatalogError("the catalog has no items")
    streams = json.loads(_package_files().joinpath("streams.json").read_text("utf-8"))
    return Catalog(
        items=items,
        version=digest.hexdigest()[:16],
        streams={key: Text(**value) for key, value in streams.items()},
    )


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The packaged catalog, loaded once per process."""
    return load_catalog()


def _item_from_document(document: dict) -> Item:
    not_accepted = document.get("not_accepted")
    source = document["source"]
    return Item(
        item_id=document["item_id"],
        name=Text(**document["name"]),
        stream=document["stream"],
        materials=tuple(document["materials"]),
        synonyms_ko=tuple(document["synonyms"]["ko"]),
        synonyms_en=tuple(document["synonyms"]["en"]),
        steps=tuple(Text(**step) for step in document["steps"]),
        conditional_steps=tuple(
            ConditionalStep(when=step["when"], text=Text(ko=step["ko"], en=step["en"]))
            for step in document.get("conditional_steps", ())
        ),
        not_accepted=(
            NotAccepted(
                text=Text(ko=not_accepted["ko"], en=not_accepted["en"]),
                stream=not_accepted["stream"],
            )
            if not_accepted
            else None
        ),
        source=f"{source['publisher']}, {source['title']} ({source['year']})",
    )


def _package_files():
    return resources.files(__package__)
