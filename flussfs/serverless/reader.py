"""A reader Lambda handler (an example to adapt): point lookups, small scans and polling a
table's changes, answering in JSON, e.g. behind a function URL or API Gateway.

Requests (the event):
- `{"lookup": {"<key column>": [values...], ...}}`: the current rows of those keys
  (primary-key tables); one GET-heavy round trip, no compactor needed;
- `{"scan": {"columns": [...], "limit": n}}`: the first `limit` rows of the latest state;
- `{"poll": {"offsets": {"<bucket>": offset, ...} | "earliest" | "latest", "max_rows": n}}`:
  the changes after the given offsets and the offsets to poll from next, so a client (or a
  scheduled function) tails the table with no server between it and the bucket.

Invariants: answers are JSON-serialisable (timestamps as ISO-8601 strings); `limit` and
`max_rows` are capped at ROWS_MAX so an answer stays within Lambda's 6 MB response limit.
"""
from __future__ import annotations

import json

import pyarrow as pa

from flussfs.errors import InvalidInputError

from .config import table_from_env

ROWS_MAX = 10_000


def handler(event, context=None) -> dict:
    """Lambda entry point (`flussfs.serverless.reader.handler`)."""
    table = table_from_env()   # never a URI from the event: callers reach only this table
    if not isinstance(event, dict) or len(set(event) & {"lookup", "scan", "poll"}) != 1:
        raise InvalidInputError("the event must hold exactly one of 'lookup', 'scan' or 'poll'")
    if "lookup" in event:
        return {"rows": _rows(table.lookup(pa.table(event["lookup"])))}
    if "scan" in event:
        request = event["scan"] or {}
        return {"rows": _rows(_head(table.scan(columns=request.get("columns")),
                                    _capped(request.get("limit", 100), "limit")))}
    return _poll(table, event["poll"] or {})


def _poll(table, request: dict) -> dict:
    offsets = _start_offsets(table, request.get("offsets", "earliest"))
    limit = _capped(request.get("max_rows", 1000), "max_rows")
    batches, count = [], 0
    for batch in table.subscribe(start=dict(offsets), idle_timeout=0):
        batches.append(batch.slice(0, limit - count))
        count += min(batch.num_rows, limit - count)
        if count >= limit:
            break
    rows = pa.Table.from_batches(batches) if batches else None
    if rows is not None:
        for b, o in zip(rows.column("_bucket").to_pylist(), rows.column("_offset").to_pylist()):
            offsets[b] = max(offsets.get(b, 0), o + 1)
    return {"rows": _rows(rows) if rows is not None else [],
            "next_offsets": {str(b): o for b, o in sorted(offsets.items())}}


def _start_offsets(table, start) -> dict:
    """bucket -> offset for every bucket of the table (a subscription started from a dict reads
    only the buckets it names, so a bucket left out would never be polled again)."""
    if start == "latest":
        return table.end_offsets()
    if start == "earliest":
        return {b: 0 for b in range(table.buckets)}
    if not isinstance(start, dict):
        raise InvalidInputError(f"offsets must be 'earliest', 'latest' or a bucket -> offset "
                                f"object, got {start!r:.80}")
    given = {int(b): int(o) for b, o in start.items()}
    return {b: given.get(b, 0) for b in range(table.buckets)}


def _head(scan, limit: int) -> pa.Table:
    """The first `limit` rows of a scan, reading no further batches than it needs."""
    batches, count = [], 0
    for batch in scan.to_batches():
        if count >= limit:
            break
        batches.append(batch.slice(0, limit - count))
        count += batches[-1].num_rows
    return pa.Table.from_batches(batches) if batches else pa.table({})


def _capped(value, name: str) -> int:
    if not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")
    return min(value, ROWS_MAX)


def _rows(table: pa.Table) -> list:
    return json.loads(json.dumps(table.to_pylist(), default=str))
