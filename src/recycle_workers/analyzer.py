"""The analysis stage: which catalog item the job is about, and in what state.

With an AI adapter the model looks at the photo; without one, or when the model
fails, the item is inferred from the question text and the answer is degraded.
"""

from __future__ import annotations

import logging
import re

from recycle_workers.catalog import Catalog
from recycle_workers.llm import Adapter, AdapterError
from recycle_workers.logs import log_event
from recycle_workers.matcher import is_ambiguous, match
from recycle_workers.models import Analysis, ItemState

logger = logging.getLogger(__name__)


def analyze(
    *,
    question: str | None,
    image_jpeg: bytes | None,
    catalog: Catalog,
    adapter: Adapter | None,
) -> Analysis:
    """Identify the item; falls back to the question text without the model."""
    if adapter is None:
        return infer_from_text(question, catalog, degraded_reason=OFFLINE)
    try:
        return adapter.analyze(
            question=question, image_jpeg=image_jpeg, catalog=catalog
        )
    except AdapterError as exc:
        log_event(logger, "analysis_fallback", level=logging.WARNING, reason=exc.reason)
        return infer_from_text(question, catalog, degraded_reason=exc.reason)


def infer_from_text(
    question: str | None, catalog: Catalog, *, degraded_reason: str
) -> Analysis:
    """Match the question to the catalog and read the item's state from its words."""
    candidates = match(question or "", catalog, limit=2)
    if not candidates:
        return Analysis(item_id=None, method="none", degraded_reason=degraded_reason)

    best = candidates[0]
    alternatives = (candidates[1].item.item_id,) if is_ambiguous(candidates) else ()
    return Analysis(
        item_id=best.item.item_id,
        state=state_from_text(question or ""),
        confidence=best.score / 2 if alternatives else best.score,
        alternatives=alternatives,
        method="text",
        degraded_reason=degraded_reason,
    )


def state_from_text(text: str) -> ItemState:
    """Read what the person said about the item's state; unsaid means unknown."""
    lowered = text.casefold()
    return ItemState(
        lid=_tri_state(lowered, _LID_OFF, _LID_ON),
        washed=_tri_state(lowered, _NOT_WASHED, _WASHED),
        contamination=_contamination(lowered),
        label=_tri_state(lowered, _LABEL_OFF, _LABEL_ON),
        broken=True if _BROKEN.search(lowered) else None,
        contents_left=_tri_state(lowered, _EMPTIED, _CONTENTS_LEFT),
    )


def _tri_state(text: str, negative: re.Pattern, positive: re.Pattern) -> bool | None:
    # Negations are checked first: "안 씻었어요" contains "씻었".
    if negative.search(text):
        return False
    if positive.search(text):
        return True
    return None


def _contamination(text: str) -> str | None:
    if _HEAVY.search(text):
        return "heavy"
    if _LIGHT.search(text):
        return "light"
    if _WASHED.search(text) and not _NOT_WASHED.search(text):
        return "none"
    return None


OFFLINE = "offline"


def _either(*patterns: str) -> re.Pattern:
    return re.compile("|".join(patterns))


_LID_OFF = _either(
    r"뚜껑\s*(을|은|이)?\s*(없|뺀|뺐|뗀|뗐|떼|분리|열린|빼고)",
    r"without (the |a )?(lid|cap)|(lid|cap) (is )?(off|removed)|no (lid|cap)",
)
_LID_ON = _either(
    r"뚜껑\s*(이|을|은|도)?\s*(있|닫|달린|달려|붙|그대로|안\s*뺀)",
    r"with (the |a )?(lid|cap)|(lid|cap) (is )?on",
)
_NOT_WASHED = _either(
    r"안\s*씻|씻지\s*않|안\s*헹|헹구지\s*않",
    r"not (been )?(washed|rinsed)|unwashed|unrinsed",
)
_WASHED = _either(
    r"씻었|씻은|씻어\s*놓|헹궜|헹군|헹궈\s*놓|깨끗이|깨끗한",
    r"washed|rinsed|cleaned",
)
_LABEL_OFF = _either(
    r"라벨\s*(을|은|이)?\s*(뗀|뗐|떼어|제거|벗긴|벗겼|없)",
    r"without (the |a )?label|label (is )?(off|removed)|no label",
)
_LABEL_ON = _either(
    r"라벨\s*(이|을|은|도)?\s*(있|붙|그대로)",
    r"with (the |a )?label|label (is )?on",
)
_HEAVY = re.compile(r"심하게|잔뜩|찌든|곰팡|heavily|mou?ldy|caked")
_LIGHT = re.compile(r"묻은|묻어|묻었|기름|양념|국물|얼룩|dirty|greasy|stain|sauce|soup")
_BROKEN = re.compile(r"깨진|깨졌|부서진|부서졌|금\s*간|broken|cracked|shattered")
_EMPTIED = re.compile(r"비웠|비운|다\s*먹은|다\s*마신|empty|emptied")
_CONTENTS_LEFT = re.compile(
    r"남아\s*있|남은|들어\s*있|덜\s*먹은|half[- ]full|still (has|contains)|leftover"
)
