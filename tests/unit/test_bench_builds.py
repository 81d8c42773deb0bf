"""The benchmarks' ``--build`` option without services: which directories pass for a compiled
build, the proof that a process loaded a build's code, and rounds of one variant as one row."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from confluent_kafka import cimpl

from tests.bench.bench_latency import drain_of
from tests.bench.bench_worker import Gate, Run, median_run
from tests.bench.common import mapped_libraries, parse_build
from tests.e2e.harness import DEFAULT_RULES

EXTENSION = "native.cpython-311-x86_64-linux-gnu.so"


def _tree(root: Path, *, compiled: bool) -> Path:
    (root / "worker" / "codec").mkdir(parents=True)
    (root / "worker" / "__init__.py").write_text("")
    (root / "worker" / "codec" / "native.py").write_text("")
    if compiled:
        (root / "worker" / "codec" / EXTENSION).write_bytes(b"")
    return root


def test_a_directory_with_compiled_worker_modules_is_a_build(tmp_path: Path) -> None:
    root = _tree(tmp_path / "compiled", compiled=True)
    build = parse_build(f"fast={root}")
    assert (build.label, build.path, build.modules) == ("fast", root.resolve(), 1)
    assert parse_build(str(root)).label == "compiled"


def test_a_tree_of_py_files_only_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", compiled=False)
    with pytest.raises(argparse.ArgumentTypeError, match="holds no compiled build"):
        parse_build(f"x={root}")


def test_an_empty_label_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree", compiled=True)
    with pytest.raises(argparse.ArgumentTypeError, match="expected LABEL=DIR"):
        parse_build(f"={root}")


def test_a_directory_without_a_worker_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="no worker package"):
        parse_build(f"x={tmp_path}")


def test_mapped_libraries_counts_the_shared_objects_a_process_loaded_from_a_directory(
    tmp_path: Path,
) -> None:
    loaded = Path(cimpl.__file__).resolve().parent
    assert mapped_libraries(os.getpid(), loaded) >= 1
    assert mapped_libraries(os.getpid(), tmp_path) == 0


def _run(rate: float | None, cpu: float, ok: bool = True) -> Run:
    return Run("worker, JSON", 100, rate, Gate(ok, "detail"), cpu_us=cpu)


def test_rounds_of_a_variant_report_their_median_and_each_rate() -> None:
    merged = median_run([_run(10.0, 50.0), _run(30.0, 40.0), _run(20.0, 45.0)])
    assert (merged.rate, merged.cpu_us, merged.rounds) == (20.0, 45.0, [10.0, 30.0, 20.0])
    failed = median_run([_run(10.0, 50.0), _run(None, 40.0, ok=False)])
    assert failed.rate is None
    assert failed.gate is not None
    assert not failed.gate.ok


def test_latency_takes_the_drain_rate_of_the_build_it_measures(tmp_path: Path) -> None:
    build = parse_build(f"compiled={_tree(tmp_path / 'c', compiled=True)}")
    drain = {
        "drain_rate": 100.0,
        "runs": {"worker, JSON": 100.0, "worker, JSON, compiled": 120.0},
        "builds": {"compiled": str(build.path)},
    }
    assert drain_of(drain, build) == (120.0, "worker, JSON, compiled")
    assert drain_of(drain, None) == (100.0, "worker, JSON")
    assert drain_of({**drain, "builds": {}}, build) == (100.0, "worker, JSON")


def test_latency_with_the_other_rules_takes_that_modes_drain_rate(
    tmp_path: Path,
) -> None:
    # the rows without "rules in" ran with redis.rules's default (worker); bench_worker's
    # --rules script adds the rows "..., rules in script"
    build = parse_build(f"compiled={_tree(tmp_path / 'c', compiled=True)}")
    drain = {
        "drain_rate": 100.0,
        "runs": {
            "worker, JSON": 100.0,
            "worker, JSON, compiled": 120.0,
            "worker, JSON, compiled, rules in script": 80.0,
            "worker, JSON, rules in script": 60.0,
        },
        "builds": {"compiled": str(build.path)},
    }
    assert DEFAULT_RULES == "worker"
    assert drain_of(drain, build, "script") == (80.0, "worker, JSON, compiled, rules in script")
    assert drain_of(drain, None, "script") == (60.0, "worker, JSON, rules in script")
    assert drain_of({**drain, "runs": {}}, None, "script") == (
        None,
        "worker, JSON, rules in script",
    )
    assert drain_of(drain, build, "worker") == (120.0, "worker, JSON, compiled")
    assert drain_of(drain, build) == (120.0, "worker, JSON, compiled")
