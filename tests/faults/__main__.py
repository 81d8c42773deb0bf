"""``make faults``: the full fault run (``python -m tests.faults [--plan short] [--out F]``).

Starts its own Kafka and Redis on free ports (or ``FAULTS_KAFKA_PORT``,
``FAULTS_KAFKA_CONTROLLER_PORT``, ``FAULTS_REDIS_PORT``), prints the JSON summary, writes it to
``--out``, and exits 1 when a check fails. Worker logs: ``logs-<plan>/`` next to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.faults.scenario import FULL, SHORT, run
from tests.faults.services import private_services
from tests.faults.verdicts import change_feed_failures, core_failures
from tests.support.services import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--plan", choices=["full", "short"], default="full")
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "faults" / "summary.json")
    args = parser.parse_args(argv)
    plan = FULL if args.plan == "full" else SHORT
    logs = args.out.parent / f"logs-{plan.name}"
    with private_services() as services:
        summary = run(plan, services, logs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=2))
    print(f"summary written to {args.out}")
    failures = core_failures(summary) + change_feed_failures(summary)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
