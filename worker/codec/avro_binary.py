"""A direct reader and writer of the Avro binary encoding for the shapes our schemas use.

``plan(schema)`` turns a schema (JSON, logical types removed) built only of ``null``,
``boolean``, ``long``, ``string``, enums, arrays, records and two-branch unions with ``null``
into a tree of nodes that read and write that encoding straight from ``bytes`` into a
``bytearray``, without fastavro's per-call schema handling and generic dispatch; any other
schema has no plan (``None``). The nodes take only what they can encode exactly as fastavro
does: exact types (a ``bool`` is no ``long``), every record field present, varints of at most
nine bytes, array blocks with a positive count. Anything else raises ``Unsupported``, and the
caller (``worker.codec.avro``) gives the same input to fastavro, which stays the reference for
every error and every unusual value.
"""

from __future__ import annotations

from typing import Any, Final

_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_MAX_SHIFT: Final = 56
"""A varint of more than nine bytes (63 bits) is left to fastavro."""


class Unsupported(Exception):
    """The input is outside what the nodes handle: fastavro reads or writes it instead."""


class Reader:
    """A position in one Avro body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read_long(self) -> int:
        data = self.data
        pos = self.pos
        byte = data[pos]
        pos += 1
        n = byte & 0x7F
        shift = 0
        while byte >= 0x80:
            shift += 7
            if shift > _MAX_SHIFT:
                raise Unsupported("varint longer than nine bytes")
            byte = data[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
        self.pos = pos
        return (n >> 1) ^ -(n & 1)


def write_long(out: bytearray, value: int) -> None:
    n = (value << 1) ^ (value >> 63)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class Node:
    """One schema node: reads its value from a ``Reader``, writes a value into a bytearray."""

    def read(self, reader: Reader) -> Any:
        raise NotImplementedError

    def write(self, out: bytearray, value: Any) -> None:
        raise NotImplementedError


class NullNode(Node):
    def read(self, reader: Reader) -> Any:
        return None

    def write(self, out: bytearray, value: Any) -> None:
        if value is not None:
            raise Unsupported("null")


class BooleanNode(Node):
    def read(self, reader: Reader) -> Any:
        byte = reader.data[reader.pos]
        if byte > 1:
            raise Unsupported("boolean byte")
        reader.pos += 1
        return byte == 1

    def write(self, out: bytearray, value: Any) -> None:
        if type(value) is not bool:
            raise Unsupported("boolean")
        out.append(1 if value else 0)


class LongNode(Node):
    def read(self, reader: Reader) -> Any:
        return reader.read_long()

    def write(self, out: bytearray, value: Any) -> None:
        if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
            raise Unsupported("long")
        write_long(out, value)


class StringNode(Node):
    def read(self, reader: Reader) -> Any:
        size = reader.read_long()
        start = reader.pos
        end = start + size
        if size < 0 or end > len(reader.data):
            raise Unsupported("string size")
        reader.pos = end
        return reader.data[start:end].decode("utf-8")

    def write(self, out: bytearray, value: Any) -> None:
        if type(value) is not str:
            raise Unsupported("string")
        encoded = value.encode("utf-8")
        write_long(out, len(encoded))
        out += encoded


class EnumNode(Node):
    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.indexes = {symbol: index for index, symbol in enumerate(symbols)}

    def read(self, reader: Reader) -> Any:
        index = reader.read_long()
        if not 0 <= index < len(self.symbols):
            raise Unsupported("enum index")
        return self.symbols[index]

    def write(self, out: bytearray, value: Any) -> None:
        if type(value) is not str:
            raise Unsupported("enum")
        index = self.indexes.get(value)
        if index is None:
            raise Unsupported("enum symbol")
        write_long(out, index)


class NullableNode(Node):
    """A union of ``null`` and one other type, in either order."""

    def __init__(self, null_index: int, other: Node) -> None:
        self.null_index = null_index
        self.other_index = 1 - null_index
        self.other = other

    def read(self, reader: Reader) -> Any:
        index = reader.read_long()
        if index == self.null_index:
            return None
        if index != self.other_index:
            raise Unsupported("union index")
        return self.other.read(reader)

    def write(self, out: bytearray, value: Any) -> None:
        if value is None:
            write_long(out, self.null_index)
        else:
            write_long(out, self.other_index)
            self.other.write(out, value)


class ArrayNode(Node):
    def __init__(self, items: Node) -> None:
        self.items = items

    def read(self, reader: Reader) -> Any:
        values: list[Any] = []
        while True:
            count = reader.read_long()
            if count == 0:
                return values
            if count < 0 or count > len(reader.data) - reader.pos:
                raise Unsupported("array block")
            for _ in range(count):
                values.append(self.items.read(reader))

    def write(self, out: bytearray, value: Any) -> None:
        if type(value) is not list and type(value) is not tuple:
            raise Unsupported("array")
        if value:
            write_long(out, len(value))
            for item in value:
                self.items.write(out, item)
        out.append(0)


class RecordNode(Node):
    def __init__(self, fields: list[tuple[str, Node]]) -> None:
        self.names = [name for name, _ in fields]
        self.nodes = [node for _, node in fields]

    def read(self, reader: Reader) -> Any:
        record: dict[str, Any] = {}
        names = self.names
        nodes = self.nodes
        for i in range(len(nodes)):
            record[names[i]] = nodes[i].read(reader)
        return record

    def write(self, out: bytearray, value: Any) -> None:
        if type(value) is not dict:
            raise Unsupported("record")
        names = self.names
        nodes = self.nodes
        for i in range(len(nodes)):
            name = names[i]
            if name not in value:
                raise Unsupported("record field")
            nodes[i].write(out, value[name])

    def read_body(self, body: bytes) -> dict[str, Any]:
        """The record encoded by all of ``body``; ``Unsupported`` (or any other exception)
        when the fast path cannot say, including bytes left over."""
        reader = Reader(body)
        record: dict[str, Any] = self.read(reader)
        if reader.pos != len(body):
            raise Unsupported("trailing bytes")
        return record

    def write_body(self, out: bytearray, record: Any) -> None:
        """Append the encoding of ``record`` to ``out``."""
        self.write(out, record)


_PRIMITIVES: Final[dict[str, Node]] = {
    "null": NullNode(),
    "boolean": BooleanNode(),
    "long": LongNode(),
    "string": StringNode(),
}


class _NoPlan(Exception):
    pass


def _node(schema: Any) -> Node:
    if isinstance(schema, str):
        primitive = _PRIMITIVES.get(schema)
        if primitive is None:
            raise _NoPlan(schema)
        return primitive
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema or schema[0] == schema[1]:
            raise _NoPlan("union")
        null_index = schema.index("null")
        return NullableNode(null_index, _node(schema[1 - null_index]))
    if not isinstance(schema, dict):
        raise _NoPlan(type(schema).__name__)
    kind = schema.get("type")
    if kind == "record":
        return RecordNode([(field["name"], _node(field["type"])) for field in schema["fields"]])
    if kind == "enum":
        symbols = schema["symbols"]
        if not all(isinstance(symbol, str) for symbol in symbols):
            raise _NoPlan("enum")
        return EnumNode(list(symbols))
    if kind == "array":
        return ArrayNode(_node(schema["items"]))
    if isinstance(kind, str) and set(schema) <= {"type", "doc"}:
        return _node(kind)
    raise _NoPlan(str(kind))


def plan(schema: Any) -> RecordNode | None:
    """The nodes of a record schema (JSON, logical types removed), or ``None`` when it uses a
    shape they do not cover (fastavro then does all the work)."""
    try:
        node = _node(schema)
    except (_NoPlan, KeyError, TypeError):
        return None
    return node if isinstance(node, RecordNode) else None
