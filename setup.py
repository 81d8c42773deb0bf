"""setuptools hook of the optional compiled build; everything else is in pyproject.toml.

With ``IDENTITY_WORKER_COMPILE=1`` the modules listed under ``[tool.identity-worker.compiled]``
in pyproject.toml are compiled with mypyc (mypy's compiler; it must be importable by the build:
``pip install --no-build-isolation`` from an environment with mypy, as ``make compiled`` and
deploy/Dockerfile do) into C extension modules shipped beside their sources. Without it the
wheel is pure Python. The two builds behave the same; see README.md, *The compiled build*.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup

COMPILE_ENV = "IDENTITY_WORKER_COMPILE"


def compiled_modules() -> list[str]:
    """The dotted names of the modules the compiled build compiles (pyproject.toml)."""
    pyproject = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text("utf-8"))
    modules: list[str] = pyproject["tool"]["identity-worker"]["compiled"]["modules"]
    return modules


def ext_modules() -> list[Any]:
    if os.environ.get(COMPILE_ENV, "0").strip().lower() in ("", "0", "false", "no"):
        return []
    if {"dist_info", "egg_info"} & set(sys.argv[1:]):
        return []  # metadata only: the extensions do not change it, compile once (bdist_wheel)
    try:
        from mypyc.build import mypycify
    except ImportError as error:
        raise SystemExit(
            f"{COMPILE_ENV}=1 needs mypyc (pip install mypy) in the build environment; "
            "build with pip's --no-build-isolation from an environment that has it"
        ) from error
    paths = [module.replace(".", "/") + ".py" for module in compiled_modules()]
    return list(mypycify(paths, opt_level="3", group_name="identity_worker_compiled"))


setup(ext_modules=ext_modules())
