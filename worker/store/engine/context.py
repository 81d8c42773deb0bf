"""One call's state (the script's ``ctx``): the union-find (``union_find.lua``), person records
(``records.lua``), case folds (``case_fold.lua``), deletions (``deleted.lua``), and the state the
groups, buffer and receipts modules keep in it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from worker.store import protocol, record_format
from worker.store.engine.cache import DecodeCache
from worker.store.engine.call import Config, Op
from worker.store.engine.state import EngineError, TenantState, Unsupported
from worker.store.record_format import State

PARENT = ord("P")


@dataclass(slots=True)
class Person:
    """A person record, decoded (``load``), made (``create``), or a group's properties or
    memberships (``pseudo``: only its property fields count). The defaults are an empty one."""

    person_id: str
    implicit_root: bytes | None = None
    created_at: int = 0
    created_at_text: bytes = b"0"
    last_seen: int = 0
    identified: bool = False
    version: int = 0
    id_count: int = 0
    spilled: bool = False
    others: list[bytes] = field(default_factory=list)
    stored_members: bool = False
    snapshot: bytes | None = None
    props: bytes = b""
    meta: dict[bytes, bytes] | None = None
    """key -> code .. order key (stored form or text), as the script's metas"""
    vals: dict[bytes, bytes] | None = None
    properties_size: int = 0
    properties_changed: bool = False

    def __init__(  # compiled: native code (the generated one is interpreted)
        self,
        person_id: str,
        implicit_root: bytes | None = None,
        created_at: int = 0,
        created_at_text: bytes = b"0",
        last_seen: int = 0,
        identified: bool = False,
        version: int = 0,
        id_count: int = 0,
        spilled: bool = False,
        others: list[bytes] | None = None,
        stored_members: bool = False,
        snapshot: bytes | None = None,
        props: bytes = b"",
        meta: dict[bytes, bytes] | None = None,
        vals: dict[bytes, bytes] | None = None,
        properties_size: int = 0,
        properties_changed: bool = False,
    ) -> None:
        self.person_id = person_id
        self.implicit_root = implicit_root
        self.created_at = created_at
        self.created_at_text = created_at_text
        self.last_seen = last_seen
        self.identified = identified
        self.version = version
        self.id_count = id_count
        self.spilled = spilled
        self.others = [] if others is None else others
        self.stored_members = stored_members
        self.snapshot = snapshot
        self.props = props
        self.meta = meta
        self.vals = vals
        self.properties_size = properties_size
        self.properties_changed = properties_changed


class Ctx:
    """One call's state (the script's ``ctx``)."""

    def __init__(
        self, state: TenantState, config: Config, ops: list[Op], cache: DecodeCache | None = None
    ) -> None:
        self.state = state
        self.cache = cache if cache is not None else DecodeCache(0)
        self.config = config
        self.ops = ops
        self.values: dict[bytes, bytes | None] = {}
        self.written: set[bytes] = set()
        self.added: dict[bytes, list[bytes]] = {}
        self.fresh: set[bytes] = set()
        self.dropped: set[bytes] = set()
        self.persons: dict[bytes, Person] = {}
        self.dirty: set[bytes] = set()
        self.folds: dict[bytes, bool] = {}
        self.any_fold: bool | None = None
        self.any_deleted: bool | None = None
        self.folds_out: list[bytes] = []
        self.deleted: dict[bytes, str | None] = {}
        self.root_person_ids: dict[bytes, str] = {}
        """the person id each id creates (``records.lua``'s root_person_id): the one the op
        sent in ARGV for an id it names and that was never deleted, else computed"""
        for op in ops:
            self.root_person_ids[op.into] = op.into_person_id
            if op.other:
                self.root_person_ids[op.other] = op.other_person_id
        self.receipts_in: dict[tuple[bytes, bytes], bytes | None] = {}
        self.receipts_out: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self.groups = GroupState()
        # buffer.lua
        self.queues: dict[bytes, Queue] = {}
        self.entries_out: dict[bytes, tuple[bytes, bytes]] = {}
        self.pending_out: dict[bytes, int | None] = {}
        self.released: list[bytes] = []
        self.released_ids: list[bytes] = []
        self.release_out: dict[bytes, bytes] = {}
        self.buffer_touched = False
        self.waiting_delta = 0
        self.waiting_stored: int | None = None
        self.any_queue: bool | None = None

    # union_find.lua

    def get(self, distinct_id: bytes) -> bytes | None:
        if distinct_id in self.values:
            return self.values[distinct_id]
        value = self.state.value(distinct_id)
        self.values[distinct_id] = value
        return value

    def put(self, distinct_id: bytes, value: bytes) -> None:
        self.values[distinct_id] = value
        self.written.add(distinct_id)

    def find(self, distinct_id: bytes) -> bytes | None:
        value = self.get(distinct_id)
        if value is None:
            return None
        if not value:
            raise EngineError(f"unreadable entry for {distinct_id!r}")
        node = distinct_id
        path: list[bytes] = []
        while value[0] == PARENT:
            path.append(node)
            if len(path) > 100_000:
                raise EngineError(f"parent cycle at {distinct_id!r}")
            node = value[1:]
            found = self.get(node)
            if not found:
                raise EngineError(f"broken parent chain at {node!r}")
            value = found
        if not record_format.is_record(value):  # (b"R": a root made by this call)
            raise EngineError(f"unreadable entry for {node!r}")
        for walked in path[:-1]:
            self.put(walked, b"P" + node)
        return node

    def members_of(self, root: bytes, person: Person) -> list[bytes]:
        if not person.spilled:
            return [root, *person.others]
        ids: list[bytes] = []
        if root not in self.fresh:
            ids = record_format.parse_members(self.state.members(root) or b"")
        return ids + self.added.get(root, [])

    def spill(self, root: bytes, person: Person) -> None:
        self.added[root] = [root, *person.others]
        self.fresh.add(root)
        person.spilled, person.others = True, []

    def _add_ids(self, root: bytes, person: Person, ids: list[bytes]) -> None:
        if not person.spilled:
            person.others.extend(ids)
            if len(person.others) + 1 > protocol.MEMBERS_INLINE:
                self.spill(root, person)
            return
        self.added.setdefault(root, []).extend(ids)

    def join(self, distinct_id: bytes, root: bytes, person: Person) -> None:
        self.put(distinct_id, b"P" + root)
        self._add_ids(root, person, [distinct_id])
        person.id_count += 1

    def union(
        self,
        big: bytes,
        small: bytes,
        small_ids: list[bytes],
        small_person: Person,
        big_person: Person,
    ) -> None:
        self.put(small, b"P" + big)
        self._add_ids(big, big_person, small_ids)
        self.added.pop(small, None)
        self.fresh.discard(small)
        if small_person.stored_members:
            self.dropped.add(small)

    # records.lua

    def load(self, root: bytes) -> Person:
        person = self.persons.get(root)
        if person is not None:
            return person
        value = self.values.get(root)
        if value is None:
            raise EngineError(f"unreadable person record at {root!r}")
        try:
            record = self.cache.record(value)
        except record_format.RecordError as exc:
            raise EngineError(f"unreadable person record at {root!r}") from exc
        if record.format == record_format.FORMAT_6:
            raise Unsupported("a format 6 record (migrated by the script)")
        person = Person(
            person_id=record.person_id or self.root_person_id(root),
            implicit_root=root if record.implicit else None,
            created_at=record.created_at,
            created_at_text=b"%d" % record.created_at,
            last_seen=record.last_seen,
            identified=record.identified,
            version=record.version,
            id_count=record.id_count,
            spilled=record.spilled,
            others=[] if record.spilled else record_format.parse_members(record.others),
            stored_members=record.spilled,
            snapshot=record.snapshot,
            props=record.props,
        )
        self.persons[root] = person
        return person

    def create(self, distinct_id: bytes, person_id: str, ts: int, ts_text: bytes) -> Person:
        person = Person(
            person_id=person_id,
            created_at=ts,
            created_at_text=ts_text,
            last_seen=self.seen_at(ts),
            id_count=1,
            snapshot=b"{}",
            meta={},
            vals={},
            properties_changed=True,
        )
        self.persons[distinct_id] = person
        self.dirty.add(distinct_id)
        self.put(distinct_id, b"R")  # a root; its record replaces this at the end
        return person

    def seen_at(self, ts: int) -> int:
        return ts - ts % self.config.last_seen_ms

    def properties_of(self, person: Person) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        """The person's metas and value texts, decoded on first use."""
        if person.meta is None or person.vals is None:
            try:
                metas, vals = self.cache.states(person.snapshot or b"{}", person.props)
            except record_format.RecordError as exc:
                raise EngineError(f"unreadable properties of {person.person_id}") from exc
            person.meta = metas
            person.vals = vals
            person.properties_size = sum(len(k) + len(t) for k, t in vals.items())
        return person.meta, person.vals

    def snapshot(self, person: Person) -> bytes:
        if person.snapshot is None:
            _, vals = self.properties_of(person)
            person.snapshot = (
                b"{" + b",".join(record_format.quote(k) + b":" + t for k, t in vals.items()) + b"}"
            )
        return person.snapshot

    def encode(self, person: Person, root: bytes) -> bytes:
        implicit = person.implicit_root == root or person.person_id == self.root_person_id(root)
        if implicit:
            person.implicit_root = root
        if person.properties_changed:
            metas, vals = self.properties_of(person)
            meta = {key: State(m[:1], m[1:]) for key, m in metas.items()}
            person.snapshot, person.props = record_format.encode_props(meta, vals)
            person.properties_changed = False
            self.cache.keep_states(person.snapshot, person.props, metas, vals)
        record = record_format.Record(
            person_id=person.person_id,
            implicit=implicit,
            created_at=person.created_at,
            last_seen=person.last_seen,
            identified=person.identified,
            spilled=person.spilled,
            version=person.version,
            id_count=person.id_count,
            snapshot=self.snapshot(person),
            props=person.props,
            others=b"" if person.spilled else record_format.members_text(person.others),
        )
        value = record_format.encode(record)
        if implicit:
            record.person_id = None  # as ``decode`` reads it back without the root
        self.cache.keep_record(value, record)
        return value

    def root_person_id(self, root: bytes) -> str:
        person_id = self.root_person_ids.get(root)
        if person_id is None or self.deleted.get(root):
            person_id = record_format.person_uuid(self.state.tenant, root)
            self.root_person_ids[root] = person_id
        return person_id

    # case_fold.lua

    def _in_fold(self, folded: bytes) -> bool:
        known = self.folds.get(folded)
        if known is None:
            if self.any_fold is None:  # one read (and one check) while the tenant has no folds
                self.any_fold = self.state.any_fold()
            known = self.folds[folded] = self.any_fold and self.state.in_fold(folded)
        return known

    def collides(self, fresh: list[bytes]) -> bool:
        hit = False
        for distinct_id in fresh:
            folded = distinct_id.lower()  # ASCII only, as Lua's string.lower
            if folded != distinct_id:
                if self._in_fold(folded) or self.get(folded):
                    hit = True
                if not self.folds.get(folded):
                    self.folds[folded] = True
                    self.folds_out.append(folded)
            elif self._in_fold(distinct_id):
                hit = True
        return hit

    # deleted.lua

    def rederive(self, op: Op) -> None:
        into = self._deleted(op.into)
        if into:
            op.into_person_id = into
        if op.other != b"":
            other = self._deleted(op.other)
            if other:
                op.other_person_id = other

    def _deleted(self, distinct_id: bytes) -> str | None:
        if distinct_id not in self.deleted:
            if self.any_deleted is None:  # one read while the tenant deleted no one
                self.any_deleted = self.state.any_deleted()
            self.deleted[distinct_id] = (
                self.state.deleted_person_id(distinct_id) if self.any_deleted else None
            )
        return self.deleted[distinct_id]


def pseudo(meta: dict[bytes, bytes], vals: dict[bytes, bytes]) -> Person:
    """A group's properties or a person's memberships, as properties.update takes them."""
    return Person(
        person_id="",
        meta=meta,
        vals=vals,
        properties_size=sum(len(k) + len(t) for k, t in vals.items()),
    )


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def decode_group(raw: bytes | None) -> tuple[dict[bytes, bytes], dict[bytes, bytes], int]:
    if raw is None:
        return {}, {}, 0
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise EngineError("an unreadable group record") from exc
    meta, vals = value.get("m"), value.get("v")
    version = value.get("n")
    return (
        {as_bytes(k): as_bytes(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
        {as_bytes(k): as_bytes(v) for k, v in vals.items()} if isinstance(vals, dict) else {},
        int(version) if isinstance(version, int | float) else 0,
    )


class GroupState:
    """The call's group state (``groups.lua``'s)."""

    def __init__(self) -> None:
        self.types: set[bytes] | None = None
        self.new_types: list[bytes] = []
        self.records: dict[bytes, tuple[Person, list[int]]] = {}
        """field -> (properties, [version])"""
        self.dirty: set[bytes] = set()
        self.members: dict[bytes, Person] = {}
        self.members_dirty: set[bytes] = set()
        self.members_dropped: set[bytes] = set()

    def types_of(self, ctx: Ctx) -> set[bytes]:
        if self.types is None:
            self.types = set(ctx.state.group_types())
        return self.types

    def record_of(self, ctx: Ctx, field: bytes) -> tuple[Person, list[int]]:
        found = self.records.get(field)
        if found is None:
            meta, vals, version = decode_group(ctx.state.group_record(field))
            found = self.records[field] = (pseudo(meta, vals), [version])
        return found

    def members_of(self, ctx: Ctx, person_id: bytes) -> Person:
        found = self.members.get(person_id)
        if found is None:
            meta, vals, _ = decode_group(ctx.state.group_members(person_id))
            found = self.members[person_id] = pseudo(meta, vals)
        return found


@dataclass(slots=True)
class Queue:
    stored: int
    cleared: bool = False
    pushed: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(entry id, entry) pushed by this call"""
