"""`--schema` text -> an Arrow schema: 'id:int64!,name:string,ts:timestamp[us,UTC]'.

Invariants: only the types in TYPES and the parameterised timestamp[...] and decimal[...] are
accepted; anything else raises UsageError naming the column. A trailing '!' is the only way to
make a column non-nullable.
"""
from __future__ import annotations

import re

import pyarrow as pa

from .arguments import UsageError

TYPES = {"bool": pa.bool_(), "boolean": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(),
         "int32": pa.int32(), "int64": pa.int64(), "uint8": pa.uint8(), "uint16": pa.uint16(),
         "uint32": pa.uint32(), "uint64": pa.uint64(), "float32": pa.float32(),
         "float64": pa.float64(), "double": pa.float64(), "string": pa.string(),
         "binary": pa.binary(), "date32": pa.date32(), "date64": pa.date64()}
_PARAM_TYPE = re.compile(r"^(timestamp|decimal|decimal128)\s*[\[(]\s*([^\])]*)[\])]$")


def parse_type(text: str, column: str) -> pa.DataType:
    """'int64', 'timestamp[us]', 'timestamp[us,UTC]', 'decimal[10,2]' -> the Arrow type."""
    t = text.strip()
    if t.lower() in TYPES:
        return TYPES[t.lower()]
    m = _PARAM_TYPE.match(t)
    args = [a.strip() for a in m.group(2).split(",")] if m else []
    try:
        if m and m.group(1) == "timestamp" and 1 <= len(args) <= 2 and args[0] in ("s", "ms", "us", "ns"):
            tz = args[1].removeprefix("tz=").strip() if len(args) == 2 else None
            return pa.timestamp(args[0], tz=tz or None)
        if m and m.group(1).startswith("decimal") and len(args) == 2:
            return pa.decimal128(int(args[0]), int(args[1]))
    except (ValueError, pa.ArrowException) as e:
        raise UsageError(f"column {column!r}: bad type {text!r}: {e}") from None
    raise UsageError(f"column {column!r}: unknown type {text!r}; use one of "
                     f"{', '.join(TYPES)}, timestamp[unit] or timestamp[unit,TZ], decimal[p,s]")


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets: 'a:int64,t:timestamp[us,UTC]' -> 2 parts."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_schema(spec: str) -> pa.Schema:
    """'id:int64!,name:string' -> a schema; a trailing '!' makes a column non-nullable."""
    fields = []
    for item in split_top_level(spec):
        name, sep, type_text = item.partition(":")
        name, type_text = name.strip(), type_text.strip()
        if not sep or not name or not type_text:
            raise UsageError(f"schema item {item!r} must look like name:type or name:type!")
        nullable = not type_text.endswith("!")
        fields.append(pa.field(name, parse_type(type_text.rstrip("!"), name), nullable=nullable))
    if not fields:
        raise UsageError("--schema names no columns")
    return pa.schema(fields)
