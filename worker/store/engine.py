"""The resolve script's stateful rules in Python (pure: no I/O): step 2 of docs/ARCHITECTURE.md,
*Rules in the worker*. Not called by the worker yet.

``run(state, call)`` does what ``lua/resolve_batch.lua`` does for one call of the ``resolve``
command, on the tenant's data as ``state`` gives it, and returns the reply entries the script
would return (JSON texts in the script's format, ``protocol.REPLY_ENTRY_FIELDS``) and the writes
it would make. It is a port of ``lua/resolve/rules.lua``, ``records.lua``, ``properties.lua``,
``ordering.lua``, ``union_find.lua``, ``case_fold.lua``, ``deleted.lua`` and the union-find part
of ``write_back.lua``, module for module, with the same names, so the two can be read side by
side; ``tests/integration/test_engine.py`` runs both from the same data and requires the same
entries and the same persons.

What it covers: both commands (resolve, release), the buffer (queues, overflow, releases in
either ordering mode, leases and redeliveries), groups (types, group properties, memberships),
receipts (an op with a source is answered from the receipt of an earlier call or op, the
entries it released that are still leased returned again), deletions and case folds, on records
of formats 9 and 7. A format 6 record (a release older than format 7) raises ``Unsupported``:
the script migrates it. The reply's next due time is read after the writes (``write_back.lua``):
``Outcome.buffer_touched`` says whether the reply reports it; the writer computes it. Records are
written in format 9 (``record_format.py``); a snapshot's keys come in the order Python's dicts
keep them (the script's in its tables' order: the same JSON object, other bytes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.store import protocol, record_format
from worker.store.record_format import State

_SET, _SET_ONCE, _UNSET, _SET_THEN_UNSET = (
    protocol.SET.encode(),
    protocol.SET_ONCE.encode(),
    protocol.UNSET.encode(),
    protocol.SET_THEN_UNSET.encode(),
)
_PARENT = ord("P")
_PROCESS = int(protocol.OpFlag.PROCESS_PERSON)
_DANGEROUS = int(protocol.OpFlag.MERGE_DANGEROUSLY)
_MERGE = int(protocol.OpFlag.MERGE_WITH_OTHER)
_BUFFERABLE = int(protocol.OpFlag.BUFFERABLE)
_CODES = frozenset((_SET, _SET_ONCE, _UNSET, _SET_THEN_UNSET))
_HEADER_SIZE = 16


class Unsupported(Exception):
    """A call this engine does not cover (the script must run it)."""


class EngineError(ValueError):
    """Data the script would refuse too: malformed ARGV, a broken parent chain, an unreadable
    record."""


class TenantState(Protocol):
    """The tenant's data, as the engine reads it."""

    @property
    def tenant(self) -> bytes:
        """The raw tenant (an implicit record's person id is derived from it)."""
        ...

    def group_types(self) -> set[bytes]:
        """The tenant's group types (the set ``<g>types``)."""
        ...

    def group_record(self, field: bytes) -> bytes | None:
        """A group's record (``<g>records``: type, a zero byte, key -> cjson)."""
        ...

    def group_members(self, person_id: bytes) -> bytes | None:
        """A person's memberships (``<g>members``: person id -> cjson)."""
        ...

    def value(self, distinct_id: bytes) -> bytes | None:
        """The field of the ids hash: ``b"P"`` and a parent, or a person record."""
        ...

    def members(self, root: bytes) -> bytes | None:
        """The members string of ``root`` (a tree past ``MEMBERS_INLINE`` ids)."""
        ...

    def in_fold(self, folded: bytes) -> bool:
        """Whether ``folded`` is a field of the case-fold hash."""
        ...

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        """The person id a deleted id starts next (the deleted hash), or None."""
        ...

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        """The receipt kept for ``source`` in the receipt hash of ``bucket``, or None."""
        ...

    def has_queues(self) -> bool:
        """Whether the buffer's due set exists (some id has a queue)."""
        ...

    def queue(self, distinct_id: bytes) -> list[bytes]:
        """The entry ids waiting for ``distinct_id``, oldest first (``buf:q:<id>``)."""
        ...

    def waiting_count(self) -> int:
        """The tenant's number of waiting entries (``buf:n``)."""
        ...

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        """A buffered entry (``buf:e``): its ingestion time and op fields, as cjson."""
        ...

    def first_release(self, entry_id: bytes) -> bytes | None:
        """An entry's first release (``buf:r``): reason, time, reply entry."""
        ...

    def leased(self, entry_id: bytes) -> bool:
        """Whether an entry is leased (``buf:pending``)."""
        ...

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        """Up to ``limit`` entry ids whose lease ended by ``now``, earliest first."""
        ...

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        """Up to ``limit`` ids whose queue is due by ``now``, earliest first."""
        ...


@dataclass(slots=True)
class Config:
    timestamp_mode: bool
    max_ids: int
    max_bytes: int
    force_upgrade_ms: int
    last_seen_ms: int
    now: int = 0
    now_text: bytes = b"0"
    buffer_delay_ms: int = 0
    buffer_max_per_id: int = 0
    buffer_max_total: int = 0
    lease_ms: int = 0
    release: bool = False
    """the release command (else resolve)"""
    release_limit: int = 0


@dataclass(slots=True)
class Op:
    process: bool
    dangerous: bool
    merge: bool
    into: bytes
    into_person_id: str
    other: bytes
    other_person_id: str
    ts: int
    ts_text: bytes
    ord: bytes
    props: list[tuple[bytes, bytes, bytes]]
    source: bytes = b""
    bucket: bytes = b""
    groups: list[GroupOp] = field(default_factory=list)
    max_group_types: int = 0
    buffer: bool = False
    """bufferable (then the three fields below)"""
    fields: list[bytes] = field(default_factory=list)
    """what a buffered entry keeps of the op: its ARGV from its flags (less the bufferable bit)
    to the end of its group section"""
    ingested: bytes = b""
    payload: bytes = b""
    entry_id: bytes = b""


@dataclass(slots=True)
class GroupOp:
    """One group of an op (``group_argv.lua``)."""

    type: bytes
    key: bytes
    key_text: bytes
    attach: bool
    remember: bool
    props: list[tuple[bytes, bytes, bytes]]


@dataclass(slots=True)
class Call:
    config: Config
    ops: list[Op]


@dataclass(slots=True)
class Writes:
    """What the call writes: ``ids`` the fields of the ids hash set, ``members_deleted`` the
    members strings deleted, then ``members_appended`` (root -> the text appended; a root in
    ``members_fresh`` had its key deleted first), ``folds`` the case-fold fields added."""

    ids: dict[bytes, bytes] = field(default_factory=dict)
    members_deleted: set[bytes] = field(default_factory=set)
    members_appended: dict[bytes, bytes] = field(default_factory=dict)
    members_fresh: set[bytes] = field(default_factory=set)
    folds: list[bytes] = field(default_factory=list)
    receipts: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    """bucket -> (source, receipt text) in the order kept"""
    group_types: list[bytes] = field(default_factory=list)
    group_records: dict[bytes, bytes] = field(default_factory=dict)
    group_members: dict[bytes, bytes] = field(default_factory=dict)
    group_members_deleted: set[bytes] = field(default_factory=set)
    queues_cleared: list[bytes] = field(default_factory=list)
    """ids whose queue was released (key deleted, removed from the due set), before pushes"""
    queues_pushed: dict[bytes, list[bytes]] = field(default_factory=dict)
    """id -> the entry ids appended to its queue"""
    due_added: dict[bytes, int] = field(default_factory=dict)
    """id -> due time, for a queue this call started"""
    entries: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    """entry id -> (the entry, its payload)"""
    releases: dict[bytes, bytes] = field(default_factory=dict)
    """entry id -> its first release (reason, time, reply entry)"""
    leases: dict[bytes, int | None] = field(default_factory=dict)
    """entry id -> lease deadline (None: the lease is dropped)"""
    waiting_delta: int = 0


@dataclass(slots=True)
class Outcome:
    entries: list[bytes]
    writes: Writes
    released: list[bytes] = field(default_factory=list)
    """the released entries of the reply (``reply.released`` texts), in release order"""
    buffer_touched: bool = False
    """whether the reply reports the tenant's next due time (computed after the writes, from
    Redis: the writer's to add)"""


# -- ARGV (argv.lua) ----------------------------------------------------------------------------


def parse_call(args: Sequence[bytes]) -> Call:
    """The header and ops of a ``resolve`` call's ARGV (``codec.encode_args``)."""
    if len(args) < _HEADER_SIZE:
        raise EngineError("ARGV: header")
    if args[0].decode() != protocol.FORMAT_VERSION:
        raise EngineError(f"ARGV: format version {args[0]!r}")
    command = args[11].decode()
    try:
        mode = args[1].decode()
        max_ids, max_bytes, force_upgrade = int(args[2]), int(args[3]), int(args[4])
        now, buffer_delay, per_id = int(args[6]), int(args[7]), int(args[8])
        total, lease, release_limit = int(args[9]), int(args[10]), int(args[12])
        op_count, last_seen = int(args[14]), int(args[15])
    except ValueError as exc:
        raise EngineError("ARGV: header") from exc
    if mode not in protocol.ORDERING_MODES.values():
        raise EngineError(f"ARGV: ordering mode {mode!r}")
    if command not in protocol.COMMANDS.values():
        raise EngineError(f"ARGV: command {command!r}")
    config = Config(
        mode == protocol.ORDERING_MODES["timestamp"],
        max_ids,
        max_bytes,
        force_upgrade,
        max(1, last_seen),
        now,
        args[6],
        buffer_delay,
        per_id,
        total,
        lease,
        command == protocol.COMMAND_RELEASE,
        release_limit,
    )
    ops: list[Op] = []
    at = _HEADER_SIZE
    for index in range(op_count):
        op, at = _parse_op(args, at, index + 1)
        ops.append(op)
    if at != len(args):
        raise EngineError(f"ARGV: {len(args) - at} unread values")
    return Call(config, ops)


def _parse_op(args: Sequence[bytes], at: int, index: int, stored: bool = False) -> tuple[Op, int]:
    """``argv.parse_op``: the op at ``at``; ``stored``, the fields a buffered entry kept (no
    source)."""
    try:
        flags, nprops = int(args[at]), int(args[at + 7])
        into, other, ts_text, order = args[at + 1], args[at + 3], args[at + 5], args[at + 6]
        ts = int(ts_text)
    except (IndexError, ValueError) as exc:
        raise EngineError(f"ARGV: op {index}") from exc
    if not 0 <= flags <= protocol.MAX_FLAGS or nprops < 0:
        raise EngineError(f"ARGV: op {index}")
    props: list[tuple[bytes, bytes, bytes]] = []
    pos = at + 8
    for _ in range(nprops):
        if pos + 2 >= len(args) or args[pos] not in _CODES:
            raise EngineError(f"ARGV: a property operation of op {index}")
        props.append((args[pos], args[pos + 1], args[pos + 2]))
        pos += 3
    groups, max_types, pos = _parse_groups(args, pos, index)
    props_end = pos
    source = bucket = b""
    if not stored:
        if pos + 1 >= len(args):
            raise EngineError(f"ARGV: op {index} cut short")
        source, bucket = args[pos], args[pos + 1]
        pos += 2
    op = Op(
        process=flags & _PROCESS != 0,
        dangerous=flags & _DANGEROUS != 0,
        merge=flags & _MERGE != 0 and other != into,
        into=into,
        into_person_id=args[at + 2].decode(),
        other=other,
        other_person_id=args[at + 4].decode(),
        ts=ts,
        ts_text=ts_text,
        ord=order,
        props=props,
        source=source,
        bucket=bucket,
        groups=groups,
        max_group_types=max_types,
    )
    if flags & _BUFFERABLE:
        if pos + 2 >= len(args):
            raise EngineError(f"ARGV: the buffer fields of op {index}")
        op.buffer = True
        op.fields = [b"%d" % (flags - _BUFFERABLE), *args[at + 1 : props_end]]
        op.ingested, op.payload, op.entry_id = args[pos], args[pos + 1], args[pos + 2]
        if not op.ingested.lstrip(b"-").isdigit():
            raise EngineError(f"ARGV: the buffer fields of op {index}")
        pos += 3
    return op, pos


def _parse_groups(args: Sequence[bytes], at: int, index: int) -> tuple[list[GroupOp], int, int]:
    """``group_argv.parse``: the op's groups, the tenant's cap on types, the index after."""
    try:
        count = int(args[at])
        at += 1
        max_types = 0
        if count > 0:
            max_types = int(args[at])
            at += 1
        groups: list[GroupOp] = []
        for _ in range(count):
            flags, nprops = int(args[at + 3]), int(args[at + 4])
            if not 0 <= flags <= 3 or nprops < 0:
                raise ValueError(flags)
            props = [
                (args[at + 5 + 3 * k], args[at + 6 + 3 * k], args[at + 7 + 3 * k])
                for k in range(nprops)
            ]
            groups.append(
                GroupOp(args[at], args[at + 1], args[at + 2], flags & 1 == 1, flags >= 2, props)
            )
            at += 5 + 3 * nprops
    except (IndexError, ValueError) as exc:
        raise EngineError(f"ARGV: the groups of op {index}") from exc
    return groups, max_types, at


# -- persons (records.lua) ----------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    person_id: str
    implicit_root: bytes | None
    created_at: int
    created_at_text: bytes
    last_seen: int
    identified: bool
    version: int
    id_count: int
    spilled: bool
    others: list[bytes]
    stored_members: bool
    snapshot: bytes | None
    props: bytes
    meta: dict[bytes, bytes] | None = None
    """key -> code .. order key (stored form or text), as the script's metas"""
    vals: dict[bytes, bytes] | None = None
    properties_size: int = 0
    properties_changed: bool = False


class _Ctx:
    """One call's state (the script's ``ctx``)."""

    def __init__(self, state: TenantState, config: Config, ops: list[Op]) -> None:
        self.state = state
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
        self.groups = _Groups()
        # buffer.lua
        self.queues: dict[bytes, _Queue] = {}
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
        while value[0] == _PARENT:
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
            record = record_format.decode(value)
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
            implicit_root=None,
            created_at=ts,
            created_at_text=ts_text,
            last_seen=self.seen_at(ts),
            identified=False,
            version=0,
            id_count=1,
            spilled=False,
            others=[],
            stored_members=False,
            snapshot=b"{}",
            props=b"",
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
                meta, vals = record_format.decode_states(person.snapshot or b"{}", person.props)
            except record_format.RecordError as exc:
                raise EngineError(f"unreadable properties of {person.person_id}") from exc
            person.meta = {key: state.code + state.order for key, state in meta.items()}
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
        return record_format.encode(record)

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
            known = self.folds[folded] = self.state.in_fold(folded)
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
            self.deleted[distinct_id] = self.state.deleted_person_id(distinct_id)
        return self.deleted[distinct_id]


# -- ordering.lua and properties.lua ------------------------------------------------------------


def _order_of(meta: bytes) -> bytes:
    """The order key of a meta as text (its stored form turned back)."""
    order = meta[1:]
    return record_format.order_text(order) if order[:1] == b"\0" else order


def outranks(
    new_meta: bytes, new_text: bytes, current_meta: bytes | None, current_text: bytes
) -> bool:
    """``ordering.outranks``: strong ops (set, unset) outrank set_once; among strong ops the later
    order key wins, among weak ones the earlier; on an equal key the larger value text."""
    if current_meta is None:
        return True
    new_strong = new_meta[:1] != _SET_ONCE
    if new_strong != (current_meta[:1] != _SET_ONCE):
        return new_strong
    new_order, current_order = _order_of(new_meta), _order_of(current_meta)
    if new_order == current_order:
        return new_text > current_text
    return (new_order > current_order) == new_strong


def update(ctx: _Ctx, person: Person, op: Op) -> tuple[bool, bool]:
    """``properties.update`` of a person record: (changed, refused for size)."""
    return update_props(ctx, person, op.props, op.ord, ctx.config.max_bytes)


def update_props(
    ctx: _Ctx,
    person: Person,
    props: Sequence[tuple[bytes, bytes, bytes]],
    order: bytes,
    max_bytes: float,
) -> tuple[bool, bool]:
    """``properties.update`` of ``person`` (a person, a group or memberships: ``_pseudo``) with
    ``props`` at the order key ``order``: (changed, refused for size)."""
    meta, vals = ctx.properties_of(person)
    changes: list[tuple[bytes, bytes | None, bytes | None]] = []
    size = person.properties_size
    timestamp_mode = ctx.config.timestamp_mode
    ord_ = order
    for code, key, text in props:
        current_meta, current_text = meta.get(key), vals.get(key)
        new_meta: bytes | None = None
        new_text: bytes | None = None
        if timestamp_mode:
            new_meta = code + ord_
            if code != _UNSET:
                new_text = text
            replace = current_meta is None or outranks(
                new_meta, text, current_meta, current_text or b""
            )
        elif code == _SET:
            new_meta, new_text = _SET + ord_, text
            replace = text != current_text
        elif code == _SET_ONCE:
            new_meta, new_text = _SET + ord_, text
            replace = current_text is None
        elif code == _SET_THEN_UNSET:
            if current_text is None:
                new_meta, new_text = _SET + ord_, text
            replace = True
        else:
            replace = current_text is not None
        if replace:
            changes.append((key, new_meta, new_text))
            if current_text is not None:
                size -= len(key) + len(current_text)
            if new_text is not None:
                size += len(key) + len(new_text)
    if not changes:
        return False, False
    if size > max_bytes and size > person.properties_size:
        return False, True
    for key, new_meta, new_text in changes:
        if new_meta is None:
            meta.pop(key, None)
        else:
            meta[key] = new_meta
        if new_text is None:
            vals.pop(key, None)
        else:
            vals[key] = new_text
    person.properties_size = size
    person.snapshot = None
    person.properties_changed = True
    return True, False


def join_properties(
    ctx: _Ctx, into: Person, other: Person
) -> tuple[dict[bytes, bytes], dict[bytes, bytes], int]:
    """``properties.join``: timestamp mode, the outranking state of each key; arrival mode,
    {...other, ...into}."""
    into_meta, into_vals = ctx.properties_of(into)
    other_meta, other_vals = ctx.properties_of(other)
    meta: dict[bytes, bytes] = {}
    vals: dict[bytes, bytes] = {}
    if ctx.config.timestamp_mode:
        for key, m in into_meta.items():
            meta[key] = m
            if key in into_vals:
                vals[key] = into_vals[key]
        for key, m in other_meta.items():
            text = other_vals.get(key)
            if outranks(m, text or b"", meta.get(key), vals.get(key, b"")):
                meta[key] = m
                if text is None:
                    vals.pop(key, None)
                else:
                    vals[key] = text
    else:
        for source_meta, source_vals in ((other_meta, other_vals), (into_meta, into_vals)):
            for key, m in source_meta.items():
                meta[key] = m
                if key in source_vals:
                    vals[key] = source_vals[key]
                else:
                    vals.pop(key, None)
    return meta, vals, sum(len(k) + len(t) for k, t in vals.items())


# -- reply.lua ----------------------------------------------------------------------------------


def _json_string(text: bytes) -> bytes:
    return record_format.quote(text)


def entry(
    person_id: str,
    person_mode: str,
    created_at: bytes | None,
    identified: bool,
    properties: bytes,
    merged: bool,
    created: bool,
    warnings: Sequence[str],
    overrides: Sequence[tuple[bytes, str, str]],
    version: int | None,
    changed: bool,
    groups_text: bytes = b"{}",
    changes_text: bytes = b"[]",
) -> bytes:
    """``reply.entry``."""
    overrides_text = (
        b"["
        + b",".join(
            b"[" + _json_string(i) + b',"' + old.encode() + b'","' + new.encode() + b'"]'
            for i, old, new in overrides
        )
        + b"]"
    )
    warnings_text = b"[" + b",".join(b'"' + w.encode() + b'"' for w in warnings) + b"]"
    return b"".join(
        (
            b'["',
            person_id.encode(),
            b'","',
            person_mode.encode(),
            b'",',
            created_at if created_at is not None else b"null",
            b",",
            b"true" if identified else b"false",
            b",",
            properties,
            b",",
            b"true" if merged else b"false",
            b",",
            b"true" if created else b"false",
            b",",
            warnings_text,
            b",",
            overrides_text,
            b",",
            b"%d" % version if version is not None else b"null",
            b",",
            b"true" if changed else b"false",
            b",",
            groups_text,
            b",",
            changes_text,
            b"]",
        )
    )


# -- groups.lua ---------------------------------------------------------------------------------


def _pseudo(meta: dict[bytes, bytes], vals: dict[bytes, bytes]) -> Person:
    """A group's properties or a person's memberships, as properties.update takes them."""
    return Person(
        person_id="",
        implicit_root=None,
        created_at=0,
        created_at_text=b"0",
        last_seen=0,
        identified=False,
        version=0,
        id_count=0,
        spilled=False,
        others=[],
        stored_members=False,
        snapshot=None,
        props=b"",
        meta=meta,
        vals=vals,
        properties_size=sum(len(k) + len(t) for k, t in vals.items()),
    )


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _decoded(raw: bytes | None) -> tuple[dict[bytes, bytes], dict[bytes, bytes], int]:
    if raw is None:
        return {}, {}, 0
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise EngineError("an unreadable group record") from exc
    meta, vals = value.get("m"), value.get("v")
    version = value.get("n")
    return (
        {_b(k): _b(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
        {_b(k): _b(v) for k, v in vals.items()} if isinstance(vals, dict) else {},
        int(version) if isinstance(version, int | float) else 0,
    )


def _encoded(meta: dict[bytes, bytes], vals: dict[bytes, bytes], version: int | None) -> bytes:
    def text(raw: bytes) -> str:
        return raw.decode("utf-8", "surrogatepass")

    value: dict[str, object] = {
        "m": {text(k): text(v) for k, v in meta.items()},
        "v": {text(k): text(v) for k, v in vals.items()},
    }
    if version is not None:
        value["n"] = version
    return _b(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class _Groups:
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

    def types_of(self, ctx: _Ctx) -> set[bytes]:
        if self.types is None:
            self.types = set(ctx.state.group_types())
        return self.types

    def record_of(self, ctx: _Ctx, field: bytes) -> tuple[Person, list[int]]:
        found = self.records.get(field)
        if found is None:
            meta, vals, version = _decoded(ctx.state.group_record(field))
            found = self.records[field] = (_pseudo(meta, vals), [version])
        return found

    def members_of(self, ctx: _Ctx, person_id: bytes) -> Person:
        found = self.members.get(person_id)
        if found is None:
            meta, vals, _ = _decoded(ctx.state.group_members(person_id))
            found = self.members[person_id] = _pseudo(meta, vals)
        return found


def apply_groups(ctx: _Ctx, op: Op, person: Person | None) -> tuple[bytes, bytes, list[str]]:
    """``groups.apply``: the entry's groups and group changes texts, and warnings."""
    g = ctx.groups
    types = g.types_of(ctx)
    if not op.groups and (person is None or not types):
        return b"{}", b"[]", []
    warnings: list[str] = []
    kept: list[GroupOp] = []
    for group in op.groups:
        if group.type not in types:
            if len(types) >= op.max_group_types:
                warnings.append(protocol.WARNING_GROUP_TYPE_LIMIT)
            else:
                types.add(group.type)
                g.new_types.append(group.type)
                kept.append(group)
        else:
            kept.append(group)
    changes: list[bytes] = []
    for group in kept:
        if group.props:
            field = group.type + b"\0" + group.key
            record, version = g.record_of(ctx, field)
            changed, refused = update_props(ctx, record, group.props, op.ord, ctx.config.max_bytes)
            if refused:
                warnings.append(protocol.WARNING_GROUP_PROPERTIES_SIZE)
            elif changed:
                version[0] += 1
                g.dirty.add(field)
                changes.append(
                    b"["
                    + record_format.quote(group.type)
                    + b","
                    + group.key_text
                    + b","
                    + b"%d" % version[0]
                    + b","
                    + ctx.snapshot(record)
                    + b"]"
                )
    keys: dict[bytes, bytes] = {}  # type -> key text
    if person is not None and types:
        person_id = _b(person.person_id)
        m = g.members_of(ctx, person_id)
        remembered = [(_SET, group.type, group.key_text) for group in kept if group.remember]
        if remembered and update_props(ctx, m, remembered, op.ord, math.inf)[0]:
            g.members_dirty.add(person_id)
        _, member_vals = ctx.properties_of(m)
        keys.update(member_vals)
    for group in kept:
        if group.attach:
            keys[group.type] = group.key_text
    parts: list[bytes] = []
    for group_type, text in keys.items():
        try:
            key = json.loads(text)
        except ValueError as exc:
            raise EngineError("an unreadable group key") from exc
        record, _ = g.record_of(ctx, group_type + b"\0" + _b(str(key)))
        _, record_vals = ctx.properties_of(record)
        props = ctx.snapshot(record) if record_vals else b"{}"
        parts.append(record_format.quote(group_type) + b":[" + text + b"," + props + b"]")
    return b"{" + b",".join(parts) + b"}", b"[" + b",".join(changes) + b"]", warnings


def merge_groups(ctx: _Ctx, into: Person, other: Person) -> None:
    """``groups.merge`` (A3.6): other's memberships joined into into's."""
    g = ctx.groups
    if not g.types_of(ctx):
        return
    into_id, other_id = _b(into.person_id), _b(other.person_id)
    into_m = g.members_of(ctx, into_id)
    other_m = g.members_of(ctx, other_id)
    other_meta, _ = ctx.properties_of(other_m)
    if not other_meta:
        return
    meta, vals, _ = join_properties(ctx, into_m, other_m)
    g.members[into_id] = _pseudo(meta, vals)
    g.members_dirty.add(into_id)
    g.members[other_id] = _pseudo({}, {})
    g.members_dirty.discard(other_id)
    g.members_dropped.add(other_id)


def _group_writes(ctx: _Ctx, writes: Writes) -> None:
    """``groups.write``."""
    g = ctx.groups
    writes.group_types = list(g.new_types)
    for name in g.dirty:
        record, version = g.records[name]
        meta, vals = ctx.properties_of(record)
        writes.group_records[name] = _encoded(meta, vals, version[0])
    writes.group_members_deleted = {p for p in g.members_dropped if p not in g.members_dirty}
    for person_id in g.members_dirty:
        meta, vals = ctx.properties_of(g.members[person_id])
        writes.group_members[person_id] = _encoded(meta, vals, None)


# -- rules.lua ----------------------------------------------------------------------------------

_FULL = protocol.PERSON_MODES["full"]
_PROPERTYLESS = protocol.PERSON_MODES["propertyless"]
_FORCE_UPGRADE = protocol.PERSON_MODES["force_upgrade"]


def _widen(ctx: _Ctx, root: bytes, person: Person, op: Op) -> None:
    ts = op.ts
    if ts < person.created_at:
        person.created_at, person.created_at_text = ts, op.ts_text
    if ctx.seen_at(ts) > person.last_seen:
        person.last_seen = ctx.seen_at(ts)
    ctx.dirty.add(root)


def _moves(ctx: _Ctx, person: Person, op: Op) -> bool:
    return op.ts < person.created_at or ctx.seen_at(op.ts) > person.last_seen


def _apply_personless(ctx: _Ctx, op: Op, warning: str | None) -> bytes:
    root = ctx.find(op.into)
    groups_text, changes_text, group_warnings = apply_groups(ctx, op, None)
    warnings = ([warning] if warning else []) + group_warnings
    if root is not None:
        person = ctx.load(root)
        mode = (
            _FORCE_UPGRADE
            if op.ts > person.created_at + ctx.config.force_upgrade_ms
            else _PROPERTYLESS
        )
        return entry(
            person.person_id,
            mode,
            person.created_at_text,
            person.identified,
            b"{}",
            False,
            False,
            warnings,
            (),
            None,
            False,
            groups_text,
            changes_text,
        )
    return entry(
        op.into_person_id,
        _PROPERTYLESS,
        None,
        False,
        b"{}",
        False,
        False,
        warnings,
        (),
        None,
        False,
        groups_text,
        changes_text,
    )


def _merge(
    ctx: _Ctx,
    into_root: bytes,
    into_person: Person,
    other_root: bytes,
    other_person: Person,
    overrides: list[tuple[bytes, str, str]],
) -> bytes:
    other_ids = ctx.members_of(other_root, other_person)
    overrides.extend((i, other_person.person_id, into_person.person_id) for i in other_ids)
    big, small, small_ids, big_person, small_person = (
        into_root,
        other_root,
        other_ids,
        into_person,
        other_person,
    )
    if other_person.id_count > into_person.id_count:
        big, small, big_person, small_person = other_root, into_root, other_person, into_person
        small_ids = ctx.members_of(into_root, into_person)
    ctx.union(big, small, small_ids, small_person, big_person)
    merge_groups(ctx, into_person, other_person)
    meta, vals, size = join_properties(ctx, into_person, other_person)
    merged = Person(
        person_id=into_person.person_id,
        implicit_root=None,
        created_at=into_person.created_at,
        created_at_text=into_person.created_at_text,
        last_seen=max(into_person.last_seen, other_person.last_seen),
        identified=True,
        version=max(into_person.version, other_person.version) + 1,
        id_count=into_person.id_count + other_person.id_count,
        spilled=big_person.spilled,
        others=big_person.others,
        stored_members=big_person.stored_members,
        snapshot=None,
        props=b"",
        meta=meta,
        vals=vals,
        properties_size=size,
        properties_changed=True,
    )
    if other_person.created_at < into_person.created_at:
        merged.created_at, merged.created_at_text = (
            other_person.created_at,
            other_person.created_at_text,
        )
    ctx.persons.pop(small, None)
    ctx.dirty.discard(small)
    ctx.persons[big] = merged
    ctx.dirty.add(big)
    return big


@dataclass(slots=True)
class _Part:
    """``rules.structure``'s part: the op without its property operations."""

    root: bytes
    warnings: list[str]
    overrides: list[tuple[bytes, str, str]]
    merged: bool
    created: bool
    remade: bool
    bump: bool
    moved: bool
    settled: bool = False


def apply(ctx: _Ctx, op: Op, warning: str | None = None) -> bytes:
    """``rules.apply``: the op's reply entry; ``warning`` (or None) first in its warnings."""
    ctx.rederive(op)
    if not op.process:
        return _apply_personless(ctx, op, warning)
    if not op.merge and not op.props:
        known = ctx.find(op.into)
        if known is not None:  # the common event: a plain track of a known id
            person = ctx.load(known)
            if _moves(ctx, person, op):
                _widen(ctx, known, person, op)
            groups_text, changes_text, group_warnings = apply_groups(ctx, op, person)
            return entry(
                person.person_id,
                _FULL,
                person.created_at_text,
                person.identified,
                ctx.snapshot(person),
                False,
                False,
                ([warning] if warning else []) + group_warnings,
                (),
                person.version,
                False,
                groups_text,
                changes_text,
            )
    return finish(ctx, op, structure(ctx, op, warning))


def structure(ctx: _Ctx, op: Op, warning: str | None) -> _Part:
    """``rules.structure``: the op without its property operations, its version bump still
    pending."""
    ctx.rederive(op)
    warnings: list[str] = [warning] if warning else []
    overrides: list[tuple[bytes, str, str]] = []
    merged = created = remade = bump = False
    limit = protocol.WARNING_MERGE_LIMIT
    root: bytes
    into_root = ctx.find(op.into)
    other_new = op.merge and not ctx.get(op.other)
    if not op.merge:
        if into_root is not None:
            root = into_root
        else:
            root, created = op.into, True
            ctx.create(op.into, op.into_person_id, op.ts, op.ts_text)
    else:
        other_root = ctx.find(op.other)
        if into_root is None and other_root is None:  # A3.3
            root, created = op.into, True
            person = ctx.create(op.into, op.into_person_id, op.ts, op.ts_text)
            if ctx.config.max_ids < 2:
                warnings.append(limit)
            else:
                ctx.join(op.other, root, person)
                overrides = [(op.other, op.other_person_id, op.into_person_id)]
                merged = True
        elif into_root is not None and other_root is None:  # A3.4: other joins into's person
            root = into_root
            into_person = ctx.load(into_root)
            if into_person.id_count >= ctx.config.max_ids:
                warnings.append(limit)
            else:
                ctx.join(op.other, into_root, into_person)
                overrides = [(op.other, op.other_person_id, into_person.person_id)]
                merged = bump = True
        elif into_root is None and other_root is not None:  # A3.4: into joins other's person
            other_person = ctx.load(other_root)
            if other_person.id_count >= ctx.config.max_ids:
                warnings.append(limit)
                root, created = op.into, True
                ctx.create(op.into, op.into_person_id, op.ts, op.ts_text)
            else:
                root = other_root
                ctx.join(op.into, other_root, other_person)
                overrides = [(op.into, op.into_person_id, other_person.person_id)]
                merged = bump = True
        elif into_root is not None and other_root is not None and into_root == other_root:  # A3.5
            root = into_root
        elif into_root is not None and other_root is not None:  # A3.6
            into_person = ctx.load(into_root)
            other_person = ctx.load(other_root)
            root = into_root
            if other_person.identified and not op.dangerous:
                warnings.append(protocol.WARNING_ALREADY_IDENTIFIED)
            elif into_person.id_count + other_person.id_count > ctx.config.max_ids:
                warnings.append(limit)
            else:
                overrides = []
                root = _merge(ctx, into_root, into_person, other_root, other_person, overrides)
                merged = remade = True
    person = ctx.load(root)
    if _moves(ctx, person, op):
        _widen(ctx, root, person, op)
    if op.merge and not person.identified:
        person.identified = True
        bump = True
    fresh: list[bytes] = []
    if into_root is None:
        fresh.append(op.into)
    if other_new and ctx.get(op.other):
        fresh.append(op.other)
    if fresh and ctx.collides(fresh):
        warnings.append(protocol.WARNING_CASE_COLLISION)
    return _Part(root, warnings, overrides, merged, created, remade, bump, created or remade)


def settle(ctx: _Ctx, part: _Part) -> None:
    """``rules.settle``: the pending bump applied now (a release comes between the op's
    structure and its property operations: docs/BUFFER.md, "arrival order")."""
    if part.bump and not part.created and not part.remade:
        ctx.load(part.root).version += 1
        part.moved = True
    part.settled = True


def finish(ctx: _Ctx, op: Op, part: _Part) -> bytes:
    """``rules.finish``: the op's property and group operations, on the person that holds
    ``op.into`` now; its reply entry."""
    root = part.root
    if part.settled:
        found = ctx.find(op.into)
        if found is None:
            raise EngineError(f"no person holds {op.into!r} after its structure")
        root = found
    person = ctx.load(root)
    warnings = part.warnings
    changed = False
    if op.props:
        changed, refused = update(ctx, person, op)
        if refused:
            warnings.append(protocol.WARNING_PROPERTIES_SIZE)
    moved = part.moved
    if part.settled:
        if changed:
            person.version += 1
            moved = True
    elif (part.bump or changed) and not part.created and not part.remade:
        person.version += 1
        moved = True
    if changed or part.settled or part.merged or part.created or part.bump or part.remade:
        ctx.dirty.add(root)
    groups_text, changes_text, group_warnings = apply_groups(ctx, op, person)
    return entry(
        person.person_id,
        _FULL,
        person.created_at_text,
        person.identified,
        ctx.snapshot(person),
        part.merged,
        part.created,
        warnings + group_warnings,
        part.overrides,
        person.version,
        moved,
        groups_text,
        changes_text,
    )


# -- buffer.lua ---------------------------------------------------------------------------------

_REASON_MERGE = protocol.RELEASE_REASONS["merge"]
_REASON_TIMEOUT = protocol.RELEASE_REASONS["timeout"]
_REASON_OVERFLOW = protocol.RELEASE_REASONS["overflow"]
_REASON_REDELIVERY = protocol.RELEASE_REASONS["redelivery"]
_BUFFERED = entry(
    "", protocol.PERSON_MODE_BUFFERED, None, False, b"{}", False, False, (), (), None, False
)


@dataclass(slots=True)
class _Queue:
    stored: int
    cleared: bool = False
    pushed: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(entry id, entry) pushed by this call"""


def _entry_text(fields: Sequence[bytes]) -> bytes:
    """``cjson.encode`` of an array of strings (a buffered entry)."""
    return b"[" + b",".join(record_format.quote(f) for f in fields) + b"]"


def _entry_fields(text: bytes) -> list[bytes]:
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise EngineError("an unreadable buffered entry") from exc
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise EngineError("an unreadable buffered entry")
    return [_b(f) for f in fields]


def _emit(
    ctx: _Ctx,
    entry_id: bytes,
    fields: Sequence[bytes],
    reason: str,
    released_ms: bytes,
    entry_text: bytes,
) -> None:
    """Hand a released entry to this caller, leased until now + lease_ms."""
    event_uuid = fields[7][20:]  # the op's order key ends with its uuid
    ctx.released.append(
        b"["
        + record_format.quote(event_uuid)
        + b',"'
        + reason.encode()
        + b'",'
        + fields[0]
        + b","
        + entry_text
        + b","
        + released_ms
        + b","
        + record_format.quote(entry_id)
        + b"]"
    )
    ctx.released_ids.append(entry_id)
    ctx.pending_out[entry_id] = ctx.config.now + ctx.config.lease_ms


def _queue(ctx: _Ctx, distinct_id: bytes) -> _Queue:
    q = ctx.queues.get(distinct_id)
    if q is None:
        q = ctx.queues[distinct_id] = _Queue(len(ctx.state.queue(distinct_id)))
    return q


def _has_queues(ctx: _Ctx) -> bool:
    if ctx.any_queue is None:
        ctx.any_queue = ctx.state.has_queues()
    return ctx.any_queue


def _waiting(ctx: _Ctx, distinct_id: bytes) -> int:
    if not _has_queues(ctx):
        return 0
    q = _queue(ctx, distinct_id)
    return q.stored + len(q.pushed)


def _total(ctx: _Ctx) -> int:
    if ctx.waiting_stored is None:
        ctx.waiting_stored = ctx.state.waiting_count()
    return ctx.waiting_stored + ctx.waiting_delta


def _release(ctx: _Ctx, distinct_id: bytes, reason: str) -> None:
    """Release every waiting entry of ``distinct_id``, in order: applied now, leased to this
    caller."""
    q = _queue(ctx, distinct_id)
    items: list[tuple[bytes, bytes]] = []
    if q.stored > 0:
        for entry_id in ctx.state.queue(distinct_id):
            text = ctx.state.buffered_entry(entry_id)
            if text is not None:  # (one acknowledged meanwhile is gone)
                items.append((entry_id, text))
    items += q.pushed
    ctx.waiting_delta -= q.stored + len(q.pushed)
    q.stored, q.cleared, q.pushed = 0, True, []
    ctx.buffer_touched = True
    for index, (entry_id, text) in enumerate(items):
        fields = _entry_fields(text)
        op, _ = _parse_op(fields, 1, index + 1, stored=True)
        warning = protocol.WARNING_BUFFER_OVERFLOW if reason == _REASON_OVERFLOW else None
        answered = apply(ctx, op, warning)
        now = ctx.config.now_text
        _emit(ctx, entry_id, fields, reason, now, answered)
        ctx.release_out[entry_id] = reason.encode() + b" " + now + b" " + answered


def _first_release(ctx: _Ctx, entry_id: bytes) -> tuple[str, bytes, bytes] | None:
    text = ctx.release_out.get(entry_id)
    if text is None:
        text = ctx.state.first_release(entry_id)
    if text is None:
        return None
    parts = text.split(b" ", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0]:
        return None
    return parts[0].decode(), parts[1], parts[2]


def _leased(ctx: _Ctx, entry_id: bytes) -> bool:
    if entry_id in ctx.pending_out:
        return ctx.pending_out[entry_id] is not None
    return ctx.state.leased(entry_id)


def _stored_entry(ctx: _Ctx, entry_id: bytes) -> bytes | None:
    out = ctx.entries_out.get(entry_id)
    if out is not None:
        return out[0]
    return ctx.state.buffered_entry(entry_id)


def release_again(ctx: _Ctx, entry_id: bytes) -> None:
    """``buffer.release_again``: an entry released by an op answered from its receipt, still
    leased, is returned again with its first release's reason, time and reply entry."""
    if not _leased(ctx, entry_id):
        return
    text = _stored_entry(ctx, entry_id)
    first = _first_release(ctx, entry_id)
    if text is not None and first is not None:
        ctx.buffer_touched = True
        reason, released_ms, answered = first
        _emit(ctx, entry_id, _entry_fields(text), reason, released_ms, answered)


def maybe_buffer(ctx: _Ctx, op: Op) -> bytes | None:
    """``buffer.maybe_buffer``: the buffered entry when the op waits, else None (apply it)."""
    config = ctx.config
    if config.buffer_delay_ms <= 0:
        return None
    n = _waiting(ctx, op.into)
    if n == 0 and ctx.find(op.into) is not None:
        return None
    if n >= config.buffer_max_per_id or _total(ctx) >= config.buffer_max_total:
        _release(ctx, op.into, _REASON_OVERFLOW)
        return apply(ctx, op, protocol.WARNING_BUFFER_OVERFLOW)
    entry_id = op.entry_id
    if entry_id not in ctx.entries_out and ctx.state.buffered_entry(entry_id) is None:
        text = _entry_text([op.ingested, *op.fields])
        _queue(ctx, op.into).pushed.append((entry_id, text))
        ctx.entries_out[entry_id] = (text, op.payload)
        ctx.waiting_delta += 1
        ctx.any_queue = True
        ctx.buffer_touched = True
    return _BUFFERED


def _release_gained(ctx: _Ctx, distinct_id: bytes) -> bool:
    if _waiting(ctx, distinct_id) > 0 and ctx.find(distinct_id) is not None:
        _release(ctx, distinct_id, _REASON_MERGE)
        return True
    return False


def buffer_apply(ctx: _Ctx, op: Op) -> bytes:
    """``buffer.apply``: an op that does not wait, applied; then, with the buffer on, an id of
    it that now has a person releases its waiting entries (arrival mode: between the op's
    structure and its property operations)."""
    config = ctx.config
    if config.buffer_delay_ms <= 0 or not _has_queues(ctx):
        return apply(ctx, op)
    if config.timestamp_mode or not op.process:
        answered = apply(ctx, op)
        _release_gained(ctx, op.into)
        if op.merge:
            _release_gained(ctx, op.other)
        return answered
    part = structure(ctx, op, None)
    for distinct_id in (op.into, op.other) if op.merge else (op.into,):
        if not part.settled and _waiting(ctx, distinct_id) > 0 and ctx.find(distinct_id):
            settle(ctx, part)
        _release_gained(ctx, distinct_id)
    return finish(ctx, op, part)


def release_due(ctx: _Ctx) -> None:
    """``buffer.release_due``: expired leases (reason redelivery: the first release again),
    then ids whose wait is over (reason timeout), ``release_limit`` of each."""
    config = ctx.config
    ctx.buffer_touched = True
    for index, entry_id in enumerate(ctx.state.expired_leases(config.now, config.release_limit)):
        text = ctx.state.buffered_entry(entry_id)
        if text is None:
            ctx.pending_out[entry_id] = None
            continue
        fields = _entry_fields(text)
        first = _first_release(ctx, entry_id)
        if first is None:  # released by a script that kept no release: apply it again
            released_ms = config.now_text
            op, _ = _parse_op(fields, 1, index + 1, stored=True)
            answered = apply(ctx, op)
            ctx.release_out[entry_id] = (
                _REASON_REDELIVERY.encode() + b" " + released_ms + b" " + answered
            )
        else:
            _, released_ms, answered = first
        _emit(ctx, entry_id, fields, _REASON_REDELIVERY, released_ms, answered)
    for distinct_id in ctx.state.due_ids(config.now, config.release_limit):
        _release(ctx, distinct_id, _REASON_TIMEOUT)


def _buffer_writes(ctx: _Ctx, writes: Writes) -> None:
    """``write_back.lua``'s buffer part."""
    for distinct_id, q in ctx.queues.items():
        if q.cleared:
            writes.queues_cleared.append(distinct_id)
        if q.pushed:
            writes.queues_pushed[distinct_id] = [entry_id for entry_id, _ in q.pushed]
            if q.stored == 0:  # a new queue: due once its first entry has waited long enough
                first = int(_entry_fields(q.pushed[0][1])[0])
                writes.due_added[distinct_id] = first + ctx.config.buffer_delay_ms
    writes.entries = dict(ctx.entries_out)
    writes.releases = dict(ctx.release_out)
    writes.leases = dict(ctx.pending_out)
    writes.waiting_delta = ctx.waiting_delta


# -- receipts.lua --------------------------------------------------------------------------------


def _read_receipts(ctx: _Ctx) -> None:
    """The receipt of every op with a source, read before anything is applied."""
    for op in ctx.ops:
        if op.source != b"" and (op.bucket, op.source) not in ctx.receipts_in:
            ctx.receipts_in[(op.bucket, op.source)] = ctx.state.receipt(op.bucket, op.source)


def _answer(ctx: _Ctx, op: Op) -> bytes | None:
    """``receipts.answer``: the entry kept for the op's source (by an earlier call, or by an
    earlier op of this one), or None; the entries it released that are still leased are
    returned again."""
    if op.source == b"":
        return None
    text = ctx.receipts_in.get((op.bucket, op.source))
    if text is None:
        return None
    answered, _, ids = text.partition(b"\n")
    if ctx.config.buffer_delay_ms > 0:
        ctx.buffer_touched = True  # a replay reports the due time again
    if ids:
        try:
            released = json.loads(ids)
        except ValueError as exc:
            raise EngineError(f"an unreadable receipt for {op.source!r}") from exc
        for entry_id in released:
            release_again(ctx, _b(entry_id))
    return answered


def _keep(ctx: _Ctx, op: Op, entry_text: bytes, first: int) -> None:
    """``receipts.keep``: the entry, and the ids of the entries it released (from index
    ``first`` of ``ctx.released_ids``), as the op's receipt."""
    if op.source == b"":
        return
    text = entry_text
    if first < len(ctx.released_ids):
        text += b"\n" + _entry_text(ctx.released_ids[first:])
    ctx.receipts_out.setdefault(op.bucket, []).append((op.source, text))
    ctx.receipts_in[(op.bucket, op.source)] = text


def run(state: TenantState, call: Call) -> Outcome:
    """The call's reply entries, released entries and writes (``resolve_batch.lua``'s body and
    ``write_back.lua``)."""
    ctx = _Ctx(state, call.config, call.ops)
    entries: list[bytes] = []
    if call.config.release:
        release_due(ctx)
    else:
        _read_receipts(ctx)
        unbuffered = call.config.buffer_delay_ms <= 0
        for op in call.ops:
            answered = _answer(ctx, op)
            if answered is None:
                first = len(ctx.released_ids)
                if unbuffered:
                    answered = apply(ctx, op)
                else:
                    answered = maybe_buffer(ctx, op) if op.buffer else None
                    if answered is None:
                        answered = buffer_apply(ctx, op)
                _keep(ctx, op, answered, first)
            entries.append(answered)
    writes = Writes(folds=list(ctx.folds_out), receipts=ctx.receipts_out)
    _group_writes(ctx, writes)
    _buffer_writes(ctx, writes)
    writes.members_deleted = set(ctx.dropped)
    for root, ids in ctx.added.items():
        if root in ctx.persons and ids:
            writes.members_appended[root] = record_format.members_text(ids)
            if root in ctx.fresh and root not in ctx.dropped:
                writes.members_fresh.add(root)
    for root in ctx.dirty:
        text = ctx.encode(ctx.persons[root], root)
        if text != ctx.values.get(root):
            ctx.put(root, text)
    for distinct_id in ctx.written:
        value = ctx.values[distinct_id]
        if value is not None:
            writes.ids[distinct_id] = value
    return Outcome(entries, writes, ctx.released, ctx.buffer_touched)
