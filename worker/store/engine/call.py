"""A call's ARGV read into its header and ops (``lua/resolve/argv.lua`` and ``group_argv.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.store import protocol
from worker.store.engine.state import EngineError

SET, SET_ONCE, UNSET, SET_THEN_UNSET = (
    protocol.SET.encode(),
    protocol.SET_ONCE.encode(),
    protocol.UNSET.encode(),
    protocol.SET_THEN_UNSET.encode(),
)


_PROCESS = int(protocol.OpFlag.PROCESS_PERSON)


_DANGEROUS = int(protocol.OpFlag.MERGE_DANGEROUSLY)


_MERGE = int(protocol.OpFlag.MERGE_WITH_OTHER)


_BUFFERABLE = int(protocol.OpFlag.BUFFERABLE)


CODES = frozenset((SET, SET_ONCE, UNSET, SET_THEN_UNSET))
"""The property operation codes of ARGV."""


_HEADER_SIZE = 16


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

    def __init__(  # compiled: native code (the generated one is interpreted)
        self,
        process: bool,
        dangerous: bool,
        merge: bool,
        into: bytes,
        into_person_id: str,
        other: bytes,
        other_person_id: str,
        ts: int,
        ts_text: bytes,
        ord: bytes,
        props: list[tuple[bytes, bytes, bytes]],
        source: bytes = b"",
        bucket: bytes = b"",
        groups: list[GroupOp] | None = None,
        max_group_types: int = 0,
        buffer: bool = False,
        fields: list[bytes] | None = None,
        ingested: bytes = b"",
        payload: bytes = b"",
        entry_id: bytes = b"",
    ) -> None:
        self.process = process
        self.dangerous = dangerous
        self.merge = merge
        self.into = into
        self.into_person_id = into_person_id
        self.other = other
        self.other_person_id = other_person_id
        self.ts = ts
        self.ts_text = ts_text
        self.ord = ord
        self.props = props
        self.source = source
        self.bucket = bucket
        self.groups = [] if groups is None else groups
        self.max_group_types = max_group_types
        self.buffer = buffer
        self.fields = [] if fields is None else fields
        self.ingested = ingested
        self.payload = payload
        self.entry_id = entry_id


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


def parse_call(args: Sequence[bytes]) -> Call:
    """The header and ops of a ``resolve`` call's ARGV (``codec.encode_args``)."""
    if len(args) < _HEADER_SIZE:
        raise EngineError("bad ARGV: header")
    if args[0].decode() != protocol.FORMAT_VERSION:
        raise EngineError(f"bad ARGV: format version {args[0]!r}")
    command = args[11].decode()
    try:
        mode = args[1].decode()
        max_ids, max_bytes, force_upgrade = int(args[2]), int(args[3]), int(args[4])
        now, buffer_delay, per_id = int(args[6]), int(args[7]), int(args[8])
        total, lease, release_limit = int(args[9]), int(args[10]), int(args[12])
        op_count, last_seen = int(args[14]), int(args[15])
    except ValueError as exc:
        raise EngineError("bad ARGV: header") from exc
    if mode not in protocol.ORDERING_MODES.values():
        raise EngineError(f"bad ARGV: ordering mode {mode!r}")
    if command not in protocol.COMMANDS.values():
        raise EngineError(f"bad ARGV: command {command!r}")
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
        op, at = parse_op(args, at, index + 1)
        ops.append(op)
    if at != len(args):
        raise EngineError(f"bad ARGV: {len(args) - at} unread values")
    return Call(config, ops)


def parse_op(args: Sequence[bytes], at: int, index: int, stored: bool = False) -> tuple[Op, int]:
    """``argv.parse_op``: the op at ``at``; ``stored``, the fields a buffered entry kept (no
    source)."""
    try:
        flags, nprops = int(args[at]), int(args[at + 7])
        into, other, ts_text, order = args[at + 1], args[at + 3], args[at + 5], args[at + 6]
        ts = int(ts_text)
    except (IndexError, ValueError) as exc:
        raise EngineError(f"bad ARGV: op {index}") from exc
    if not 0 <= flags <= protocol.MAX_FLAGS or nprops < 0:
        raise EngineError(f"bad ARGV: op {index}")
    props: list[tuple[bytes, bytes, bytes]] = []
    pos = at + 8
    for _ in range(nprops):
        if pos + 2 >= len(args) or args[pos] not in CODES:
            raise EngineError(f"bad ARGV: a property operation of op {index}")
        props.append((args[pos], args[pos + 1], args[pos + 2]))
        pos += 3
    groups, max_types, pos = parse_groups(args, pos, index)
    props_end = pos
    source = bucket = b""
    if not stored:
        if pos + 1 >= len(args):
            raise EngineError(f"bad ARGV: op {index} cut short")
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
            raise EngineError(f"bad ARGV: the buffer fields of op {index}")
        op.buffer = True
        op.fields = [b"%d" % (flags - _BUFFERABLE), *args[at + 1 : props_end]]
        op.ingested, op.payload, op.entry_id = args[pos], args[pos + 1], args[pos + 2]
        if not op.ingested.lstrip(b"-").isdigit():
            raise EngineError(f"bad ARGV: the buffer fields of op {index}")
        pos += 3
    return op, pos


def parse_groups(args: Sequence[bytes], at: int, index: int) -> tuple[list[GroupOp], int, int]:
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
        raise EngineError(f"bad ARGV: the groups of op {index}") from exc
    return groups, max_types, at
