"""Redis key schema of the identity store (pure: no I/O).

Every key of a tenant carries the hash tag ``{<tenant>}``, so all of a tenant's keys live in one
Redis Cluster slot and one Lua script can touch them all::

    <prefix>:{<tenant>}:ids                hash   the union-find: distinct id -> "P" parent id
                                                  (a non-root) or its person record (a root:
                                                  binary, lua/resolve/record_codec.lua), which
                                                  holds the tree's other ids up to 8
    <prefix>:{<tenant>}:members:<root>     string every distinct id of the root's tree (each
                                                  as length ":" id, appended to), for a tree
                                                  of more than 8 ids (a set in format 6)
    <prefix>:{<tenant>}:reply:<token>      string a call's reply, kept briefly so a retried
                                                  call returns it instead of running again
    <prefix>:{<tenant>}:buf:...            the 60-second buffer (lua/resolve/buffer.lua)
    <prefix>:{<tenant>}:rcpt:<bucket>      hash   replay receipts: source -> the reply entry
                                                  given for it (lua/resolve/receipts.lua)
    <prefix>:{<tenant>}:g:...              the groups: types, records, members
                                                  (lua/resolve/groups.lua)
    <prefix>:{<tenant>}:fold               hash   ASCII-lowercased form of each known id that
                                                  is not lowercase (lua/resolve/case_fold.lua)
    <prefix>:{<tenant>}:deleted            hash   distinct id -> how many times it was deleted
                                                  and the person id it starts next (contract
                                                  A10, lua/delete_person.lua)
    <prefix>:buffer-due                    zset   tenant -> earliest due time or lease deadline
                                                  of its buffer (no hash tag: not a tenant key)

Receipts, bounded: ``<bucket>`` is ``receipt_bucket(source)``, the source's topic, partition and
offset divided by ``RECEIPT_BUCKET_OFFSETS`` (``topic/partition/offset[#i]`` ->
``topic/partition/<offset // 4096>``; any other source is its own bucket). A hash so holds the
receipts of at most 4,096 input messages (times their events) of one partition, and the
receipts of one batch fall in one or two hashes. They live until the store's ``forget`` (called
once the offsets are committed) deletes their fields, or the hash's TTL
(``redis.receipt_ttl_seconds``, refreshed on every write to it) reaps what a crash left behind.
So memory holds the receipts of the uncommitted input; a receipt never forgotten lives at most
until its partition's input moves past its offset range, plus the TTL.

The person record layout (format 9; formats 7 and 6 still read) is documented in
``lua/resolve/record_codec.lua``; ``lua/read_person.lua`` turns it into a JSON view that
``person_record.py`` decodes.

``<tenant>`` is percent-encoded: ``%``, ``{``, ``}`` and ``:`` become ``%25``, ``%7B``, ``%7D``
and ``%3A``. The encoding is injective and leaves no brace in the tag, so two tenants never share
a tag (or a key), and the tag Redis hashes is exactly the encoded tenant. The prefix may not
contain braces (it would move the hash tag) and is followed by ``:{``, so keys of different
prefixes cannot collide either. ``<root>`` and ``<token>`` are the raw tail of the key: nothing
follows them, so they need no escaping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_ESCAPES: Final = {"%": "%25", "{": "%7B", "}": "%7D", ":": "%3A"}
_UNESCAPES: Final = {v: k for k, v in _ESCAPES.items()}
_GLOB_SPECIAL: Final = frozenset("*?[]\\^")


RECEIPT_BUCKET_OFFSETS: Final = 4096
"""Input offsets per receipt hash (see the module docstring)."""


def receipt_bucket(source: str) -> str:
    """The receipt hash suffix of ``source`` (``topic/partition/offset`` with an optional
    ``#i``): the topic, the partition and the offset range; any other text is its own bucket."""
    head, sep, tail = source.rpartition("/")
    offset = tail.partition("#")[0]
    if not sep or not offset.isascii() or not offset.isdigit():
        return source
    return f"{head}/{int(offset) // RECEIPT_BUCKET_OFFSETS}"


def due_index(prefix: str) -> str:
    """The due-tenants sorted set of a store prefix (outside every tenant's slot)."""
    return validate_prefix(prefix) + ":buffer-due"


def escape_tenant(tenant: str) -> str:
    """Percent-encode the characters that would break the hash tag or the key layout."""
    return "".join(_ESCAPES.get(c, c) for c in tenant)


def unescape_tenant(escaped: str) -> str:
    """Inverse of ``escape_tenant``."""
    out: list[str] = []
    i = 0
    while i < len(escaped):
        chunk = escaped[i : i + 3]
        if chunk in _UNESCAPES:
            out.append(_UNESCAPES[chunk])
            i += 3
        else:
            out.append(escaped[i])
            i += 1
    return "".join(out)


def glob_escape(text: str) -> str:
    """Escape ``text`` for a Redis glob pattern (``SCAN MATCH``), so it matches literally."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is usable as a key prefix, else raise ``ValueError``."""
    if not prefix:
        raise ValueError("key prefix must not be empty")
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"key prefix {prefix!r} must not contain braces (they set the hash tag)")
    return prefix


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """The keys (and key prefixes) of one tenant."""

    prefix: str
    tenant: str

    @classmethod
    def of(cls, prefix: str, tenant: str) -> TenantKeys:
        return cls(validate_prefix(prefix), tenant)

    @property
    def tag(self) -> str:
        """The hash tag, braces included: every key of the tenant contains it."""
        return "{" + escape_tenant(self.tenant) + "}"

    @property
    def base(self) -> str:
        """``<prefix>:{<tenant>}:``, the start of every key of the tenant."""
        return f"{self.prefix}:{self.tag}:"

    @property
    def ids(self) -> str:
        """The union-find hash: every distinct id of the tenant."""
        return self.base + "ids"

    @property
    def members_prefix(self) -> str:
        return self.base + "members:"

    @property
    def reply_prefix(self) -> str:
        return self.base + "reply:"

    @property
    def buffer_prefix(self) -> str:
        """Start of the 60-second buffer's keys (``q:<id>``, ``e``, ``p``, ``due``, ...)."""
        return self.base + "buf:"

    @property
    def buffer_entries(self) -> str:
        return self.buffer_prefix + "e"

    @property
    def buffer_payloads(self) -> str:
        return self.buffer_prefix + "p"

    @property
    def buffer_due(self) -> str:
        return self.buffer_prefix + "due"

    @property
    def buffer_pending(self) -> str:
        return self.buffer_prefix + "pending"

    @property
    def buffer_count(self) -> str:
        return self.buffer_prefix + "n"

    @property
    def case_folds(self) -> str:
        """lower(id) of every known id that is not already lowercase (lua case_fold.lua)."""
        return self.base + "fold"

    @property
    def deleted(self) -> str:
        """Deleted ids: id -> epoch "|" next person id (lua/delete_person.lua)."""
        return self.base + "deleted"

    @property
    def groups_prefix(self) -> str:
        """Start of the groups' keys (``types``, ``records``, ``members``; lua groups.lua)."""
        return self.base + "g:"

    def buffer_queue(self, distinct_id: str) -> str:
        return self.buffer_prefix + "q:" + distinct_id

    def members(self, root: str) -> str:
        return self.members_prefix + root

    @property
    def receipts_prefix(self) -> str:
        """Start of the receipt hashes (``rcpt:<bucket>``)."""
        return self.base + "rcpt:"

    def receipts(self, source: str) -> str:
        """The receipt hash that holds ``source``'s receipt."""
        return self.receipts_prefix + receipt_bucket(source)

    @property
    def buffer_releases(self) -> str:
        return self.buffer_prefix + "r"

    def reply(self, token: str) -> str:
        return self.reply_prefix + token

    def members_pattern(self) -> str:
        """``SCAN MATCH`` pattern of every members key of the tenant."""
        return glob_escape(self.members_prefix) + "*"

    def all_pattern(self) -> str:
        """``SCAN MATCH`` pattern of every key of the tenant."""
        return glob_escape(self.base) + "*"

    def root_of_members_key(self, key: str) -> str:
        """The root distinct id named by a members key of this tenant."""
        if not key.startswith(self.members_prefix):
            raise ValueError(f"{key!r} is not a members key of tenant {self.tenant!r}")
        return key[len(self.members_prefix) :]

    def delete_keys(self) -> list[str]:
        """``KEYS`` of ``delete_person.lua``, in the order the script reads them."""
        return [
            self.ids,
            self.members_prefix,
            self.buffer_prefix,
            self.groups_prefix,
            self.case_folds,
            self.deleted,
        ]

    def script_keys(self, token: str, previous_token: str | None) -> list[str]:
        """``KEYS`` of ``resolve_batch.lua``, in the order the script reads them."""
        previous = self.reply(previous_token) if previous_token else self.reply(token)
        return [
            self.ids,
            self.members_prefix,
            self.reply(token),
            previous,
            self.buffer_prefix,
            self.receipts_prefix,
            self.groups_prefix,
            self.case_folds,
            self.deleted,
        ]
