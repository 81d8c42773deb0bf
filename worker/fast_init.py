"""A quicker ``__init__`` for the frozen, slotted dataclasses the worker builds for every event.

A frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__(self,
"name", value)`` (the class's own ``__setattr__`` refuses), which looks the attribute up by
name on every call. The loop builds a dozen such objects per event (the decoded event, its
identity view, its prepared operation, its resolution, its output records...), about 80 fields
in all. ``fast_init`` gives such a class an ``__init__`` that calls each slot's descriptor
directly: the same signature, defaults and default factories; the instances stay as frozen as
before (only ``__init__`` changes). Measured on the benchmark mix: decoding, the rules before
the store call and the outputs took 24.5 µs per event instead of 27.9.

It refuses (``TypeError``, at import) a class it would not reproduce exactly: not a dataclass,
not frozen, without slots, with a field out of ``__init__`` or an ``InitVar``, or with a
``__post_init__``.

In a module compiled by mypyc (``IDENTITY_WORKER_COMPILE=1``) a dataclass is a native class:
its attributes are descriptors of the C struct (no ``__slots__``), read directly by compiled
code, but its ``__init__`` is still the one ``dataclasses`` generates. ``fast_init`` quickens it
the same way. It is called after the class statement, ``fast_init(Cls)``, not as a decorator:
mypyc compiles a class with a decorator it does not know as an ordinary Python class.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_NO_VALUE: Any = dataclasses.MISSING


def fast_init(cls: type[T]) -> type[T]:
    """Replace the generated ``__init__`` of the frozen, slotted dataclass ``cls`` (called
    after its class statement; also usable as a class decorator, above ``@dataclass``)."""
    params = getattr(cls, "__dataclass_params__", None)
    native = "__mypyc_attrs__" in cls.__dict__  # compiled by mypyc: a native class
    if params is None or not params.frozen or not (native or "__slots__" in cls.__dict__):
        raise TypeError(f"{cls.__name__}: fast_init needs a frozen dataclass with slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: fast_init does not call __post_init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: fast_init needs every field in __init__")
    scope: dict[str, Any] = {"_NO_VALUE": _NO_VALUE}
    positional: list[str] = []
    keyword: list[str] = []
    lines: list[str] = []
    for number, f in enumerate(fields):
        setter, value = f"_set{number}", f.name
        scope[setter] = cls.__dict__[f.name].__set__  # the slot's (native attribute's) descriptor
        param = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default{number}"] = f.default
            param += f"=_default{number}"
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory{number}"] = f.default_factory
            param += "=_NO_VALUE"
            value = f"_factory{number}() if {f.name} is _NO_VALUE else {f.name}"
        (keyword if f.kw_only else positional).append(param)
        lines.append(f"    {setter}(self, {value})")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({signature}) -> None:\n" + "\n".join(lines or ["    pass"]) + "\n"
    exec(source, scope)  # noqa: S102 (built from the dataclass's own field names)
    init = scope["__init__"]
    if _parameters(init) != _parameters(cls.__init__):  # e.g. an InitVar
        raise TypeError(f"{cls.__name__}: fast_init cannot reproduce its __init__")
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    type.__setattr__(cls, "__init__", init)
    return cls


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]
