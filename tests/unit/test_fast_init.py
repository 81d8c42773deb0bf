"""``fast_init``: the quicker ``__init__`` of frozen, slotted dataclasses builds the same objects
as the generated one, and refuses the classes it would not reproduce."""

from __future__ import annotations

import dataclasses
import inspect
import types
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import build
from worker.codec.encode import EncodedRecord
from worker.codec.envelope import InputEvent
from worker.fast_init import fast_init
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    Outcome,
    PreparedOp,
    PropertyUpdates,
    Resolution,
)
from worker.kafka.records import OutputRecord, RawMessage
from worker.pipeline.items import Decoded, Output, OutputKind
from worker.store.engine.call import Op
from worker.store.engine.context import Person
from worker.store.engine.rules import Part
from worker.store.record_format import Record, State

QUICKENED = (
    InputEvent,
    IdentityEvent,
    PreparedOp,
    PropertyUpdates,
    Resolution,
    Decoded,
    Output,
    RawMessage,
    OutputRecord,
    EncodedRecord,
    State,
)


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str | None
    c: tuple[int, ...] = ()
    d: dict[str, int] = field(default_factory=dict)
    e: int = field(default=7, kw_only=True)


@fast_init
@dataclass(frozen=True, slots=True)
class Quick:
    a: int
    b: str | None
    c: tuple[int, ...] = ()
    d: dict[str, int] = field(default_factory=dict)
    e: int = field(default=7, kw_only=True)


def _fields(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))


@given(
    a=st.integers(),
    b=st.none() | st.text(max_size=5),
    c=st.none() | st.tuples(st.integers()),
    d=st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    e=st.none() | st.integers(),
)
def test_it_builds_what_the_generated_init_builds(
    a: int, b: str | None, c: tuple[int] | None, d: dict[str, int] | None, e: int | None
) -> None:
    given_ = {k: v for k, v in {"c": c, "d": d, "e": e}.items() if v is not None}
    plain, quick = Plain(a, b, **given_), Quick(a, b, **given_)  # type: ignore[arg-type]
    assert _fields(plain) == _fields(quick)
    assert quick == Quick(a, b=b, **given_)  # type: ignore[arg-type]
    assert dataclasses.replace(quick, a=a + 1).a == a + 1


def test_the_signature_defaults_and_frozenness_are_kept() -> None:
    assert [(p.name, p.kind) for p in inspect.signature(Quick).parameters.values()] == [
        (p.name, p.kind) for p in inspect.signature(Plain).parameters.values()
    ]
    first, second = Quick(1, None), Quick(1, None)
    assert first.d == {}
    assert first.d is not second.d  # a fresh object from the factory
    assert first.e == 7
    with pytest.raises(TypeError):
        Quick(1, None, (), {}, 8)  # type: ignore[call-arg]  # e is keyword-only
    with pytest.raises(TypeError):
        Quick(1)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.a = 2  # type: ignore[misc]


_RAW = RawMessage("topic", 0, 0, None, None)
_IDENTITY = IdentityEvent("tenant", EventKind.TRACK, "id", "uuid", 0)
_INPUT: dict[str, Any] = {
    "tenant": "tenant",
    "kind": EventKind.TRACK,
    "uuid": "uuid",
    "distinct_id": "id",
    "event": None,
    "timestamp_ms": 0,
    "sent_at_ms": None,
    "other_id": None,
    "merge_dangerously": False,
    "process_person": True,
    "is_backend": False,
    "properties": {},
    "updates": PropertyUpdates(),
    "raw_format": "json",
}
REQUIRED: dict[type[Any], dict[str, Any]] = {
    # values of the fields' types: a class compiled by mypyc checks them
    InputEvent: _INPUT,
    IdentityEvent: {
        "tenant": "t",
        "kind": EventKind.TRACK,
        "distinct_id": "d",
        "uuid": "u",
        "timestamp_ms": 0,
    },
    PreparedOp: {"event": _IDENTITY, "merge_with": None, "updates": PropertyUpdates()},
    PropertyUpdates: {},
    Resolution: {
        "event_uuid": "u",
        "outcome": Outcome.EMIT,
        "person_id": None,
        "person_mode": None,
        "properties": {},
        "created_at_ms": None,
        "is_identified": False,
    },
    Decoded: {"message": _RAW, "event": InputEvent(**_INPUT), "identity": _IDENTITY},
    Output: {"source": _RAW, "record": OutputRecord("topic", None), "kind": OutputKind.ENRICHED},
    RawMessage: {"topic": "topic", "partition": 0, "offset": 0, "key": None, "value": None},
    OutputRecord: {"topic": "topic", "value": None},
    EncodedRecord: {"key": b"", "value": b""},
    State: {"code": b"s", "order": b"1"},
}


@pytest.mark.parametrize("cls", QUICKENED, ids=lambda c: c.__name__)
def test_the_worker_classes_are_quickened_and_still_frozen(cls: type[Any]) -> None:
    init = cls.__init__
    if isinstance(init, types.FunctionType):
        assert init.__code__.co_filename == "<string>"  # fast_init's, not dataclasses'
    else:  # compiled: the class's own __init__, native code
        assert build.kind() == "compiled"
        assert "__mypyc_attrs__" in cls.__dict__
    fields = dataclasses.fields(cls)
    required = REQUIRED[cls]
    assert set(required) == {f.name for f in fields if _required(f)}
    obj = cls(**required)
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(obj, f.name) == f.default
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(obj, f.name) == f.default_factory()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, fields[0].name, None)
    values = [getattr(obj, f.name) for f in fields]
    positional = [f for f in fields if not f.kw_only]
    again = cls(
        *values[: len(positional)],
        **{f.name: getattr(obj, f.name) for f in fields[len(positional) :]},
    )
    assert _fields(again) == tuple(values)
    assert again == obj
    by_name = cls(**{f.name: getattr(obj, f.name) for f in fields})
    assert _fields(by_name) == tuple(values)
    assert dataclasses.replace(obj) == obj


MUTABLE: dict[type[Any], dict[str, Any]] = {
    # the engine's mutable dataclasses, built per op: each writes its own __init__
    Op: {
        "process": True,
        "dangerous": False,
        "merge": False,
        "into": b"a",
        "into_person_id": "p",
        "other": b"",
        "other_person_id": "",
        "ts": 1,
        "ts_text": b"1",
        "ord": b"o",
        "props": [],
    },
    Person: {"person_id": "p"},
    Part: {
        "root": b"r",
        "warnings": [],
        "overrides": [],
        "merged": False,
        "created": True,
        "remade": False,
        "bump": False,
        "moved": False,
    },
    Record: {
        "person_id": None,
        "implicit": True,
        "created_at": 1,
        "last_seen": 2,
        "identified": False,
        "spilled": False,
        "version": 3,
        "id_count": 4,
        "snapshot": b"{}",
        "props": b"",
        "others": b"",
    },
}


@pytest.mark.parametrize("cls", list(MUTABLE), ids=lambda c: c.__name__)
def test_the_engine_s_own_inits_take_their_fields(cls: type[Any]) -> None:
    """Their own ``__init__`` (native code when compiled) has the dataclass's fields in order,
    with their defaults; a default factory gives each object its own value."""
    if build.kind() == "compiled":
        assert "__mypyc_attrs__" in cls.__dict__
    fields = dataclasses.fields(cls)
    required = MUTABLE[cls]
    assert set(required) == {f.name for f in fields if _required(f)}
    obj, other = cls(**required), cls(**required)
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(obj, f.name) == f.default
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(obj, f.name) == f.default_factory()
            assert getattr(obj, f.name) is not getattr(other, f.name)
    values = [getattr(obj, f.name) for f in fields]
    again = cls(*values)  # the fields in order, then by name
    assert _fields(again) == tuple(values)
    assert again == obj
    assert _fields(cls(**{f.name: getattr(obj, f.name) for f in fields})) == tuple(values)


def test_a_class_s_own_init_must_take_its_fields() -> None:
    @dataclass(frozen=True, slots=True)
    class Renamed:
        a: int

        def __init__(self, b: int) -> None:
            object.__setattr__(self, "a", b)

    with pytest.raises(TypeError):
        fast_init(Renamed)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def test_it_refuses_what_it_would_not_reproduce() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class OutOfInit:
        a: int
        b: int = field(default=0, init=False)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        scale: InitVar[int] = 1

    for cls in (NoSlots, NotFrozen, PostInit, OutOfInit, WithInitVar, int):
        with pytest.raises(TypeError):
            fast_init(cls)
