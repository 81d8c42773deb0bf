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

A class may write its own ``__init__`` in its body, assigning each field in order (``self.a = a``,
with the same parameters, and ``None`` standing for a default factory). Compiled, that
``__init__`` is native code writing the struct directly (about 60 ns against 390 for the
quickened one): ``fast_init`` keeps it, once it checked its parameters are the fields'.
Interpreted, such an assignment would meet the frozen class's ``__setattr__``: ``fast_init``
replaces it as any other.
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
    own = cls.__dict__.get("__init__")
    if native and own is not None and not inspect.isfunction(own):
        # the class's own __init__, compiled: kept if its parameters are the fields'
        try:
            own_signature = inspect.signature(cls)
        except ValueError:  # mypyc writes none when a default is not a literal
            return cls  # tests/unit/test_fast_init.py calls each such class with its fields
        wanted = [(f.name, f.kw_only) for f in fields]
        given = [
            (p.name, p.kind is inspect.Parameter.KEYWORD_ONLY)
            for p in own_signature.parameters.values()
        ]
        if given != wanted:
            raise TypeError(f"{cls.__name__}: its own __init__ does not take its fields")
        return cls
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
