"""A deadline around a Kafka client call that may never return.

librdkafka's transactional calls take a timeout, but some of them can block far past it (open
librdkafka issues: ``send_offsets_to_transaction`` ignoring its timeout, or hanging after the
group coordinator's broker restarted). A worker stuck there emits nothing, and only a liveness
probe would restart it, minutes later. ``call_within`` runs the call on the caller's thread and
watches it from another: past the deadline the process exits at once with code 3 (a dependency
unavailable), so the supervisor restarts it and it resumes from its last committed transaction
(static membership makes that take about a second). Nothing uncommitted is lost: a transaction
that never committed is aborted by the broker, and its input is read again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_STUCK = 3
"""The process's exit code when a Kafka call overran its deadline (the CLI's 'dependency
unavailable')."""

GRACE_SECONDS = 30.0
"""Added to a call's own timeout: librdkafka honours its timeouts within seconds when it works,
so half a minute more means it is stuck, not slow."""


def _exit_now(what: str, seconds: float) -> None:
    log.critical(
        "Kafka client call %r did not return within %.0f s: the client is stuck; exiting with "
        "code %d so the worker is restarted and resumes from its last commit",
        what,
        seconds,
        EXIT_STUCK,
    )
    logging.shutdown()
    os._exit(EXIT_STUCK)


def call_within(
    action: Callable[[], T],
    seconds: float,
    what: str,
    on_stuck: Callable[[str, float], None] = _exit_now,
) -> T:
    """``action()``, with ``on_stuck(what, seconds)`` called from a watchdog thread if it has
    not returned after ``seconds`` (by default: log and exit the process)."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(seconds):
            on_stuck(what, seconds)

    watchdog = threading.Thread(target=watch, name=f"deadline:{what}", daemon=True)
    watchdog.start()
    try:
        return action()
    finally:
        done.set()
