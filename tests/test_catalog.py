"""Rule catalog checks: valid item files, all streams covered, a content version."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from recycle_workers.catalog import CatalogError, load_catalog, load_schema
from recycle_workers.matcher import normalise

CATALOG_DIR = Path(str(resources.files("recycle_workers.catalog")))
ITEM_FILES = sorted((CATALOG_DIR / "items").glob("*.json"))
STREAMS = load_schema()["$defs"]["stream"]["enum"]

# Names that two items share on purpose. Each is a word people really use for
# both things, so the matcher should call the question ambiguous and name both.
INTENDED_OVERLAPS = {
    # A drink bottle may be clear PET or glass; only the person knows which.
    normalise("음료수병"): {"clear_pet_bottle", "glass_drink_bottle"},
}

# The items people most often put in the wrong place; the catalog must answer each.
OFTEN_WRONG = [
    "clear_pet_bottle",
    "coloured_pet_bottle",
    "milk_carton",
    "sterilised_carton",
    "receipt",
    "coated_paper",
    "paper_cup",
    "delivery_food_container",
    "instant_noodle_cup",
    "styrofoam_box",
    "ice_pack_gel",
    "ice_pack_water",
    "broken_glass",
    "mirror",
    "ceramics",
    "heat_resistant_glass",
    "soju_bottle",
    "beer_bottle",
    "butane_can",
    "spray_can",
    "dry_cell_battery",
    "power_bank",
    "fluorescent_tube",
    "led_lamp",
    "pill_medicine",
    "animal_bones",
    "shellfish_shells",
    "fruit_pits",
    "onion_skin",
    "tea_bag",
    "wet_wipes",
    "toothbrush",
    "umbrella",
    "hair_dryer",
    "refrigerator",
    "used_clothes",
    "shoes",
    "sofa",
    "wardrobe",
]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


class TestItemFiles:
    @pytest.mark.parametrize("path", ITEM_FILES, ids=lambda path: path.stem)
    def test_should_validate_against_the_schema(self, path):
        validator = jsonschema.Draft202012Validator(load_schema())
        document = json.loads(path.read_text("utf-8"))

        errors = [error.message for error in validator.iter_errors(document)]

        assert errors == []

    @pytest.mark.parametrize("path", ITEM_FILES, ids=lambda path: path.stem)
    def test_should_be_named_by_item_id(self, path):
        assert json.loads(path.read_text("utf-8"))["item_id"] == path.stem

    def test_should_have_a_schema_that_is_itself_valid(self):
        jsonschema.Draft202012Validator.check_schema(load_schema())


class TestCatalog:
    def test_should_load_at_least_150_items(self, catalog):
        assert len(catalog) >= 150
        assert len(catalog) == len(ITEM_FILES)

    def test_should_cover_every_stream(self, catalog):
        covered = {item.stream for item in catalog.items.values()}

        assert covered == set(STREAMS)

    def test_should_name_every_stream_in_both_languages(self, catalog):
        assert set(catalog.streams) == set(STREAMS)
        assert all(name.ko and name.en for name in catalog.streams.values())

    @pytest.mark.parametrize("item_id", OFTEN_WRONG)
    def test_should_include_the_items_people_get_wrong(self, catalog, item_id):
        assert catalog.get(item_id) is not None

    def test_should_give_synonyms_in_both_languages(self, catalog):
        missing = [
            item.item_id
            for item in catalog.items.values()
            if not item.synonyms_ko or not item.synonyms_en
        ]

        assert missing == []

    def test_should_send_not_accepted_items_to_another_stream(self, catalog):
        same = [
            item.item_id
            for item in catalog.items.values()
            if item.not_accepted is not None and item.not_accepted.stream == item.stream
        ]

        assert same == []

    def test_should_cite_a_source_for_every_item(self, catalog):
        assert all(item.source for item in catalog.items.values())

    def test_should_not_let_two_items_claim_one_synonym_by_accident(self, catalog):
        claimed: dict[str, set[str]] = defaultdict(set)
        for item in catalog.items.values():
            for name in (*item.synonyms_ko, *item.synonyms_en):
                claimed[normalise(name)].add(item.item_id)

        shared = {name: ids for name, ids in claimed.items() if len(ids) > 1}

        assert shared == INTENDED_OVERLAPS


class TestVersion:
    def test_should_be_stable_for_the_same_content(self, tmp_path, catalog):
        copy = tmp_path / "items"
        shutil.copytree(CATALOG_DIR / "items", copy)

        assert load_catalog(copy).version == catalog.version

    def test_should_change_when_a_rule_changes(self, tmp_path, catalog):
        copy = tmp_path / "items"
        shutil.copytree(CATALOG_DIR / "items", copy)
        path = copy / "newspaper.json"
        document = json.loads(path.read_text("utf-8"))
        document["steps"][0]["en"] += " Really."
        path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")

        assert load_catalog(copy).version != catalog.version

    def test_should_change_when_an_item_is_removed(self, tmp_path, catalog):
        copy = tmp_path / "items"
        shutil.copytree(CATALOG_DIR / "items", copy)
        (copy / "newspaper.json").unlink()

        assert load_catalog(copy).version != catalog.version

    def test_should_reject_an_item_that_breaks_the_schema(self, tmp_path):
        copy = tmp_path / "items"
        shutil.copytree(CATALOG_DIR / "items", copy)
        path = copy / "newspaper.json"
        document = json.loads(path.read_text("utf-8"))
        document["stream"] = "compost"
        path.write_text(json.dumps(document), "utf-8")

        with pytest.raises(CatalogError, match="newspaper.json"):
            load_catalog(copy)
