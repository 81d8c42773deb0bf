"""pyproject.toml lists the packages by hand (the schemas live outside worker/): keep it true."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        config: dict[str, Any] = tomllib.load(f)["tool"]["setuptools"]
    return config


def test_every_python_package_under_worker_is_listed() -> None:
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "worker").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    listed = set(_setuptools()["packages"])
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == {"worker.schemas"}


def test_the_schemas_folder_ships_as_worker_schemas() -> None:
    config = _setuptools()
    assert config["package-dir"] == {"worker.schemas": "schemas"}
    assert config["package-data"]["worker.schemas"] == ["*.avsc"]
    assert list((ROOT / "schemas").glob("*.avsc"))
