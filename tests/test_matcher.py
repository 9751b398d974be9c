"""The offline matcher: question text in, ranked catalog items out.

The labelled questions in ``data/questions.jsonl`` are split in two. The matcher
and the synonyms were tuned on the "tune" half only; accuracy is reported and
enforced on the "holdout" half, which nobody tuned on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from recycle_workers.catalog import default_catalog
from recycle_workers.matcher import (
    AMBIGUITY_MARGIN,
    Candidate,
    is_ambiguous,
    match,
    normalise,
)

QUESTIONS_PATH = Path(__file__).parent / "data" / "questions.jsonl"
QUESTIONS = [
    json.loads(line)
    for line in QUESTIONS_PATH.read_text("utf-8").splitlines()
    if line.strip()
]


@pytest.fixture(scope="module")
def catalog():
    return default_catalog()


def _top(text: str, catalog) -> str | None:
    candidates = match(text, catalog)
    return candidates[0].item.item_id if candidates else None


def _stream_accuracy(split: str, catalog) -> tuple[float, int]:
    questions = [question for question in QUESTIONS if question["split"] == split]
    right = 0
    for question in questions:
        candidates = match(question["question"], catalog)
        if candidates and candidates[0].item.stream == question["expected_stream"]:
            right += 1
    return right / len(questions), len(questions)


class TestQuestionSet:
    def test_should_hold_enough_questions_in_both_languages(self):
        korean = [
            question
            for question in QUESTIONS
            if any("\uac00" <= char <= "\ud7a3" for char in question["question"])
        ]

        assert len(QUESTIONS) >= 260
        assert 0.3 < len(korean) / len(QUESTIONS) < 0.8

    def test_should_split_about_half_and_half(self):
        holdout = sum(question["split"] == "holdout" for question in QUESTIONS)

        assert {question["split"] for question in QUESTIONS} == {"tune", "holdout"}
        assert 0.4 < holdout / len(QUESTIONS) < 0.6

    def test_should_label_with_existing_items_and_their_streams(self, catalog):
        wrong = []
        for question in QUESTIONS:
            item_id = question["expected_item"]
            if item_id is None:
                continue
            item = catalog.get(item_id)
            if item is None or item.stream != question["expected_stream"]:
                wrong.append(question["question"])

        assert wrong == []

    def test_should_not_copy_holdout_questions_into_synonyms(self, catalog):
        # A two-word question such as "peach pits" is simply a name and may equal
        # a synonym; a sentence appearing in a synonym can only have been copied.
        names = [
            normalise(name)
            for item in catalog.items.values()
            for name in (*item.synonyms_ko, *item.synonyms_en)
        ]
        sentences = [
            question["question"]
            for question in QUESTIONS
            if question["split"] == "holdout" and len(question["question"].split()) >= 4
        ]
        copied = [
            sentence
            for sentence in sentences
            if any(normalise(sentence) in name for name in names)
        ]

        assert copied == []


class TestAccuracy:
    def test_should_find_the_stream_of_95_percent_of_holdout(self, catalog, capsys):
        accuracy, count = _stream_accuracy("holdout", catalog)

        with capsys.disabled():
            print(f"\nmatcher holdout top-1 stream accuracy: {accuracy:.1%} of {count}")
        assert accuracy >= 0.95

    def test_should_report_accuracy_on_the_tune_half(self, catalog, capsys):
        accuracy, count = _stream_accuracy("tune", catalog)

        with capsys.disabled():
            print(f"\nmatcher tune top-1 stream accuracy: {accuracy:.1%} of {count}")
        assert accuracy >= 0.95

    def test_should_match_a_question_in_well_under_5_ms(self, catalog, capsys):
        match("warm the index", catalog)
        started = time.perf_counter()
        for question in QUESTIONS:
            match(question["question"], catalog)
        per_question_ms = (time.perf_counter() - started) * 1000 / len(QUESTIONS)

        with capsys.disabled():
            print(f"\nmatcher time per question: {per_question_ms:.3f} ms")
        assert per_question_ms < 5


class TestNormalise:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("생수 병", "생수병"),
            ("  PET 병! ", "pet병"),
            ("Ｐｅｔ　Bottles", "petbottle"),
            ("batteries", "battery"),
            ("boxes", "box"),
            ("glass", "glass"),
            ("cans", "cans"),
        ],
    )
    def test_should_fold_case_width_spacing_and_plurals(self, text, expected):
        assert normalise(text) == expected


class TestMatch:
    @pytest.mark.parametrize(
        "ending",
        ["", "을", "이", "은", "도", "요", "이요", "는요", "이랑", "에서", "으로"],
    )
    def test_should_ignore_korean_particles(self, catalog, ending):
        assert _top(f"생수병{ending} 어떻게 버려요", catalog) == "clear_pet_bottle"

    @pytest.mark.parametrize(
        "text", ["택배상자", "택배 상자", "택 배상자", "택배  상자를"]
    )
    def test_should_ignore_spacing(self, catalog, text):
        assert _top(text, catalog) == "cardboard_box"

    @pytest.mark.parametrize(
        ("text", "item_id"),
        [
            ("PET병 버려요", "clear_pet_bottle"),
            ("LED등 어디", "led_lamp"),
            ("A4용지 이면지", "office_paper"),
            ("kf94 마스크", "mask"),
        ],
    )
    def test_should_match_mixed_scripts(self, catalog, text, item_id):
        assert _top(text, catalog) == item_id

    @pytest.mark.parametrize(
        ("text", "item_id"),
        [
            ("BATTERIES", "dry_cell_battery"),
            ("Wine Glasses", "drinking_glass"),
            ("old Cardboard Boxes", "cardboard_box"),
        ],
    )
    def test_should_match_english_plurals_and_case(self, catalog, text, item_id):
        assert _top(text, catalog) == item_id

    def test_should_prefer_the_longer_name(self, catalog):
        assert _top("컵라면 용기", catalog) == "instant_noodle_cup"
        assert _top("플라스틱 계란판", catalog) == "plastic_egg_tray"

    def test_should_not_count_a_name_that_is_only_the_bin(self, catalog):
        assert _top("닭뼈 음식물 쓰레기에 버려요?", catalog) == "animal_bones"
        assert _top("eggshells in food waste?", catalog) == "eggshell"

    def test_should_not_join_words_across_a_particle(self, catalog):
        ids = [
            candidate.item.item_id
            for candidate in match("고양이가 방에 토했어요", catalog)
        ]

        assert "handbag" not in ids

    def test_should_match_latin_names_as_whole_words(self, catalog):
        assert match("Can I cancel this?", catalog) == []

    def test_should_rank_best_first_with_scores_between_0_and_1(self, catalog):
        candidates = match("우유팩이랑 종이컵 같이 버려요?", catalog, limit=3)
        scores = [candidate.score for candidate in candidates]

        assert candidates and all(isinstance(c, Candidate) for c in candidates)
        assert scores == sorted(scores, reverse=True)
        assert all(0 < score <= 1 for score in scores)
        assert len(match("우유팩 종이컵 페트병 캔", catalog, limit=2)) == 2

    def test_should_find_a_one_syllable_name_only_at_a_word_start(self, catalog):
        found = [c.item.item_id for c in match("게 껍데기는요?", catalog)]

        assert match("이거 어떻게 버려요?", catalog) == []
        assert found[:1] == ["shellfish_shells"]

    @pytest.mark.parametrize("text", ["", "   ", "?!", "안녕하세요"])
    def test_should_return_nothing_for_text_without_an_item(self, catalog, text):
        assert match(text, catalog) == []


class TestAmbiguity:
    def test_should_flag_a_name_two_streams_share(self, catalog):
        candidates = match("음료수병 어떻게 버려요?", catalog)

        assert is_ambiguous(candidates)
        assert {c.item.stream for c in candidates[:2]} == {"clear_pet", "glass"}

    def test_should_flag_two_items_named_equally_strongly(self, catalog):
        assert is_ambiguous(match("건전지랑 형광등", catalog))

    def test_should_not_flag_a_clear_winner(self, catalog):
        assert not is_ambiguous(match("투명 페트병 라벨 떼나요?", catalog))
        assert not is_ambiguous(match("보조배터리 버리는 곳, 건전지함?", catalog))

    def test_should_not_flag_close_candidates_of_one_stream(self, catalog):
        item = catalog.get("milk_carton")
        same_stream = catalog.get("sterilised_carton")

        assert not is_ambiguous([Candidate(item, 1.0), Candidate(same_stream, 1.0)])

    def test_should_use_the_margin(self, catalog):
        first, other = catalog.get("milk_carton"), catalog.get("newspaper")

        close = 1.0 - AMBIGUITY_MARGIN / 2
        far = 1.0 - 2 * AMBIGUITY_MARGIN

        assert is_ambiguous([Candidate(first, 1.0), Candidate(other, close)])
        assert not is_ambiguous([Candidate(first, 1.0), Candidate(other, far)])
        assert not is_ambiguous([Candidate(first, 1.0)])
