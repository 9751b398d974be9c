"""Chart tests need the real helm; without it they fail with one line saying how."""

from __future__ import annotations

import pytest

from helm_template import find_helm


@pytest.fixture(autouse=True, scope="session")
def _require_helm() -> None:
    if find_helm() is None:
        pytest.fail("helm not found: run `make helm` (or set HELM)", pytrace=False)
