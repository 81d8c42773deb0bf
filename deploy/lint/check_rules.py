"""Check Prometheus rule files: every ``expr`` parses as PromQL (promql-parser), every alert has
``for``-free or valid durations, a severity, a summary, a description and a ``runbook_url``.

Usage: python deploy/lint/check_rules.py FILE...  (a rule file, or a PrometheusRule manifest)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import promql_parser
import yaml


def rule_groups(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if doc.get("kind") == "PrometheusRule":
        doc = doc["spec"]
    groups: list[dict[str, Any]] = doc["groups"]
    return groups


def problems(path: Path) -> list[str]:
    found = []
    for group in rule_groups(path):
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record") or "?"
            try:
                promql_parser.parse(str(rule["expr"]))
            except ValueError as exc:
                found.append(f"{path}: {name}: expr does not parse: {exc}")
            if "for" in rule:
                try:
                    promql_parser.parse_duration(str(rule["for"]))
                except ValueError as exc:
                    found.append(f"{path}: {name}: bad for: {exc}")
            if "alert" in rule:
                annotations = rule.get("annotations", {})
                found.extend(
                    f"{path}: {name}: no {key}"
                    for key in ("summary", "description", "runbook_url")
                    if not str(annotations.get(key, "")).strip()
                )
                if "severity" not in rule.get("labels", {}):
                    found.append(f"{path}: {name}: no severity label")
    return found


def main(argv: list[str]) -> int:
    found = [p for arg in argv for p in problems(Path(arg))]
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"rules ok: {', '.join(argv)}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
