"""Planted bugs in the identity rules, each of which the unit and property tests alone must catch.

``python -m tests.mutation.mutants`` (or ``make mutants``) copies the tree to a temporary
directory once per mutant, applies the mutant's textual patch (one exact ``before`` snippet
replaced by ``after``; the snippet must occur exactly once), runs ``tests/unit`` and
``tests/property`` there (no Kafka, no Redis; Hypothesis without shrinking) and reports which
tests failed. It exits non-zero
when the unmutated tree fails, when a patch no longer applies (re-target it), or when a mutant
survives. It is not part of ``make test``: it runs the fast suites once per mutant.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("tests/unit", "tests/property")
_SKIP = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".local",
    "*.egg-info",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    path: str
    before: str
    after: str


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "guard-wrong-side",
        "A3.6: the merge guard checks whether into's person is identified instead of other's",
        "worker/identity/reference.py",
        "elif other_person.is_identified and not event.merge_dangerously:",
        "elif into_person.is_identified and not event.merge_dangerously:",
    ),
    Mutant(
        "later-set-once-wins",
        "A4 timestamp mode: among $set_once states the later (ts, uuid) wins",
        "worker/identity/properties.py",
        "return new_order > current_order if new_strong else new_order < current_order",
        "return new_order > current_order",
    ),
    Mutant(
        "arrival-set-once-overwrites",
        "A4 arrival mode: $set_once overwrites a key the person already has",
        "worker/identity/properties.py",
        "if key not in before and key not in to_set:",
        "if key not in to_set:",
    ),
    Mutant(
        "refused-merge-identifies-other",
        "A3.6/A3.7: a merge refused by the cap marks other's person identified too",
        "worker/identity/reference.py",
        "            refuse(WarningKind.MERGE_LIMIT_EXCEEDED)\n            person = into_person\n"
        "        else:",
        "            refuse(WarningKind.MERGE_LIMIT_EXCEEDED)\n            person = into_person\n"
        "            other_person.is_identified = True\n        else:",
    ),
    Mutant(
        "refused-join-identifies-other",
        "A3.7: a join refused by the cap marks the full person identified",
        "worker/identity/reference.py",
        "                refuse(WarningKind.MERGE_LIMIT_EXCEEDED)\n"
        "                person = into_person\n",
        "                refuse(WarningKind.MERGE_LIMIT_EXCEEDED)\n"
        "                person = into_person\n"
        "                target.is_identified = True\n",
    ),
    Mutant(
        "refused-merge-lands-on-other",
        "A3.6: an identify refused by the guard is processed on other's person",
        "worker/identity/reference.py",
        "refuse(WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED)\n            person = into_person",
        "refuse(WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED)\n            person = other_person",
    ),
    Mutant(
        "illegal-other-identifies",
        "A3.1/A3.2: an identify whose other id is illegal (or equal to into) marks the person"
        " identified",
        "worker/identity/reference.py",
        "identify = other is not None",
        "identify = event.other_id is not None",
    ),
    Mutant(
        "identify-without-anon-identifies",
        "A3: an identify without anonymous id marks the person identified",
        "worker/identity/reference.py",
        "identify = other is not None",
        "identify = other is not None or event.kind == 'identify'",
    ),
    Mutant(
        "identity-imports-os",
        "purity: an identity module imports os (always in sys.modules, so an import-time"
        " check cannot see it)",
        "worker/identity/ids.py",
        "import uuid\n",
        "import os\nimport uuid\n\nassert os.sep\n",
    ),
    Mutant(
        "identity-imports-time",
        "purity: an identity module imports the clock",
        "worker/identity/timestamps.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nfrom time import monotonic as _clock\n",
    ),
)


_NO_SHRINK = """

# added by tests/mutation/mutants.py in its temporary copy: a mutant needs one failing
# example, not the smallest one, so Hypothesis skips shrinking here
from hypothesis import Phase as _Phase  # noqa: E402

settings.register_profile(
    "mutants",
    parent=settings.get_profile("ci"),
    phases=[_Phase.explicit, _Phase.reuse, _Phase.generate],
)
settings.load_profile("mutants")
"""


def _copy_tree(destination: Path) -> None:
    shutil.copytree(ROOT, destination, ignore=_SKIP, symlinks=True)
    conftest = destination / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + _NO_SHRINK)


def _apply(tree: Path, mutant: Mutant) -> None:
    target = tree / mutant.path
    text = target.read_text()
    count = text.count(mutant.before)
    if count != 1:
        raise SystemExit(
            f"mutant {mutant.name}: its snippet occurs {count} times in {mutant.path}"
            " (expected once): re-target the patch"
        )
    target.write_text(text.replace(mutant.before, mutant.after))


def _run_suites(tree: Path, suites: Sequence[str] = SUITES) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    code = (
        "import sys, worker.identity.reference as m; "
        f"sys.exit(0 if m.__file__.startswith({str(tree)!r}) else 3)"
    )
    if subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=False).returncode:
        raise SystemExit(f"the copy in {tree} does not shadow the installed package")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *suites, "-q", "-p", "no:cacheprovider", "-rf"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    failed = sorted(set(re.findall(r"^FAILED (.+?)(?: - .*)?$", result.stdout, flags=re.MULTILINE)))
    return result.returncode, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these mutants (default: all)")
    parser.add_argument("--show", type=int, default=8, help="failed tests to list per mutant")
    parser.add_argument(
        "--suite",
        action="append",
        choices=SUITES,
        help="run only this suite (repeatable; default: all of them)",
    )
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    suites: tuple[str, ...] = tuple(args.suite or SUITES)
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="identity-mutants-") as scratch:
        baseline = Path(scratch) / "baseline"
        _copy_tree(baseline)
        code, failed = _run_suites(baseline, suites)
        if code != 0:
            print(f"the unmutated tree fails {suites}: {failed}")
            return 2
        print(f"baseline: {' and '.join(suites)} pass")
        for mutant in chosen:
            tree = Path(scratch) / mutant.name
            _copy_tree(tree)
            _apply(tree, mutant)
            code, failed = _run_suites(tree, suites)
            caught = code != 0
            print(f"\n{mutant.name}: {'CAUGHT' if caught else 'SURVIVED'} ({mutant.bug})")
            for test in failed[: args.show]:
                print(f"  {test}")
            if len(failed) > args.show:
                print(f"  ... and {len(failed) - args.show} more")
            if caught and not failed:
                print(f"  (pytest exited {code} without a failed test: an error, look at it)")
                survivors.append(mutant.name)
            if not caught:
                survivors.append(mutant.name)
            shutil.rmtree(tree)
    print()
    if survivors:
        print(f"{len(survivors)} of {len(chosen)} mutants not caught: {', '.join(survivors)}")
        return 1
    print(f"all {len(chosen)} mutants caught by {' and '.join(suites)} alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
