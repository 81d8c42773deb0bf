"""The ARGV of ``lua/commit_batch.lua`` (pure: no I/O): a call's read set as checks, its writes,
its reply. The layout is at the top of the script.

``commit_args(reads, outcome)``: ``reads`` is what the call read (``reads.Recording.reads``),
``outcome`` what ``run`` returned for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from worker.store import protocol, record_format
from worker.store.engine.reads import ReadKey
from worker.store.engine.state import Outcome


def _flag(value: object) -> bytes:
    return b"1" if value else b"0"


def _listed(value: object) -> bytes:
    """A recorded list as the script reads it again: a members string (a set sorted)."""
    items: list[bytes] = []
    if isinstance(value, frozenset):
        items = sorted(i for i in value if isinstance(i, bytes))
    elif isinstance(value, tuple):
        items = [i for i in value if isinstance(i, bytes)]
    return record_format.members_text(items)


def _text(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


_EXPECTED: dict[str, Callable[[object], bytes]] = {
    "f": _flag,
    "q": _flag,
    "k": _flag,
    "c": _flag,
    "a": _flag,
    "t": _listed,
    "l": _listed,
    "x": _listed,
    "y": _listed,
}


def _arg(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _hash_checks(pairs: list[tuple[bytes, object]]) -> list[bytes]:
    """Checks of one hash's fields: count, the fields, the presence string, the values."""
    return [
        b"%d" % len(pairs),
        *(field for field, _ in pairs),
        b"".join(b"0" if answer is None else b"1" for _, answer in pairs),
        *(b"" if answer is None else _text(answer) for _, answer in pairs),
    ]


def checks(reads: dict[ReadKey, object]) -> list[bytes]:
    """The checks sections: the ids hash's, the receipt hashes', then the others (count, then
    kind, arg1, arg2, expected each)."""
    ids: list[tuple[bytes, object]] = []
    receipts: dict[bytes, list[tuple[bytes, object]]] = {}
    others: list[bytes] = []
    for key, answer in reads.items():
        name = key[0]
        if name == "value":  # (the ids and receipts: bytes)
            ids.append((cast(bytes, key[1]), answer))
            continue
        if name == "receipt":
            receipts.setdefault(cast(bytes, key[1]), []).append((cast(bytes, key[2]), answer))
            continue
        name, args = str(name), [_arg(a) for a in key[1:]]
        kind = protocol.COMMIT_CHECKS[name]
        encode = _EXPECTED.get(kind)
        if encode is not None:
            expected = encode(answer)
        elif answer is None:
            kind, expected = kind.upper(), b""
        else:
            expected = _text(answer)
        others += [kind.encode(), *[*args, b"", b""][:2], expected]
    out = _hash_checks(ids)
    out.append(b"%d" % len(receipts))
    for bucket, pairs in receipts.items():
        out += [bucket, *_hash_checks(pairs)]
    out.append(b"%d" % (len(others) // 4))
    return out + others


def reply_texts(outcome: Outcome) -> tuple[bytes, bytes]:
    """The reply's entries and released entries, as JSON array texts."""
    return b"[" + b",".join(outcome.entries) + b"]", b"[" + b",".join(outcome.released) + b"]"


def commit_args(
    reads: dict[ReadKey, object],
    outcome: Outcome,
    limits: tuple[int, int],
    *,
    echo: bool = True,
) -> list[bytes]:
    """The whole ARGV; ``limits``: the reply TTL and the receipt TTL (ms). ``echo``: the
    commit returns (and keeps) the whole reply, as the resolve script does; else the caller
    keeps the entries (``reply_texts``) and the commit answers the next due time alone."""
    w = outcome.writes
    reply_ttl, receipt_ttl = limits
    entries, released = reply_texts(outcome) if echo else (b"", b"")
    args: list[bytes] = [
        protocol.FORMAT_VERSION.encode(),
        b"%d" % reply_ttl,
        b"%d" % receipt_ttl,
        _flag(outcome.buffer_touched),
        entries,
        released,
        *checks(reads),
    ]

    def section(items: list[list[bytes]]) -> None:
        args.append(b"%d" % len(items))
        for item in items:
            args.extend(item)

    section([[k, v] for k, v in w.ids.items()])
    section([[root] for root in sorted(w.members_deleted)])
    section(
        [[root, _flag(root in w.members_fresh), text] for root, text in w.members_appended.items()]
    )
    section([[f] for f in w.folds])
    args.append(b"%d" % len(w.receipts))
    for bucket, kept in w.receipts.items():
        args += [bucket, b"%d" % len(kept)]
        for source, text in kept:
            args += [source, text]
    section([[t] for t in w.group_types])
    section([[f, text] for f, text in w.group_records.items()])
    section([[p, text] for p, text in w.group_members.items()])
    section([[p] for p in sorted(w.group_members_deleted)])
    section([[i] for i in w.queues_cleared])
    args.append(b"%d" % len(w.queues_pushed))
    for distinct_id, pushed in w.queues_pushed.items():
        args += [distinct_id, b"%d" % len(pushed), *pushed]
    section([[i, b"%d" % at] for i, at in w.due_added.items()])
    section([[e, entry, payload] for e, (entry, payload) in w.entries.items()])
    section([[e, text] for e, text in w.releases.items()])
    section(
        [[e, b"" if deadline is None else b"%d" % deadline] for e, deadline in w.leases.items()]
    )
    args.append(b"%d" % w.waiting_delta)
    return args
