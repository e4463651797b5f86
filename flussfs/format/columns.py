"""Column chunks and their statistics (format_spec/spec-v1.md, "Column chunks").

A column chunk is an Arrow IPC stream holding one record batch of one column, stored either as
one zstd frame ("codec": "zstd", with "raw_length" the stream's size) or as is ("codec":
"none", for chunks too small to gain). Chunks written before the codec field existed are plain
IPC streams whose buffers Arrow compressed itself; readers still read them. Descriptor:
{"field_id", "offset", "length", "crc32", "codec"?, "raw_length"?, "nulls", "min"?, "max"?}.
One zstd call over the whole stream costs a fifth of Arrow's per-buffer compression.
Invariants: a chunk's rows equal the object's `rows`; min/max are present only when exact and
JSON-representable (strings up to STAT_STRING_CHARS_MAX characters, finite floats, no NaN in
the column), so a reader may prune with them and never wrongly skip a row.
"""
from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CorruptObjectError
from . import block

STAT_STRING_CHARS_MAX = 64
COMPRESS_BYTES_MIN = 512  # smaller streams are stored as is
_ZSTD = pa.Codec("zstd", compression_level=1)
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)


def encode_columns(data: pa.Table, field_ids: list[int], offset: int) -> tuple[bytes, list[dict]]:
    """Body bytes holding one chunk per column of `data`, starting at object offset `offset`."""
    parts, descriptors = [], []
    for column, field, field_id in zip(data.columns, data.schema, field_ids):
        stream = _encode_chunk(field, column)
        chunk, codec = stream, {"codec": "none"}
        if len(stream) >= COMPRESS_BYTES_MIN:
            chunk = _ZSTD.compress(stream, asbytes=True)
            codec = {"codec": "zstd", "raw_length": len(stream)}
        descriptors.append({"field_id": field_id, "offset": offset, "length": len(chunk),
                            "crc32": block.crc32(chunk), **codec, **column_stats(column)})
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts), descriptors


def _encode_chunk(field: pa.Field, column: pa.ChunkedArray) -> bytes:
    schema = pa.schema([field])
    batch = pa.record_batch([column.combine_chunks()], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema, options=_IPC_OPTIONS) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_chunk(chunk: bytes, descriptor: dict, name: str) -> pa.Array:
    """The column of a checked chunk."""
    codec = descriptor.get("codec", "none")
    try:
        if codec == "zstd":
            chunk = _ZSTD.decompress(chunk, decompressed_size=descriptor["raw_length"])
        elif codec != "none":
            raise CorruptObjectError(f"{name}: unknown column chunk codec {codec!r}")
        table = pa.ipc.open_stream(pa.py_buffer(chunk)).read_all()
    except (pa.ArrowException, OSError, KeyError) as e:
        raise CorruptObjectError(f"{name}: column chunk does not decode: {e}") from None
    if table.num_columns != 1:
        raise CorruptObjectError(f"{name}: column chunk holds {table.num_columns} columns, not 1")
    return table.column(0).combine_chunks()


def column_stats(column: pa.ChunkedArray) -> dict:
    stats = {"nulls": column.null_count}
    if column.null_count == len(column) or not _has_orderable_stats(column.type):
        return stats
    if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
        return stats
    for name, value in zip(("min", "max"), pc.min_max(column).values()):
        encoded = _stat_value(value, column.type)
        if encoded is not None:
            stats[name] = encoded
    return stats


def _has_orderable_stats(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_date(t)
            or pa.types.is_timestamp(t))


def _physical(t: pa.DataType) -> pa.DataType:
    return pa.int32() if t == pa.date32() else pa.int64()


def _stat_value(scalar: pa.Scalar, t: pa.DataType):
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pa.array([scalar], t).view(_physical(t))[0].as_py()  # days / units since the epoch
    value = scalar.as_py()
    if pa.types.is_floating(t):
        return value if math.isfinite(value) else None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return value if len(value) <= STAT_STRING_CHARS_MAX else None
    return value


def stat_scalar(value, t: pa.DataType) -> pa.Scalar:
    """A descriptor's min/max back as a scalar of the column's type."""
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pa.array([value], _physical(t)).view(t)[0]
    return pa.scalar(value, t)
