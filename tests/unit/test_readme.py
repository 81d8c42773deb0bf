"""The README documents every setting and every metric the worker has."""

from __future__ import annotations

from pathlib import Path

from worker.config import Settings
from worker.observability.metrics import WorkerMetrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    settings = Settings()
    for section in Settings.model_fields:
        for name in type(getattr(settings, section)).model_fields:
            env = f"IDENTITY_WORKER_{section.upper()}__{name.upper()}"
            assert f"`{env}`" in README, f"{env} is not documented in README.md"


def test_every_metric_is_in_the_readme() -> None:
    for family in WorkerMetrics.create().registry.collect():
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        assert f"`{name}`" in README, f"{name} is not documented in README.md"


def test_the_readme_opens_with_the_two_commands() -> None:
    opening = README[:600]
    assert "make run" in opening
    assert "make test" in opening
