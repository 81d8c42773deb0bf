"""Fixtures shared by the integration tests (the services' addresses: ``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis, closed after the test."""
    redis_client = redis.Redis.from_url(redis_url)
    yield redis_client
    redis_client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A fresh key prefix; every key starting with it is deleted after the test (stores made
    on ``prefix + "-x"`` included)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
