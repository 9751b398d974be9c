"""The generation stage: the answer a person reads.

With an AI adapter the model writes it from the question and the filtered
rules; without one, :func:`compose_guidance` assembles it from the rules alone.
"""

from __future__ import annotations

import logging

from recycle_workers.catalog import Catalog
from recycle_workers.llm import Adapter, AdapterError
from recycle_workers.logs import log_event
from recycle_workers.models import Analysis, Guidance, RuleContext

logger = logging.getLogger(__name__)


def generate(
    *,
    question: str | None,
    analysis: Analysis,
    rules: RuleContext,
    catalog: Catalog,
    lang: str,
    adapter: Adapter | None,
) -> Guidance:
    """Write the answer; falls back to the rules alone when the model is unavailable."""
    if adapter is not None and rules.item_id is not None:
        try:
            return adapter.generate(
                question=question, analysis=analysis, rules=rules, lang=lang
            )
        except AdapterError as exc:
            log_event(
                logger, "generation_fallback", level=logging.WARNING, reason=exc.reason
            )
    return compose_guidance(analysis=analysis, rules=rules, catalog=catalog, lang=lang)


def compose_guidance(
    *, analysis: Analysis, rules: RuleContext, catalog: Catalog, lang: str
) -> Guidance:
    """A plain answer built from the rules: where it goes, then the steps."""
    item = catalog.get(rules.item_id) if rules.item_id else None
    if item is None:
        return Guidance(text=_unknown_item_text(analysis, lang), steps=())

    name = item.name.in_lang(lang)
    stream = catalog.streams[item.stream].in_lang(lang)
    if lang == "en":
        sentences = [f"Put the {name.lower()} out with {stream}."]
    else:
        sentences = [f"{name}{_topic(name)} {stream}{_direction(stream)} 버리세요."]

    alternatives = [catalog.get(item_id) for item_id in rules.alternatives]
    if alternatives:
        other = alternatives[0]
        other_name = other.name.in_lang(lang)
        other_stream = catalog.streams[other.stream].in_lang(lang)
        if lang == "en":
            sentences.insert(
                0,
                f"I am not sure whether this is a {name.lower()} ({stream}) or a "
                f"{other_name.lower()} ({other_stream}); "
                f"the closer match is the {name.lower()}.",
            )
        else:
            sentences.insert(
                0,
                f"{name}({stream})인지 {other_name}({other_stream})인지 "
                "확실하지 않습니다. "
                f"더 가까운 쪽은 {name}입니다.",
            )
    if rules.not_accepted:
        sentences.append(rules.not_accepted)
    return Guidance(text=" ".join(sentences), steps=rules.steps, method="rules")


def _unknown_item_text(analysis: Analysis, lang: str) -> str:
    if lang == "en":
        return (
            "I could not tell what the item is. Please ask again and name the item in "
            "your question, for example 'How do I throw away a paper cup?'."
        )
    return (
        "무엇을 버리시려는지 알아내지 못했습니다. 질문에 물건 이름을 적어 다시 물어봐 "
        "주세요. 예: '종이컵 어떻게 버려요?'"
    )


def _topic(word: str) -> str:
    return "은" if _has_final_consonant(word) else "는"


def _direction(word: str) -> str:
    """The particle 으로/로: 로 after a vowel or ㄹ, 으로 after other consonants."""
    last = _last_syllable(word)
    if last is None:
        return "(으)로"
    final = (ord(last) - 0xAC00) % 28
    return "로" if final in (0, 8) else "으로"


def _has_final_consonant(word: str) -> bool:
    last = _last_syllable(word)
    return last is not None and (ord(last) - 0xAC00) % 28 != 0


def _last_syllable(word: str) -> str | None:
    """The last Hangul syllable, ignoring a closing parenthetical like '(스티로폼)'."""
    stripped = word.split("(")[0].strip() if word.endswith(")") else word.strip()
    if stripped and "\uac00" <= stripped[-1] <= "\ud7a3":
        return stripped[-1]
    return None
