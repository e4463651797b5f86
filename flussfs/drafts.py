"""Turning conformed rows into drafts ready to commit: routing to buckets, encoding column
chunks, choosing inline data or referenced segments (format_spec/spec-v1.md, "Writer
requirements").

Invariants: segments are uploaded before the commit that references them, under keys unique to
(writer id, sequence, part), so a retried or re-routed commit reuses them; a draft's parts add
up to its rows in input order.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import paths
from .bucketing import bucket_of, split_by_bucket
from .errors import CommitOutcomeUnknownError
from .format import block
from .format.columns import encode_columns
from .format.commit import encode_segment
from .log import Draft

INLINE_BYTES_MAX = 256 * 1024        # encoded data up to this size travels inside the commit
SEGMENT_BYTES_TARGET = 32 * 2**20   # uncompressed Arrow bytes per referenced segment
SPREAD_BYTES_MIN = 4 * 2**20        # keyless appends larger than this spread over all buckets
SEGMENT_PUT_ATTEMPTS_MAX = 4


def route(table: pa.Table, meta, next_bucket) -> dict[int, pa.Table]:
    """bucket -> rows. With a bucket key: by hash. Without: one bucket per call (round robin,
    `next_bucket()`), or every bucket in even slices for a large call."""
    if meta.bucket_key:
        return split_by_bucket(table, bucket_of(table, list(meta.bucket_key), meta.buckets),
                               meta.buckets)
    if table.nbytes < SPREAD_BYTES_MIN or meta.buckets == 1:
        return {next_bucket(): table}
    ids = (np.arange(table.num_rows) * meta.buckets) // table.num_rows
    return split_by_bucket(table, ids, meta.buckets)


def encode(store, meta, bucket: int, rows: pa.Table, writer_id: str, writer_seq: int,
           operation: str = "append") -> Draft:
    """A draft of `rows` for `bucket`; large data is uploaded as segments now."""
    ids = list(meta.field_ids)
    if rows.nbytes <= SEGMENT_BYTES_TARGET:
        body, columns = encode_columns(rows, ids, block.BODY_OFFSET)
        if len(body) <= INLINE_BYTES_MAX:
            return Draft(({"rows": rows.num_rows, "columns": columns},), rows.num_rows, writer_id,
                         writer_seq, body, meta.schema_id, operation, rows=rows)
        slices = [(rows, body, columns)]
    else:
        per_segment = max(1, rows.num_rows * SEGMENT_BYTES_TARGET // rows.nbytes)
        slices = []
        for start in range(0, rows.num_rows, per_segment):
            piece = rows.slice(start, per_segment)
            slices.append((piece, *encode_columns(piece, ids, block.BODY_OFFSET)))
    parts = tuple(_upload(store, meta, bucket, i, piece, body, columns, writer_id, writer_seq)
                  for i, (piece, body, columns) in enumerate(slices))
    return Draft(parts, rows.num_rows, writer_id, writer_seq, b"", meta.schema_id, operation, rows=rows)


def _upload(store, meta, bucket, part, piece, body, columns, writer_id, writer_seq) -> dict:
    key = paths.segment(bucket, writer_id, writer_seq, part)
    data = encode_segment(piece.num_rows, columns, body, writer_id, writer_seq, meta.schema_id)
    for attempt in range(SEGMENT_PUT_ATTEMPTS_MAX):
        try:
            store.put_if_absent(key, data)  # EXISTS can only be our own earlier attempt: unique key
            break
        except CommitOutcomeUnknownError:
            if attempt == SEGMENT_PUT_ATTEMPTS_MAX - 1:
                raise
    return {"rows": piece.num_rows, "key": key, "size": len(data), "columns": columns}
