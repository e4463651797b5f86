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
from .log import APPEND, CHANGE, Draft
from .runs import Run, coalesce

INLINE_BYTES_MAX = 256 * 1024        # encoded data up to this size travels inside the commit
SEGMENT_BYTES_TARGET = 32 * 2**20   # uncompressed Arrow bytes per referenced segment
SPREAD_BYTES_MIN = 4 * 2**20        # keyless appends larger than this spread over all buckets
SEGMENT_PUT_ATTEMPTS_MAX = 4


def route(run: Run, meta, next_bucket) -> dict[int, Run]:
    """bucket -> the run's rows there. With a bucket key: by hash. Without: one bucket per call
    (round robin, `next_bucket()`), or every bucket in even slices for a large call."""
    table = run.rows
    if meta.bucket_key:
        ids = bucket_of(table, list(meta.bucket_key), meta.buckets)
    elif table.nbytes < SPREAD_BYTES_MIN or meta.buckets == 1:
        return {next_bucket(): run}
    else:
        ids = (np.arange(table.num_rows) * meta.buckets) // table.num_rows
    return {b: Run(run.change, rows) for b, rows in split_by_bucket(table, ids, meta.buckets).items()}


def route_runs(runs: list[Run], meta, next_bucket) -> dict[int, list[Run]]:
    """bucket -> its slices of `runs`, in call order, adjacent alike runs joined. Without a
    bucket key, runs under SPREAD_BYTES_MIN together go to one bucket (one commit)."""
    runs = [r for r in runs if r.rows.num_rows]
    if not runs:
        return {}
    if not meta.bucket_key and (meta.buckets == 1 or sum(r.rows.nbytes for r in runs) < SPREAD_BYTES_MIN):
        return {next_bucket(): coalesce(runs)}
    out: dict[int, list[Run]] = {}
    for run in runs:
        for b, piece in route(run, meta, next_bucket).items():
            out.setdefault(b, []).append(piece)
    return {b: coalesce(pieces) for b, pieces in out.items()}


def encode(store, meta, bucket: int, runs: list[Run], writer_id: str, writer_seq: int) -> Draft:
    """A draft of `runs` for `bucket`: one inline part per run, or, for large data, referenced
    segments uploaded now."""
    operation = CHANGE if meta.primary_key else APPEND
    record_count = sum(r.rows.num_rows for r in runs)
    encoded = {}
    if sum(r.rows.nbytes for r in runs) <= SEGMENT_BYTES_TARGET:
        encoded = {i: encode_columns(r.rows, _field_ids(meta, r.rows), block.BODY_OFFSET)
                   for i, r in enumerate(runs)}
        if sum(len(body) for body, _ in encoded.values()) <= INLINE_BYTES_MAX:
            parts, body = _inline(runs, encoded, operation)
            return Draft(parts, record_count, writer_id, writer_seq, body, meta.schema_id,
                         operation, rows=runs)
    parts = []
    for i, run in enumerate(runs):
        for piece, (body, columns) in _segment_pieces(meta, run, encoded.get(i)):
            part = _upload(store, meta, bucket, len(parts), piece, body, columns, writer_id, writer_seq)
            parts.append(_tagged(part, run, operation))
    return Draft(tuple(parts), record_count, writer_id, writer_seq, b"", meta.schema_id,
                 operation, rows=runs)


def _inline(runs: list[Run], encoded: dict, operation: str) -> tuple[tuple, bytes]:
    """Inline parts: the runs' chunks one after another in the commit body."""
    parts, shift = [], 0
    for i, run in enumerate(runs):
        body, columns = encoded[i]
        columns = [{**d, "offset": d["offset"] + shift} for d in columns]
        parts.append(_tagged({"rows": run.rows.num_rows, "columns": columns}, run, operation))
        shift += len(body)
    return tuple(parts), b"".join(body for body, _ in encoded.values())


def _segment_pieces(meta, run: Run, encoded):
    """(rows, (body, descriptors)) per segment of a run: about SEGMENT_BYTES_TARGET each."""
    if encoded is not None and run.rows.nbytes <= SEGMENT_BYTES_TARGET:
        return [(run.rows, encoded)]
    per_segment = max(1, run.rows.num_rows * SEGMENT_BYTES_TARGET // max(1, run.rows.nbytes))
    pieces = [run.rows.slice(s, per_segment) for s in range(0, run.rows.num_rows, per_segment)]
    return [(p, encode_columns(p, _field_ids(meta, p), block.BODY_OFFSET)) for p in pieces]


def _tagged(part: dict, run: Run, operation: str) -> dict:
    return {**part, "change": run.change} if operation == CHANGE else part


def _field_ids(meta, rows: pa.Table) -> list[int]:
    return [meta.field_id(n) for n in rows.column_names]


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
