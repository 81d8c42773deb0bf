"""Every rule of contract A2-A6 and every choice of docs/IDENTITY.md, on the reference model."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from worker.identity.config import IdentityConfig
from worker.identity.ids import case_fold, person_id_for
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    JsonValue,
    Outcome,
    PersonMode,
    PreparedOp,
    PropertyUpdates,
    Resolution,
    WarningKind,
)
from worker.identity.properties import canonical_json
from worker.identity.reference import ReferenceStore
from worker.identity.rules import prepare
from worker.identity.timestamps import normalize_timestamp
from worker.identity.validation import is_illegal_id, is_overlong

T = "tenant"
_seq = itertools.count(1)


def ev(kind: str, distinct_id: str, ts: int | None = None, **fields: object) -> IdentityEvent:
    n = next(_seq)
    return IdentityEvent(
        tenant=T,
        kind=EventKind(kind),
        distinct_id=distinct_id,
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        timestamp_ms=1_000_000 + n if ts is None else ts,
        **fields,  # type: ignore[arg-type]
    )


def kinds(resolution: Resolution) -> list[str]:
    return [w.kind.value for w in resolution.warnings]


def one(store: ReferenceStore, event: IdentityEvent) -> Resolution:
    (resolution,) = store.resolve_batch(T, [event], 0)
    return resolution


@pytest.fixture
def store() -> ReferenceStore:
    return ReferenceStore(IdentityConfig())


# -- A5: illegal ids ---------------------------------------------------------------------------

CONFIG = IdentityConfig()


@pytest.mark.parametrize(
    "distinct_id",
    [
        "",
        "   ",
        "\t\n",
        "anonymous",
        "ANONYMOUS",
        "Guest",
        "distinct_id",
        "DistinctId",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "FALSE",
        "[object Object]",
        "NaN",
        "None",
        "none",
        "null",
        "0",
        "'null'",
        '"guest"',
        "'Anonymous'",
        " null ",
        '"0"',
    ],
)
def test_illegal_ids(distinct_id: str) -> None:
    assert is_illegal_id(distinct_id, CONFIG)


@pytest.mark.parametrize(
    "distinct_id",
    [
        "NULL",
        "Null",
        "nan",
        "NONE",
        "[object object]",
        "00",
        "user-1",
        "'null",
        "null'",
        "''null''",
        "anonymous-1",
        "guest@example.com",
        "1",
    ],
)
def test_legal_ids(distinct_id: str) -> None:
    assert not is_illegal_id(distinct_id, CONFIG)


def test_illegal_lists_are_configurable() -> None:
    config = IdentityConfig(
        illegal_ids_case_insensitive=("visitor",), illegal_ids_case_sensitive=()
    )
    assert is_illegal_id("VISITOR", config)
    assert not is_illegal_id("null", config)


def test_length_limit_is_400_characters() -> None:
    assert not is_overlong("x" * 400, CONFIG)
    assert is_overlong("x" * 401, CONFIG)


# -- prepare: the stateless rules -----------------------------------------------------------------


def test_overlong_distinct_id_is_rejected() -> None:
    result = prepare(ev("track", "x" * 401), CONFIG)
    assert isinstance(result, Resolution)
    assert result.outcome is Outcome.REJECT
    assert kinds(result) == ["skipping_event_invalid_distinct_id"]


@pytest.mark.parametrize("kind", ["identify", "alias"])
def test_personless_merging_events_are_rejected(kind: str) -> None:
    result = prepare(ev(kind, "u", other_id="a", process_person=False), CONFIG)
    assert isinstance(result, Resolution)
    assert result.outcome is Outcome.REJECT
    assert kinds(result) == ["invalid_event_when_process_person_profile_is_false"]


def test_illegal_own_id_is_emitted_personless_without_store() -> None:
    result = prepare(ev("track", "null", updates=PropertyUpdates(set=(("a", 1),))), CONFIG)
    assert isinstance(result, Resolution)
    assert result.outcome is Outcome.EMIT
    assert result.person_mode is PersonMode.PROPERTYLESS
    assert result.person_id == person_id_for(T, "null")
    assert result.properties == {}
    assert kinds(result) == ["illegal_distinct_id"]


def test_identify_from_an_illegal_id_warns_twice() -> None:
    result = prepare(ev("identify", "anonymous", other_id="user"), CONFIG)
    assert isinstance(result, Resolution)
    assert kinds(result) == ["cannot_merge_with_illegal_distinct_id", "illegal_distinct_id"]


def test_illegal_other_id_means_no_merge() -> None:
    result = prepare(ev("alias", "user", other_id="'undefined'"), CONFIG)
    assert isinstance(result, PreparedOp)
    assert result.merge_with is None
    assert kinds(result) == ["cannot_merge_with_illegal_distinct_id"]  # type: ignore[arg-type]


def test_overlong_other_id_means_no_merge() -> None:
    result = prepare(ev("identify", "user", other_id="y" * 401), CONFIG)
    assert isinstance(result, PreparedOp)
    assert result.merge_with is None


def test_same_ids_means_no_merge_and_no_warning() -> None:
    result = prepare(ev("identify", "user", other_id="user"), CONFIG)
    assert isinstance(result, PreparedOp)
    assert result.merge_with is None
    assert result.warnings == ()


def test_track_never_merges() -> None:
    result = prepare(ev("track", "user", other_id="other"), CONFIG)
    assert isinstance(result, PreparedOp)
    assert result.merge_with is None


@pytest.mark.parametrize(
    ("updates", "reason"),
    [
        (PropertyUpdates(set=(("k" * 1025, 1),)), "key_too_long"),
        (PropertyUpdates(unset=("k" * 1025,)), "key_too_long"),
        (PropertyUpdates(set_once=(("k", "v" * 1025),)), "value_too_long"),
        (PropertyUpdates(set=(("ok", 1), ("k", "v" * 1025))), "value_too_long"),
    ],
)
def test_length_limits_refuse_the_whole_update(updates: PropertyUpdates, reason: str) -> None:
    result = prepare(ev("identify", "user", other_id="anon", updates=updates), CONFIG)
    assert isinstance(result, PreparedOp)
    assert result.updates == PropertyUpdates()
    assert result.merge_with == "anon"  # the event still merges
    (warning,) = result.warnings
    assert warning.kind is WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION
    assert warning.details == {"reason": reason}


def test_values_at_the_length_limit_pass() -> None:
    updates = PropertyUpdates(set=(("k" * 1024, "v" * 1024), ("n", 10**30)))
    result = prepare(ev("track", "user", updates=updates), CONFIG)
    assert isinstance(result, PreparedOp)
    assert result.updates == updates


# -- A1: timestamps ---------------------------------------------------------------------------


def test_sent_at_corrects_client_clock_skew() -> None:
    # the client's clock is 10 s fast: it says sent at 20_000, the server got it at 15_000
    assert normalize_timestamp(18_000, 20_000, 15_000, 1_000) == (13_000, None)


def test_future_timestamps_are_clamped_with_a_warning() -> None:
    ts, warning = normalize_timestamp(100_000, None, 10_000, 50_000)
    assert ts == 10_000
    assert warning is not None
    assert warning.kind is WarningKind.EVENT_TIMESTAMP_IN_FUTURE
    assert normalize_timestamp(60_000, None, 10_000, 50_000) == (60_000, None)


# -- A2/A3: persons and merges --------------------------------------------------------------------


def test_track_creates_a_person_with_a_deterministic_id(store: ReferenceStore) -> None:
    r = one(store, ev("track", "anon", ts=5000))
    assert r.person_id == person_id_for(T, "anon")
    assert (r.person_created, r.is_identified, r.created_at_ms) == (True, False, 5000)
    assert r.person_mode is PersonMode.FULL
    assert ReferenceStore().resolve_batch(T, [ev("track", "anon")], 0)[0].person_id == r.person_id


def test_the_same_id_in_two_tenants_is_two_persons(store: ReferenceStore) -> None:
    a = store.resolve_batch("a", [IdentityEvent("a", EventKind.TRACK, "d", "u1", 1)], 0)[0]
    b = store.resolve_batch(
        "b", [IdentityEvent("b", EventKind.IDENTIFY, "d", "u2", 1, other_id="x")], 0
    )[0]
    assert a.person_id != b.person_id
    assert store.person_for("a", "x") is None


def test_identify_without_anonymous_id_does_not_identify(store: ReferenceStore) -> None:
    r = one(store, ev("identify", "user"))
    assert (r.person_created, r.is_identified, r.merged) == (True, False, False)


def test_a3_3_neither_has_a_person(store: ReferenceStore) -> None:
    r = one(store, ev("identify", "user", other_id="anon"))
    assert r.person_id == person_id_for(T, "user")
    assert (r.person_created, r.merged, r.is_identified) == (True, True, True)
    (o,) = r.overrides
    assert (o.distinct_id, o.old_person_id, o.new_person_id) == (
        "anon",
        person_id_for(T, "anon"),
        r.person_id,
    )
    person = store.person_for(T, "anon")
    assert person is not None
    assert person.distinct_ids == {"user", "anon"}
    assert person.version == 0


def test_a3_4_the_id_without_person_joins_and_the_person_keeps_its_id(
    store: ReferenceStore,
) -> None:
    anon = one(store, ev("track", "anon"))
    r = one(store, ev("identify", "user", other_id="anon"))
    assert r.person_id == anon.person_id
    assert (r.merged, r.is_identified, r.person_created) == (True, True, False)
    assert [(o.distinct_id, o.old_person_id) for o in r.overrides] == [
        ("user", person_id_for(T, "user"))
    ]
    person = store.person_for(T, "user")
    assert person is not None
    assert person.version == 1


def test_a3_4_other_direction(store: ReferenceStore) -> None:
    user = one(store, ev("track", "user"))
    r = one(store, ev("alias", "user", other_id="crm"))
    assert r.person_id == user.person_id
    assert [o.distinct_id for o in r.overrides] == ["crm"]


def test_a3_5_same_person_identifies_only(store: ReferenceStore) -> None:
    one(store, ev("identify", "user", other_id="anon"))
    before = store.person_for(T, "user")
    r = one(store, ev("identify", "anon", other_id="user"))
    assert (r.merged, r.overrides, r.warnings) == (False, (), ())
    after = store.person_for(T, "user")
    assert before is not None
    assert after is not None
    assert (after.version, after.is_identified, after.distinct_ids) == (
        before.version,
        True,
        before.distinct_ids,
    )  # only last_seen moved


def test_a3_6_merge_into_unidentified_other(store: ReferenceStore) -> None:
    a = one(store, ev("track", "a", ts=2000, updates=PropertyUpdates(set=(("x", 1),))))
    b = one(store, ev("track", "b", ts=1000, updates=PropertyUpdates(set=(("y", 2),))))
    one(store, ev("track", "b2"))
    one(store, ev("alias", "b", other_id="b2"))  # b's person now holds b and b2 (identified!)
    one(store, ev("track", "c", ts=500))
    r = one(store, ev("identify", "a", other_id="c", ts=3000))
    assert r.person_id == a.person_id
    assert r.merged
    assert r.created_at_ms == 500  # the earlier of the two
    assert [(o.distinct_id, o.old_person_id) for o in r.overrides] == [("c", person_id_for(T, "c"))]
    assert b.person_id != r.person_id


def test_a3_6_refused_when_other_is_identified(store: ReferenceStore) -> None:
    u1 = one(store, ev("identify", "u1", other_id="a1"))
    u2 = one(store, ev("identify", "u2", other_id="a2"))
    r = one(store, ev("identify", "u1", other_id="u2"))
    assert r.person_id == u1.person_id
    assert kinds(r) == ["cannot_merge_already_identified"]
    assert (r.merged, r.overrides) == (False, ())
    p2 = store.person_for(T, "a2")
    assert p2 is not None
    assert p2.person_id == u2.person_id


def test_a3_6_merge_dangerously_bypasses_the_guard(store: ReferenceStore) -> None:
    u1 = one(store, ev("identify", "u1", other_id="a1", updates=PropertyUpdates(set=(("x", 1),))))
    u2 = one(store, ev("identify", "u2", other_id="a2", updates=PropertyUpdates(set=(("y", 2),))))
    v1 = store.person_for(T, "u1").version  # type: ignore[union-attr]
    v2 = store.person_for(T, "u2").version  # type: ignore[union-attr]
    r = one(store, ev("alias", "u1", other_id="u2", merge_dangerously=True))
    assert r.person_id == u1.person_id
    assert r.properties == {"x": 1, "y": 2}
    assert [(o.distinct_id, o.old_person_id, o.new_person_id) for o in r.overrides] == [
        ("a2", u2.person_id, u1.person_id),
        ("u2", u2.person_id, u1.person_id),
    ]
    person = store.person_for(T, "a2")
    assert person is not None
    assert person.distinct_ids == {"u1", "a1", "u2", "a2"}
    assert person.version == max(v1, v2) + 1
    assert len(store.persons(T)) == 1


def test_a3_7_cap_refuses_a_join_whole() -> None:
    store = ReferenceStore(IdentityConfig(max_distinct_ids_per_person=2))
    one(store, ev("identify", "u", other_id="a"))  # 2 ids: at the cap
    r = one(store, ev("alias", "u", other_id="b"))
    assert kinds(r) == ["merge_limit_exceeded"]
    assert store.person_for(T, "b") is None
    r2 = one(store, ev("identify", "c", other_id="u"))  # c has no person, u's is full
    assert kinds(r2) == ["merge_limit_exceeded"]
    assert r2.person_created
    assert r2.is_identified
    assert r2.person_id == person_id_for(T, "c")


def test_a3_7_cap_refuses_a_merge_whole_but_allows_exactly_the_cap() -> None:
    store = ReferenceStore(IdentityConfig(max_distinct_ids_per_person=4))
    one(store, ev("identify", "u1", other_id="a1"))
    one(store, ev("track", "x"))
    one(store, ev("alias", "x", other_id="y"))  # x, y: identified
    r = one(store, ev("alias", "u1", other_id="x", merge_dangerously=True))
    assert r.merged  # 2 + 2 == 4: allowed
    one(store, ev("track", "z"))
    r = one(store, ev("alias", "z", other_id="u1", merge_dangerously=True))
    assert kinds(r) == ["merge_limit_exceeded"]  # 1 + 4 > 4
    assert not r.merged
    z = store.person_for(T, "z")
    assert z is not None
    assert z.distinct_ids == {"z"}


def test_a3_3_with_a_cap_of_one_creates_into_alone() -> None:
    store = ReferenceStore(IdentityConfig(max_distinct_ids_per_person=1))
    r = one(store, ev("identify", "u", other_id="a"))
    assert kinds(r) == ["merge_limit_exceeded"]
    assert r.person_created
    assert store.person_for(T, "a") is None


# -- A6: personless ---------------------------------------------------------------------------


def test_personless_without_a_person(store: ReferenceStore) -> None:
    r = one(store, ev("track", "p", process_person=False, updates=PropertyUpdates(set=(("a", 1),))))
    assert r.person_id == person_id_for(T, "p")
    assert (r.person_mode, r.properties, r.created_at_ms) == (PersonMode.PROPERTYLESS, {}, None)
    assert store.person_for(T, "p") is None


def test_personless_with_a_person_and_force_upgrade_after_a_minute(store: ReferenceStore) -> None:
    created = one(store, ev("track", "p", ts=100_000, updates=PropertyUpdates(set=(("a", 1),))))
    at_minute = one(store, ev("track", "p", ts=160_000, process_person=False))
    after = one(store, ev("track", "p", ts=160_001, process_person=False))
    assert at_minute.person_mode is PersonMode.PROPERTYLESS
    assert after.person_mode is PersonMode.FORCE_UPGRADE
    assert after.person_id == created.person_id
    assert after.properties == {}
    person = store.person_for(T, "p")
    assert person is not None
    # personless events do not touch the person (last seen: its event's minute, 100 s -> 60 s)
    assert person.last_seen_ms == 60_000


# -- properties on the person -------------------------------------------------------------------


def test_properties_after_this_events_own_updates(store: ReferenceStore) -> None:
    r1 = one(
        store, ev("track", "u", updates=PropertyUpdates(set=(("a", 1),), set_once=(("b", 2),)))
    )
    r2 = one(
        store,
        ev("track", "u", updates=PropertyUpdates(set_once=(("a", 9), ("c", 3)), unset=("b",))),
    )
    assert r1.properties == {"a": 1, "b": 2}
    assert r2.properties == {"a": 1, "c": 3}


def test_size_limit_refuses_growth_but_not_the_event() -> None:
    store = ReferenceStore(IdentityConfig(max_properties_bytes=20))
    ok = one(store, ev("track", "u", updates=PropertyUpdates(set=(("k", "0123456789"),))))
    assert ok.properties == {"k": "0123456789"}  # 1 + 12 = 13 bytes
    big = one(store, ev("track", "u", updates=PropertyUpdates(set=(("k2", "0123456789"),))))
    assert kinds(big) == ["person_properties_size_violation"]
    assert big.warnings[0].details == {"reason": "properties_too_large"}
    assert big.outcome is Outcome.EMIT
    assert big.properties == {"k": "0123456789"}
    shrink = one(store, ev("track", "u", updates=PropertyUpdates(set=(("k", "x"),))))
    assert shrink.properties == {"k": "x"}


def test_version_is_unchanged_by_a_no_op_and_bumped_by_a_change(store: ReferenceStore) -> None:
    e = ev("track", "u", updates=PropertyUpdates(set=(("a", 1),)))
    one(store, e)
    assert store.person_for(T, "u").version == 0  # type: ignore[union-attr]
    one(store, e)  # a replay
    assert store.person_for(T, "u").version == 0  # type: ignore[union-attr]
    one(store, ev("track", "u"))  # no property change, only last_seen
    assert store.person_for(T, "u").version == 0  # type: ignore[union-attr]
    one(store, ev("track", "u", updates=PropertyUpdates(set=(("a", 2),))))
    assert store.person_for(T, "u").version == 1  # type: ignore[union-attr]


# -- purity -------------------------------------------------------------------------------------


PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "string",
        "typing",
        "uuid",
    }
)
"""The standard-library modules the identity rules may import: no I/O, no clock, no logging,
no randomness, no threads (so not os, time, datetime, logging, random, socket, threading)."""

IDENTITY = Path(__file__).resolve().parents[2] / "worker" / "identity"

PURE_HELPERS = frozenset({"worker.fast_init"})
"""Project modules outside ``worker.identity`` the rules may import: each is checked below to
import nothing but pure modules (``fast_init`` builds a dataclass's ``__init__`` from its own
field names, with ``exec``, at import; ``inspect`` only reads that signature)."""


def _imported_modules(source: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside worker.identity
                found.append((node.lineno, "worker.identity." + (node.module or "")))
            else:
                found.append((node.lineno, node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"__import__", "exec", "eval", "open"}
        ):
            found.append((node.lineno, f"<{node.func.id}()>"))
    return found


@pytest.mark.parametrize("source", sorted(IDENTITY.glob("*.py")), ids=lambda p: p.name)
def test_identity_modules_import_only_pure_modules(source: Path) -> None:
    """Checked statically: ``os`` and ``time`` are always in ``sys.modules``, so watching what
    an import adds to it cannot see them."""
    bad = [
        f"line {line}: {module}"
        for line, module in _imported_modules(source)
        if module.split(".")[0] not in PURE_STDLIB
        and module != "worker.identity"
        and not module.startswith("worker.identity.")
        and module not in PURE_HELPERS
    ]
    assert bad == [], f"{source.name} imports beyond the pure standard library: {bad}"


@pytest.mark.parametrize("module", sorted(PURE_HELPERS))
def test_the_helpers_the_rules_use_import_only_pure_modules(module: str) -> None:
    source = IDENTITY.parent.parent / (module.replace(".", "/") + ".py")
    bad = [
        f"line {line}: {name}"
        for line, name in _imported_modules(source)
        if name.split(".")[0] not in PURE_STDLIB | {"inspect"} and name != "<exec()>"
    ]
    assert bad == [], f"{module} imports beyond the pure standard library: {bad}"


def test_the_import_check_sees_what_it_must(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport time as clock\nfrom datetime import datetime\n"
        "from . import model\nfrom worker.store import codec\n"
        "def f() -> None:\n    import logging\n    __import__('random')\n"
    )
    assert _imported_modules(sample) == [
        (1, "os"),
        (2, "time"),
        (3, "datetime"),
        (4, "worker.identity."),
        (5, "worker.store"),
        (7, "logging"),
        (8, "<__import__()>"),
    ]


def test_identity_package_does_no_io() -> None:
    """Importing every module of worker.identity at run time pulls in no I/O library either
    (this sees indirect imports, which the static check above does not)."""
    root = IDENTITY.parents[1]
    modules = sorted(p.stem for p in IDENTITY.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys; before = set(sys.modules)\n"
        + "".join(f"import worker.identity.{m}\n" for m in modules)
        + "new = set(sys.modules) - before\n"
        + "bad = {'redis', 'confluent_kafka', 'prometheus_client', 'socket', 'logging',"
        + " 'datetime', 'threading', 'fastavro', 'random', 'worker.store', 'worker.pipeline'}"
        + " & ({m.split('.')[0] for m in new} | {'.'.join(m.split('.')[:2]) for m in new})\n"
        + "print(sorted(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "[]"
    for source in IDENTITY.glob("*.py"):
        text = source.read_text()
        for clock in ("time.time", "datetime.now", "time.monotonic", "datetime.utcnow"):
            assert clock not in text, f"{source.name} reads the clock ({clock})"


# -- case collisions (issue 10) -----------------------------------------------------------------


def test_case_fold_is_ascii_only() -> None:
    assert case_fold("User-1 ÉTÉ Ä") == "user-1 ÉtÉ Ä"
    assert case_fold("\ud800AB") == "\ud800ab"


def test_an_id_differing_only_by_case_gets_its_own_person_and_a_warning(
    store: ReferenceStore,
) -> None:
    first = one(store, ev("track", "user-1"))
    assert kinds(first) == []
    r = one(store, ev("track", "User-1"))
    assert r.person_id == person_id_for(T, "User-1") != first.person_id
    assert (r.person_created, kinds(r)) == (True, ["distinct_id_case_collision"])
    again = one(store, ev("track", "User-1"))  # known now: no new id, no warning
    assert kinds(again) == []
    third = one(store, ev("track", "USER-1"))  # a third variant collides with both
    assert kinds(third) == ["distinct_id_case_collision"]
    lower_last = ReferenceStore(IdentityConfig())
    one(lower_last, ev("track", "ABC"))
    assert kinds(one(lower_last, ev("track", "abc"))) == ["distinct_id_case_collision"]


def test_a_case_collision_is_found_within_one_merge_and_for_a_joining_id(
    store: ReferenceStore,
) -> None:
    r = one(store, ev("identify", "Anon", other_id="ANON"))  # A3.3: both new, same fold
    assert (r.merged, kinds(r)) == (True, ["distinct_id_case_collision"])
    one(store, ev("track", "user"))
    joined = one(store, ev("identify", "user", other_id="anon"))  # A3.4: anon joins user
    assert joined.merged
    assert kinds(joined) == ["distinct_id_case_collision"]


def test_no_case_collision_for_non_ascii_case_known_ids_or_personless_events(
    store: ReferenceStore,
) -> None:
    one(store, ev("track", "émile"))
    assert kinds(one(store, ev("track", "Émile"))) == []  # non-ASCII case: no fold
    one(store, ev("track", "bob"))
    assert kinds(one(store, ev("track", "BOB", process_person=False))) == []  # made nothing known
    assert kinds(one(store, ev("track", "BOB"))) == ["distinct_id_case_collision"]
    assert kinds(one(store, ev("identify", "bob", other_id="BOB"))) == []  # both known: a merge


# -- property values compared as JSON, not as Python values ------------------------------------


@pytest.mark.parametrize(("before", "after"), [(0, False), (1, True), (1.0, True), (False, 0)])
def test_a_value_whose_json_changes_is_a_change_though_python_finds_it_equal(
    store: ReferenceStore, before: JsonValue, after: JsonValue
) -> None:
    """``0 == False`` in Python, not in JSON: the same order key (a tie, decided by the values'
    canonical text) or a later one must still count ``0`` → ``false`` as a change, as the Redis
    store does."""
    first = ev("track", "u", 1_000, updates=PropertyUpdates(set=(("k", before),)))
    one(store, first)
    again = IdentityEvent(
        tenant=T,
        kind=EventKind.TRACK,
        distinct_id="u",
        uuid=first.uuid,
        # the same order key when the new text wins the tie, else a later one
        timestamp_ms=first.timestamp_ms + (canonical_json(after) < canonical_json(before)),
        updates=PropertyUpdates(set=(("k", after),)),
    )
    resolution = one(store, again)
    assert resolution.person_changed
    assert resolution.person_version == 1
    assert type(resolution.properties["k"]) is type(after)
