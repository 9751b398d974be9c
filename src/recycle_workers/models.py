"""The small typed values that pass between stages and out to clients.

Only the first hop carries image bytes; everything here is small JSON.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Lang = Literal["ko", "en"]
Contamination = Literal["none", "light", "heavy"]
JobStatus = Literal["succeeded", "failed"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ItemState(_Value):
    """What the item looks like now; ``None`` means not known."""

    lid: bool | None = None
    washed: bool | None = None
    contamination: Contamination | None = None
    label: bool | None = None
    broken: bool | None = None
    contents_left: bool | None = None

    def public(self) -> "PublicState":
        return PublicState(
            lid=self.lid,
            washed=self.washed,
            contamination=self.contamination,
            label=self.label,
        )


class PublicState(_Value):
    lid: bool | None = None
    washed: bool | None = None
    contamination: Contamination | None = None
    label: bool | None = None


class TokenUsage(_Value):
    """Tokens one model call used."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0


class StoredImage(_Value):
    """Where the uploader put a job's image, and what it found out about it."""

    image_sha256: str
    original_key: str
    model_key: str
    content_type: str
    width: int
    height: int


class Analysis(_Value):
    """Which catalog item the job is about, and its state."""

    item_id: str | None
    state: ItemState = Field(default_factory=ItemState)
    confidence: float = 0.0
    alternatives: tuple[str, ...] = ()
    method: Literal["model", "text", "none"] = "none"
    degraded_reason: str | None = None
    usage: TokenUsage | None = None


class RuleContext(_Value):
    """The rules that apply to the analysed item, ready for the answer."""

    item_id: str | None
    stream: str | None
    steps: tuple[str, ...] = ()
    not_accepted: str | None = None
    alternatives: tuple[str, ...] = ()
    source: str | None = None
    stream_words: tuple[str, ...] = ()
    prompt_context: str = ""


class Guidance(_Value):
    """The answer a person reads."""

    text: str
    steps: tuple[str, ...] = ()
    method: Literal["model", "rules"] = "rules"
    usage: TokenUsage | None = None


class ItemSummary(_Value):
    id: str
    name_ko: str
    name_en: str
    stream: str


class JobFailure(_Value):
    code: str
    message: str


class Timings(_Value):
    upload: float | None = None
    analysis: float | None = None
    retrieval: float | None = None
    generation: float | None = None
    total: float | None = None


class JobResult(_Value):
    """The outcome of one job, exactly as ``ask --json`` prints it."""

    job_id: str
    status: JobStatus
    item: ItemSummary | None = None
    state: PublicState = Field(default_factory=PublicState)
    guidance: str = ""
    steps: tuple[str, ...] = ()
    degraded: bool = False
    cached: bool = False
    timings_ms: Timings = Field(default_factory=Timings)
    error: JobFailure | None = None


class JobMessage(_Value):
    """What one stage hands the next through the broker."""

    job_id: str
    question: str | None = None
    lang: Lang = "ko"
    submitted_at: float
    image: StoredImage | None = None
    cache_key: str | None = None
    analysis: Analysis | None = None
    rules: RuleContext | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    usage: dict[str, TokenUsage] = Field(default_factory=dict)
