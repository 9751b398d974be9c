"""The seam between the AI stages and a language model.

The analyzer and the generator talk to one :class:`Adapter`. With no API key
there is no adapter and both stages answer from the catalog alone. An adapter
raises :class:`AdapterError` when it cannot answer; the stage then falls back
to the offline path and marks the job degraded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from recycle_workers.settings import Settings

if TYPE_CHECKING:
    from recycle_workers.catalog import Catalog
    from recycle_workers.models import Analysis, Guidance, RuleContext


class AdapterError(Exception):
    """The model could not give a usable answer; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Adapter(Protocol):
    def analyze(
        self, *, question: str | None, image_jpeg: bytes | None, catalog: "Catalog"
    ) -> "Analysis": ...

    def generate(
        self,
        *,
        question: str | None,
        analysis: "Analysis",
        rules: "RuleContext",
        lang: str,
    ) -> "Guidance": ...


def adapter_from_settings(settings: Settings) -> Adapter | None:
    """The model adapter for these settings, or ``None`` when no API key is set."""
    if not settings.has_openai_key:
        return None
    from recycle_workers.openai_adapter import OpenAIAdapter

    return OpenAIAdapter.from_settings(settings)
