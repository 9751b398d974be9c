"""Checks for the local servers that integration tests talk to."""

from __future__ import annotations

import socket

import pytest


def require_port(name: str, port: int) -> None:
    """Fail with one line saying how to get a server the test needs."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return
    except OSError:
        pytest.fail(
            f"{name} is not running on 127.0.0.1:{port}; run 'make services' "
            "(or start it: see scripts/ensure-services)",
            pytrace=False,
        )
