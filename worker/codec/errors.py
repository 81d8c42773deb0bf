"""Errors raised by the codecs. No fastavro, json or registry exception leaves ``worker.codec``.

They belong to the worker's one error tree (drawn in ``worker.errors``):

::

    WorkerError
    └── CodecError
        ├── DecodeError                     input that can never be decoded: dead-letter it
        ├── EncodeError                     one of our own records could not be encoded: a bug
        └── SchemaRegistryUnavailableError  transient (a TransientSchemaRegistryError too):
                                            retry the message later, do not dead-letter
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from worker.errors import TransientSchemaRegistryError, WorkerError

DecodeReason = Literal[
    "empty_value",
    "unknown_magic_byte",
    "invalid_frame",
    "unknown_schema_id",
    "incompatible_schema",
    "avro_invalid",
    "json_invalid",
    "unknown_format",
    "missing_field",
    "invalid_field",
    "unknown_event_type",
    "value_out_of_range",
    "nesting_too_deep",
    "too_many_properties",
]
"""Machine-readable reasons, written to the dead-letter headers and used as metric labels."""

DECODE_REASONS: Final[tuple[DecodeReason, ...]] = get_args(DecodeReason)

_MAX_MESSAGE_CHARS: Final = 300
"""Library messages can quote whole schemas; keep dead-letter headers and logs short."""


def _shorten(text: str) -> str:
    if len(text) <= _MAX_MESSAGE_CHARS:
        return text
    return text[: _MAX_MESSAGE_CHARS - 3] + "..."


class CodecError(WorkerError):
    """Base of the codecs' errors."""


class DecodeError(CodecError):
    """An input message that cannot be decoded or validated.

    Operator action: none per message; it goes to the dead-letter topic with ``reason`` in its
    headers. A rising rate of one reason points at a producer sending a broken or unsupported
    payload (``field`` names the offending field where there is one).
    """

    def __init__(
        self,
        reason: DecodeReason,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        self.reason: DecodeReason = reason
        self.field = field
        self.index = index
        """the element of a JSON array (a batch) that is bad; ``None`` for the whole message"""
        self.message = _shorten(message)
        super().__init__(f"{reason}: {self.message}")


class SchemaRegistryUnavailableError(CodecError, TransientSchemaRegistryError):
    """The schema registry could not be asked for a writer schema (network, 5xx, auth).

    Operator action: check the registry URL, credentials and health. The message itself may be
    fine, so the worker retries the batch with backoff instead of dead-lettering it.
    """


class EncodeError(CodecError):
    """One of our own output records could not be encoded.

    Operator action: report a bug; the record does not match its schema. The input it came
    from goes to the dead-letter topic (reason ``encode_failed``), so nothing stops.
    """
