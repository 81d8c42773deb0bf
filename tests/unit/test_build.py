"""The build under test (interpreted, or compiled by ``make compiled``) and how it is reported:
``worker.build``, ``--version``, ``identity_worker_build_info``."""

from __future__ import annotations

import importlib
import os
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from tests.conftest import TEST_BUILD_ENV
from worker import build
from worker.cli import build_parser
from worker.observability.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]


def listed() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["identity-worker"]["compiled"]["modules"]
    return modules


def test_every_listed_module_exists_once_and_in_order() -> None:
    modules = listed()
    assert modules == sorted(set(modules))
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_build_under_test_is_the_one_asked_for() -> None:
    compiled = build.compiled_modules()
    if os.environ.get(TEST_BUILD_ENV):
        assert compiled == tuple(listed())
        for module in listed():
            origin = importlib.import_module(module).__file__ or ""
            assert origin.endswith(tuple(EXTENSION_SUFFIXES)), origin
        assert build.describe() == f"compiled, {len(listed())} modules"
    else:
        assert compiled == ()
        assert build.describe() == "interpreted"


def test_compiled_modules_names_each_extension_once(tmp_path: Path) -> None:
    package = tmp_path / "worker"
    (package / "codec").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "codec" / "fields.py").write_text("")
    (package / "codec" / f"fields{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    (package / f"rules{EXTENSION_SUFFIXES[-1]}").write_bytes(b"")
    assert build.compiled_modules(package) == ("worker.codec.fields", "worker.rules")
    assert build.describe(package) == "compiled, 2 modules"
    assert build.kind(package) == "compiled"
    (tmp_path / "pure").mkdir()
    (tmp_path / "pure" / "fields.py").write_text("")
    assert build.describe(tmp_path / "pure") == "interpreted"
    assert build.kind(tmp_path / "pure") == "interpreted"


def test_version_and_metrics_say_which_build_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip().endswith(f"({build.describe()})")
    metrics = WorkerMetrics.create()
    kind = "compiled" if os.environ.get(TEST_BUILD_ENV) else "interpreted"
    assert build.kind() == kind
    assert (
        metrics.registry.get_sample_value(
            "identity_worker_build_info", {"version": "0.1.0", "build": kind}
        )
        == 1.0
    )
