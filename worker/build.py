"""Which build of the worker is running: interpreted, or compiled.

The compiled build (``make compiled``, or ``IDENTITY_WORKER_COMPILE=1`` when building the wheel:
``setup.py``) compiles the modules listed in ``pyproject.toml``
(``[tool.identity-worker.compiled]``) with mypyc into C extension modules that sit beside their
``.py`` sources; Python imports an extension before a source of the same name. Behaviour is the
same; the worker's CPU per event is lower (docs/BENCHMARKS.md). The build is reported by
``identity-worker --version``, the ``build`` label of ``identity_worker_build_info`` and the
worker's start-up log line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")

try:
    from mypy_extensions import mypyc_attr as mypyc_attr
except ImportError:  # a dev dependency (with mypy): the compiled code does not call it

    def mypyc_attr(*args: Any, **kwargs: Any) -> Callable[[_T], _T]:  # type: ignore[misc]
        """mypyc's class attributes (``allow_interpreted_subclasses=True``: a port class that
        code outside the compiled modules may subclass); nothing at run time."""
        return lambda cls: cls


_PACKAGE = Path(__file__).resolve().parent


@cache  # a build's files do not change while it runs: the start-up reports read it once
def compiled_modules(package: Path = _PACKAGE) -> tuple[str, ...]:
    """The dotted names of the package's modules present as extension modules (sorted)."""
    suffixes = sorted(EXTENSION_SUFFIXES, key=len, reverse=True)  # the longest one names it
    found: set[str] = set()
    for path in package.rglob("*"):
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is not None:
            parts = path.relative_to(package.parent).parts
            found.add(".".join((*parts[:-1], parts[-1].removesuffix(suffix))))
    return tuple(sorted(found))


def kind(package: Path = _PACKAGE) -> str:
    """``compiled`` or ``interpreted`` (the ``build`` label of ``identity_worker_build_info``)."""
    return "compiled" if compiled_modules(package) else "interpreted"


def describe(package: Path = _PACKAGE) -> str:
    """``compiled, N modules`` or ``interpreted``."""
    modules = compiled_modules(package)
    return f"compiled, {len(modules)} modules" if modules else "interpreted"
