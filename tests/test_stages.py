"""Each stage's logic, without a broker."""

import pytest

from recycle_workers import pipeline
from recycle_workers.analyzer import analyze, infer_from_text, state_from_text
from recycle_workers.catalog import Catalog, ConditionalStep, Item, NotAccepted, Text
from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.generator import compose_guidance
from recycle_workers.llm import AdapterError
from recycle_workers.models import Analysis, ItemState
from recycle_workers.retriever import retrieve

from images import photo


def make_item(item_id, stream, names, conditional=()):
    return Item(
        item_id=item_id,
        name=Text(ko=names[0], en=names[1]),
        stream=stream,
        materials=("pet",),
        synonyms_ko=(names[0],),
        synonyms_en=(names[1],),
        steps=(Text(ko="내용물을 비우세요.", en="Empty it."),),
        conditional_steps=tuple(
            ConditionalStep(when=when, text=Text(ko=f"{when} 단계", en=f"{when} step"))
            for when in conditional
        ),
        not_accepted=NotAccepted(
            Text(ko="심하면 일반쓰레기.", en="If heavily soiled, general waste."),
            "general_waste",
        ),
        source="환경부, 가이드라인 (2021)",
    )


@pytest.fixture
def tiny_catalog():
    bottle = make_item(
        "bottle",
        "clear_pet",
        ("생수병", "water bottle"),
        conditional=(
            "lid_on",
            "not_washed",
            "label_on",
            "contaminated",
            "contents_left",
        ),
    )
    receipt = make_item("receipt", "general_waste", ("영수증", "receipt"))
    paper = make_item("paper_bag", "paper", ("종이백", "paper bag"))
    paper_cup = make_item("paper_cup", "general_waste", ("종이컵", "paper cup"))
    items = {item.item_id: item for item in (bottle, receipt, paper, paper_cup)}
    streams = {
        stream: Text(ko=stream, en=stream)
        for stream in ("clear_pet", "general_waste", "paper")
    }
    return Catalog(items=items, version="test", streams=streams)


class TestAnalyzer:
    def test_should_infer_item_from_question_when_offline(self, tiny_catalog):
        analysis = analyze(
            question="이 생수병 어떻게 버려요?",
            image_jpeg=None,
            catalog=tiny_catalog,
            adapter=None,
        )

        assert analysis.item_id == "bottle"
        assert analysis.method == "text"
        assert analysis.degraded_reason == "offline"

    def test_should_say_unknown_without_a_usable_question(self, tiny_catalog):
        analysis = analyze(
            question=None, image_jpeg=b"jpeg", catalog=tiny_catalog, adapter=None
        )

        assert analysis.item_id is None
        assert analysis.method == "none"

    def test_should_fall_back_to_text_when_the_adapter_fails(self, tiny_catalog):
        class Failing:
            def analyze(self, **_):
                raise AdapterError("ai_unavailable", "429 after retries")

        analysis = analyze(
            question="water bottle",
            image_jpeg=b"x",
            catalog=tiny_catalog,
            adapter=Failing(),
        )

        assert (analysis.item_id, analysis.degraded_reason) == (
            "bottle",
            "ai_unavailable",
        )

    def test_should_name_the_runner_up_when_streams_differ_and_scores_are_close(
        self, tiny_catalog
    ):
        analysis = infer_from_text(
            "종이컵이랑 종이백", tiny_catalog, degraded_reason="offline"
        )

        assert {analysis.item_id, *analysis.alternatives} == {"paper_cup", "paper_bag"}

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "뚜껑 없고 깨끗이 씻었어요",
                {"lid": False, "washed": True, "contamination": "none"},
            ),
            ("라벨은 뗐고 안 씻었어요", {"label": False, "washed": False}),
            ("국물이 묻은 용기", {"contamination": "light"}),
            (
                "washed, lid off, label removed",
                {"washed": True, "lid": False, "label": False, "contamination": "none"},
            ),
            ("깨진 유리병", {"broken": True}),
            ("컵", {}),
        ],
    )
    def test_should_read_state_from_words(self, text, expected):
        state = state_from_text(text).model_dump()

        for field, value in expected.items():
            assert state[field] == value, field
        for field in set(state) - set(expected):
            assert state[field] is None, field


class TestRetriever:
    def test_should_drop_steps_the_state_rules_out(self, tiny_catalog):
        state = ItemState(lid=False, washed=True, label=False, contents_left=False)
        analysis = Analysis(item_id="bottle", state=state, method="text")

        rules = retrieve(analysis, catalog=tiny_catalog, lang="ko")

        assert rules.steps == ("내용물을 비우세요.",)

    def test_should_keep_steps_when_the_state_is_unknown(self, tiny_catalog):
        analysis = Analysis(item_id="bottle", method="text")

        rules = retrieve(analysis, catalog=tiny_catalog, lang="en")

        assert rules.steps == (
            "Empty it.",
            "lid_on step",
            "not_washed step",
            "label_on step",
            "contaminated step",
            "contents_left step",
        )
        assert "1. Empty it." in rules.prompt_context
        assert rules.not_accepted == "If heavily soiled, general waste."

    def test_should_keep_only_the_steps_that_apply(self, tiny_catalog):
        state = ItemState(lid=True, washed=False, contamination="light", label=False)
        analysis = Analysis(item_id="bottle", state=state)

        rules = retrieve(analysis, catalog=tiny_catalog, lang="en")

        assert "lid_on step" in rules.steps
        assert "not_washed step" in rules.steps
        assert "contaminated step" in rules.steps
        assert "label_on step" not in rules.steps

    def test_should_return_no_rules_for_an_unknown_item(self, tiny_catalog):
        rules = retrieve(Analysis(item_id=None), catalog=tiny_catalog, lang="ko")

        assert (rules.item_id, rules.steps) == (None, ())


class TestGenerator:
    def test_should_say_where_it_goes_with_korean_particles(self, tiny_catalog):
        analysis = Analysis(item_id="bottle")
        rules = retrieve(analysis, catalog=tiny_catalog, lang="ko")

        guidance = compose_guidance(
            analysis=analysis, rules=rules, catalog=tiny_catalog, lang="ko"
        )

        assert guidance.text.startswith("생수병은 clear_pet")
        assert guidance.steps == rules.steps

    def test_should_admit_doubt_and_name_both_items(self, tiny_catalog):
        analysis = Analysis(item_id="paper_cup", alternatives=("paper_bag",))
        rules = retrieve(analysis, catalog=tiny_catalog, lang="en")

        guidance = compose_guidance(
            analysis=analysis, rules=rules, catalog=tiny_catalog, lang="en"
        )

        assert "not sure" in guidance.text
        assert "paper cup" in guidance.text and "paper bag" in guidance.text

    def test_should_ask_for_the_item_name_when_unknown(self, tiny_catalog):
        analysis = Analysis(item_id=None)
        rules = retrieve(analysis, catalog=tiny_catalog, lang="ko")

        guidance = compose_guidance(
            analysis=analysis, rules=rules, catalog=tiny_catalog, lang="ko"
        )

        assert "물건 이름" in guidance.text
        assert guidance.steps == ()


class TestPipeline:
    def test_should_answer_from_photo_and_question(self, services):
        request = pipeline.new_request(
            image=photo(),
            question="생수병 어떻게 버려요?",
            lang="ko",
            settings=services.settings,
        )

        result = pipeline.run_embedded(request, services)

        assert result.status == "succeeded"
        assert result.item.id == "clear_pet_bottle"
        assert result.degraded and not result.cached
        assert result.steps
        timings = result.timings_ms
        assert all(value is not None for value in timings.model_dump().values())
        assert timings.total >= timings.upload

    def test_should_serve_the_second_identical_job_from_cache(self, services):
        def ask():
            request = pipeline.new_request(
                image=photo(),
                question="생수 병 어떻게 버려요",
                lang="ko",
                settings=services.settings,
            )
            return pipeline.run_embedded(request, services)

        first, second = ask(), ask()

        assert (first.cached, second.cached) == (False, True)
        assert second.guidance == first.guidance
        assert second.timings_ms.analysis is None

    def test_should_not_share_cache_between_languages(self, services):
        def ask(lang):
            request = pipeline.new_request(
                image=None,
                question="water bottle",
                lang=lang,
                settings=services.settings,
            )
            return pipeline.run_embedded(request, services)

        korean, english = ask("ko"), ask("en")

        assert not english.cached
        assert korean.guidance != english.guidance

    def test_should_fail_the_job_with_the_image_error(self, services):
        request = pipeline.new_request(
            image=b"not an image", question=None, lang="ko", settings=services.settings
        )

        result = pipeline.run_embedded(request, services)

        assert result.status == "failed"
        assert result.error.code == "image_unreadable"

    @pytest.mark.parametrize(
        ("image", "question", "code"),
        [
            (None, None, ErrorCode.EMPTY_INPUT),
            (None, "   ", ErrorCode.EMPTY_INPUT),
            (None, "x" * 1001, ErrorCode.QUESTION_TOO_LONG),
            (b"\xff" * (10 * 1024 * 1024 + 1), None, ErrorCode.IMAGE_TOO_LARGE),
        ],
    )
    def test_should_refuse_unusable_input_before_enqueue(
        self, settings, image, question, code
    ):
        with pytest.raises(JobError) as caught:
            pipeline.new_request(
                image=image, question=question, lang="ko", settings=settings
            )

        assert caught.value.code == code
