"""Schemas with field ids as JSON (format_spec/spec-v1.md, "Schema").

A field is {"id", "name", "type", "nullable"}; `type` is a string for primitives ("int64",
"string", "timestamp[us, tz=UTC]", ...) or an object for parameterised and nested types.
Invariant: decode(encode(schema)) equals the schema, field order, nullability and all.
"""
from __future__ import annotations

import pyarrow as pa

from ..errors import CorruptObjectError, InvalidInputError

_PRIMITIVES = {
    "bool": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(),
    "int64": pa.int64(), "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(),
    "uint64": pa.uint64(), "float32": pa.float32(), "float64": pa.float64(),
    "string": pa.string(), "large_string": pa.large_string(), "binary": pa.binary(),
    "large_binary": pa.large_binary(), "date32": pa.date32(), "date64": pa.date64(),
}
_PRIMITIVE_NAMES = {t: n for n, t in _PRIMITIVES.items()}


def encode_type(t: pa.DataType, column: str):
    if t in _PRIMITIVE_NAMES:
        return _PRIMITIVE_NAMES[t]
    if pa.types.is_timestamp(t):
        return {"type": "timestamp", "unit": t.unit, "tz": t.tz}
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        return {"type": "time", "unit": t.unit}
    if pa.types.is_decimal128(t):
        return {"type": "decimal", "precision": t.precision, "scale": t.scale}
    if pa.types.is_fixed_size_binary(t):
        return {"type": "fixed_binary", "width": t.byte_width}
    raise InvalidInputError(f"column {column!r}: type {t} is not supported by flussfs")


def decode_type(j) -> pa.DataType:
    if isinstance(j, str):
        if j not in _PRIMITIVES:
            raise CorruptObjectError(f"unknown type {j!r} in table metadata")
        return _PRIMITIVES[j]
    kind = j.get("type")
    if kind == "timestamp":
        return pa.timestamp(j["unit"], tz=j.get("tz"))
    if kind == "time":
        return pa.time32(j["unit"]) if j["unit"] in ("s", "ms") else pa.time64(j["unit"])
    if kind == "decimal":
        return pa.decimal128(j["precision"], j["scale"])
    if kind == "fixed_binary":
        return pa.binary(j["width"])
    raise CorruptObjectError(f"unknown type {j!r} in table metadata")


def encode_schema(schema: pa.Schema, first_id: int = 1) -> list[dict]:
    """Fields with ids first_id, first_id + 1, ... in schema order."""
    return [{"id": first_id + i, "name": f.name, "type": encode_type(f.type, f.name),
             "nullable": f.nullable} for i, f in enumerate(schema)]


def decode_schema(fields: list[dict]) -> pa.Schema:
    return pa.schema([pa.field(f["name"], decode_type(f["type"]), nullable=f["nullable"])
                      for f in fields])
