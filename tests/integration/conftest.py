"""Fixtures shared by the integration tests (the services' addresses: ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis, closed after the test."""
    redis_client = redis.Redis.from_url(redis_url)
    yield redis_client
    redis_client.close()
