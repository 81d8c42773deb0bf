"""Suite-wide fixtures: real Kafka and Redis endpoints (see tests/support/services.py), and the
build under test: the repository's ``worker`` package, or the compiled build in the directory
``IDENTITY_WORKER_TEST_BUILD`` names (``make test``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TEST_BUILD_ENV = "IDENTITY_WORKER_TEST_BUILD"
_TEST_BUILD = os.environ.get(TEST_BUILD_ENV, "")
if _TEST_BUILD:  # before anything imports worker: the build's package shadows the repository's
    _BUILD_DIR = str(Path(_TEST_BUILD).resolve())
    sys.path.insert(0, _BUILD_DIR)
    os.environ["PYTHONPATH"] = os.pathsep.join(  # worker subprocesses too
        [_BUILD_DIR, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    # as in an image: mypy_extensions is a dev dependency, worker.build stands in for it
    sys.modules["mypy_extensions"] = None  # type: ignore[assignment]

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from tests.support import services  # noqa: E402
from worker import build  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "interpreted_only(reason): replaces a function or method of a module that the compiled "
        "build compiles (compiled callers do not see the replacement): skipped on that build",
    )
    if _TEST_BUILD:
        where = Path(build.__file__).resolve()
        wanted = Path(_TEST_BUILD).resolve()
        if not where.is_relative_to(wanted) or not build.compiled_modules():
            raise pytest.UsageError(
                f"{TEST_BUILD_ENV}={_TEST_BUILD}: no compiled build of worker there "
                f"(worker imported from {where.parent}); run `make compiled`"
            )


def pytest_report_header() -> str:
    return f"worker build: {build.describe()} from {Path(build.__file__).resolve().parent}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not build.compiled_modules():
        return
    for item in items:
        marker = item.get_closest_marker("interpreted_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"interpreted build only: {reason}"))


settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker."""
    with services.kafka_bootstrap_servers() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server."""
    with services.redis_url() as url:
        yield url


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: for topics, groups and Redis key prefixes."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"t-{base}-{uuid.uuid4().hex[:10]}"
