"""Input and output codecs: Kafka message bytes ⇄ ``InputEvent`` / output records.

Inputs: our Avro ``Event`` (Confluent wire format, with schema evolution through a registry),
our JSON shape, PostHog capture events, Segment spec calls and the Altertable, SeerStack,
LogRocket and Schematic payloads (``decode_messages``). Outputs:
enriched events, distinct-id overrides and ingestion warnings as Avro or JSON
(``OutputEncoder``). Formats are documented in docs/FORMATS.md.
"""

from worker.codec.avro import SCHEMA_IDS, AvroCodec, SchemaName, SchemaResolver
from worker.codec.decode import DecodeOptions, decode_message, decode_messages, tenant_from_key
from worker.codec.encode import EncodedRecord, OutputEncoder, OutputFormat
from worker.codec.envelope import InputEvent, RawFormat, to_identity_event
from worker.codec.errors import (
    DECODE_REASONS,
    CodecError,
    DecodeError,
    DecodeReason,
    EncodeError,
    SchemaRegistryUnavailableError,
)
from worker.codec.json_formats import DecodedItem, JsonDialect, JsonOptions

__all__ = [
    "DECODE_REASONS",
    "SCHEMA_IDS",
    "AvroCodec",
    "CodecError",
    "DecodeError",
    "DecodeOptions",
    "DecodeReason",
    "DecodedItem",
    "EncodeError",
    "EncodedRecord",
    "InputEvent",
    "JsonDialect",
    "JsonOptions",
    "OutputEncoder",
    "OutputFormat",
    "RawFormat",
    "SchemaName",
    "SchemaRegistryUnavailableError",
    "SchemaResolver",
    "decode_message",
    "decode_messages",
    "tenant_from_key",
    "to_identity_event",
]
