"""``make faults``: the full fault run
(``python -m tests.faults [--plan short] [--exactly-once] [--out F] [--build DIR]``).

``--exactly-once``: the workers run with ``delivery.exactly_once`` (each with its own
``transactional.id``), the outputs are read with ``isolation.level=read_committed``, and a
duplicated enriched event fails the run (without it duplicates are counted and reported).

``--build DIR``: the workers run the compiled build of the ``worker`` package in ``DIR``
(``make compiled``: ``.local/compiled``; ``PYTHONPATH=DIR``); the suite itself stays this
repository's code. The summary's ``worker_build`` says which.

Starts its own Kafka and Redis on free ports (or ``FAULTS_KAFKA_PORT``,
``FAULTS_KAFKA_CONTROLLER_PORT``, ``FAULTS_REDIS_PORT``), prints the JSON summary, writes it to
``--out``, and exits 1 when a check fails. Worker logs: ``logs-<plan>/`` next to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.bench.common import Build, parse_build
from tests.faults.scenario import FULL, SHORT, run
from tests.faults.services import private_services
from tests.faults.verdicts import change_feed_failures, core_failures, exactly_once_failures
from tests.support.services import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--plan", choices=["full", "short"], default="full")
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--build",
        type=parse_build,
        metavar="DIR",
        help="run the workers from the compiled build in DIR (make compiled: .local/compiled)",
    )
    args = parser.parse_args(argv)
    build: Build | None = args.build
    print(f"workers: {build or 'interpreted, this repository'}", flush=True)
    plan = FULL if args.plan == "full" else SHORT
    suffix = "-exactly-once" if args.exactly_once else ""
    out: Path = args.out or ROOT / ".local" / "faults" / f"summary{suffix}.json"
    logs = out.parent / f"logs-{plan.name}{suffix}"
    with private_services() as services:
        summary = run(
            plan, services, logs, exactly_once=args.exactly_once, code=build.path if build else None
        )
    summary["worker_build"] = str(build.path) if build else "interpreted"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=2))
    print(f"summary written to {out}")
    failures = (
        core_failures(summary) + change_feed_failures(summary) + exactly_once_failures(summary)
    )
    for restart in summary["liveness_restarts"]:
        print(f"WARNING: worker stuck, restarted on its liveness probe: {restart}", file=sys.stderr)
    for restart in summary["exit_restarts"]:
        print(
            f"WARNING: worker exited on a stuck Kafka client call, restarted: {restart}",
            file=sys.stderr,
        )
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
