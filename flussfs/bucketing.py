"""Assigning rows to buckets (format_spec/spec-v1.md, "Bucket function").

With a bucket key of one column, a row's bucket is Iceberg's bucket transform:
(murmur3_x86_32(value bytes, seed 0) & 0x7FFFFFFF) % buckets, where ints, longs, dates (days)
and timestamps (microseconds) hash as 8-byte little-endian longs, strings as UTF-8 and binary
as their bytes. With several columns, the column hashes (as unsigned 32-bit little-endian
words, in key order) are concatenated and hashed again. Invariant: the same key always lands
in the same bucket, in every implementation; integer keys are hashed vectorised.
"""
from __future__ import annotations

import mmh3
import numpy as np
import pyarrow as pa

from .errors import InvalidInputError

_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmur3_words(words: np.ndarray) -> np.ndarray:
    """murmur3_x86_32 (seed 0) of each row of a (rows, w) uint32 array, as signed int32."""
    rows, width = words.shape
    h = np.zeros(rows, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i in range(width):
            k = words[:, i] * _C1
            k = _rotl(k, 15) * _C2
            h = _rotl(h ^ k, 13) * np.uint32(5) + np.uint32(0xE6546B64)
        h ^= np.uint32(4 * width)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h.view(np.int32)


def hashable_type(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_date(t) or pa.types.is_timestamp(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))


def column_hash(column: pa.Array, name: str) -> np.ndarray:
    """Iceberg's murmur3 hash of every value of a non-null column, as signed int32."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_date(t) or pa.types.is_timestamp(t):
        longs = _as_longs(column)
        return murmur3_words(np.ascontiguousarray(longs).view(np.uint32).reshape(-1, 2))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.fromiter((mmh3.hash(v.encode()) for v in column.to_pylist()), np.int32, len(column))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return np.fromiter((mmh3.hash(v) for v in column.to_pylist()), np.int32, len(column))
    raise InvalidInputError(f"bucket key column {name!r} has type {t}, which has no bucket hash "
                            f"(use an integer, date, timestamp, string or binary column)")


def _as_longs(column: pa.Array) -> np.ndarray:
    t = column.type
    if pa.types.is_timestamp(t):
        column = column.cast(pa.timestamp("us", t.tz), safe=False)
        return column.view(pa.int64()).to_numpy(zero_copy_only=False)
    if t == pa.date32():
        return column.view(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    if t == pa.date64():
        days = column.cast(pa.date32(), safe=False)  # Iceberg dates are whole days
        return days.view(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    return column.to_numpy(zero_copy_only=False).astype(np.int64)


def key_hash(table: pa.Table, key: list[str]) -> np.ndarray:
    """The bucket hash of each row over the key columns (signed int32)."""
    hashes = []
    for name in key:
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise InvalidInputError(f"bucket key column {name!r} holds null(s)")
        hashes.append(column_hash(column, name))
    if len(hashes) == 1:
        return hashes[0]
    return murmur3_words(np.ascontiguousarray(np.stack(hashes, axis=1)).view(np.uint32))


def bucket_of(table: pa.Table, key: list[str], buckets: int) -> np.ndarray:
    """Each row's bucket in [0, buckets)."""
    return (key_hash(table, key).astype(np.int64) & 0x7FFFFFFF) % buckets


def split_by_bucket(table: pa.Table, bucket_ids: np.ndarray, buckets: int) -> dict[int, pa.Table]:
    """The rows of each bucket that has any, in their original order."""
    order = np.argsort(bucket_ids, kind="stable")
    sorted_ids = bucket_ids[order]
    bounds = np.searchsorted(sorted_ids, np.arange(buckets + 1))
    out = {}
    for b in range(buckets):
        lo, hi = bounds[b], bounds[b + 1]
        if hi > lo:
            out[b] = table.take(pa.array(order[lo:hi]))
    return out
