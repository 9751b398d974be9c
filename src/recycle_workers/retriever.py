"""The retrieval stage: the analysed item's rules, filtered by its state.

A conditional step is kept when the state says it applies or when the state is
unknown, and dropped only when the state says it does not apply, so a washed
bottle with its cap off is not told to wash it and take the cap off.
"""

from __future__ import annotations

import re

from recycle_workers.catalog import Catalog, Condition, Item
from recycle_workers.models import Analysis, ItemState, RuleContext


def retrieve(analysis: Analysis, *, catalog: Catalog, lang: str) -> RuleContext:
    """Collect the rules that apply to the analysed item, in ``lang``."""
    item = catalog.get(analysis.item_id) if analysis.item_id else None
    if item is None:
        return RuleContext(item_id=None, stream=None)

    steps = [step.in_lang(lang) for step in item.steps]
    steps += [
        conditional.text.in_lang(lang)
        for conditional in item.conditional_steps
        if applies(conditional.when, analysis.state)
    ]
    not_accepted = item.not_accepted.text.in_lang(lang) if item.not_accepted else None
    alternatives = tuple(
        item_id for item_id in analysis.alternatives if catalog.get(item_id) is not None
    )
    return RuleContext(
        item_id=item.item_id,
        stream=item.stream,
        steps=tuple(steps),
        not_accepted=not_accepted,
        alternatives=alternatives,
        source=item.source,
        stream_words=tuple(
            word
            for name in (
                catalog.streams[item.stream].ko,
                catalog.streams[item.stream].en,
            )
            for word in stream_words(name)
        ),
        prompt_context=prompt_context(
            item, steps, not_accepted, catalog=catalog, lang=lang
        ),
    )


def applies(condition: Condition, state: ItemState) -> bool:
    """Whether a step for ``condition`` may be needed, given what is known."""
    unwashed_or_unknown = state.washed is not True
    if condition == "lid_on":
        return state.lid is not False
    if condition == "not_washed":
        return unwashed_or_unknown
    if condition == "contaminated":
        if state.contamination is None:
            return unwashed_or_unknown
        return state.contamination != "none"
    if condition == "heavily_contaminated":
        if state.contamination is None:
            return unwashed_or_unknown
        return state.contamination == "heavy"
    if condition == "label_on":
        return state.label is not False
    if condition == "broken":
        return state.broken is not False
    if condition == "contents_left":
        return state.contents_left is not False and unwashed_or_unknown
    raise ValueError(f"Unknown rule condition {condition!r}")


def stream_words(stream_name: str) -> list[str]:
    """The words that name a stream: '발포합성수지(스티로폼)' gives both halves."""
    parts = re.split(r"[()·,]", stream_name)
    return [part.strip().casefold() for part in parts if len(part.strip()) >= 2]


def prompt_context(
    item: Item,
    steps: list[str],
    not_accepted: str | None,
    *,
    catalog: Catalog,
    lang: str,
) -> str:
    """The rules as plain text, the only facts the answer may use."""
    stream = catalog.streams[item.stream].in_lang(lang)
    lines = [
        f"item: {item.name.in_lang(lang)} ({item.item_id})",
        f"stream: {stream}",
        "steps:",
    ]
    lines += [f"{number}. {step}" for number, step in enumerate(steps, start=1)]
    if not_accepted:
        lines.append(f"when not accepted: {not_accepted}")
    lines.append(f"source: {item.source}")
    return "\n".join(lines)
