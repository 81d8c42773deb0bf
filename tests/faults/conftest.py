"""The fault suite runs on a Kafka broker and a Redis server of its own (it restarts them)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the fault suite (own Kafka and Redis, killed and restarted workers)"
    )
