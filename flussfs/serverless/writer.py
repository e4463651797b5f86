"""The writer Lambda handler: appends (log tables) or upserts (primary-key tables) the JSON
records of an SQS or Kinesis trigger event, exactly once across Lambda's retries of an event.

Each invocation commits its valid records as one batch (format_spec/spec-v1.md, 13.7) whose id
names them, so a redelivery of the same records commits nothing new (a Kinesis event with kept
rejects commits two: the records before its first bad one, then the rest; see `_batches`).
Exactly once holds per delivered event: Kinesis resends a failed batch whole (the module turns bisection off), but SQS
returns failed messages to the queue one by one, and they may come back in other batches, under
other batch ids; a standard queue may also deliver a message twice. For SQS sources, key a
primary-key table on something stable in the message (its id) when a message must never count
twice.

Records that cannot become rows:
- with FLUSSFS_REJECTS_URI set (the terraform module sets it), each is kept whole there, as
  `<source>/<queue or stream name>/[<shard>/]<record id>.json` holding the record as delivered
  and its error, and every other record of the event commits; nothing is retried. This is what a
  Kinesis source needs: its retries stop at a bad record, so one poison record would otherwise
  hold up its shard and, once the retries run out, send the records after it to the on-failure
  destination, which keeps only their sequence numbers;
- without it, they are reported in `batchItemFailures` (the event source mapping must enable
  ReportBatchItemFailures). SQS: every bad message is reported and the rest commit (SQS retries
  just the bad ones, then moves them to the queue's dead-letter queue). Kinesis: the records
  before the first bad one commit and that one is reported, since Kinesis resumes a shard from
  the reported sequence number.

Invariants: nothing of a record that fails is committed; a record's rows commit together with
the whole batch or not at all; a rejected record is kept before the batch commits, so every
record ends up committed, kept or reported; the handler raises (and Lambda retries the whole
event) only when the table or the rejects cannot be written, never for one bad record.
"""
from __future__ import annotations

import json
import logging
import os

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from flussfs import runs
from flussfs.batches import commit_once
from flussfs.errors import FlussError, InvalidInputError
from flussfs.storage import open_store

from . import events
from .config import storage_options, table_from_env

log = logging.getLogger("flussfs.serverless")


def handler(event, context=None) -> dict:
    """Lambda entry point (`flussfs.serverless.writer.handler`)."""
    table = table_from_env()
    delivery = events.parse(event)
    good, bad = _check(table, delivery.records)
    rejects_uri = os.environ.get("FLUSSFS_REJECTS_URI")
    rejected, failed = (_reject(rejects_uri, delivery, bad), []) if rejects_uri else ({}, bad)
    if delivery.source == "kinesis" and failed:
        first_bad = delivery.records.index(failed[0])
        good, failed = delivery.records[:first_bad], [failed[0]]
    results = [commit_once(table, delivery.batch_id(b), _runs(table, _rows(b)))
               for b in _batches(delivery, good, bool(rejected)) if b]
    summary = {"table": table.uri, "source": delivery.source, "records": len(delivery.records),
               "committed_records": len(good), "rows": sum(len(r.rows) for r in good),
               "duplicate": bool(results) and all(r.duplicate for r in results),
               "end_offsets": {str(b): o for b, o in _end_offsets(results).items()},
               "failed": [{"id": r.id, "error": r.error} for r in failed],
               "rejected": [{"id": r.id, "error": r.error, "object": rejected[r.id]} for r in bad
                            if r.id in rejected]}
    print(json.dumps(summary))
    return {"batchItemFailures": [{"itemIdentifier": r.id} for r in failed]}


def _batches(delivery: events.Delivery, good: list, kept_rejects: bool) -> list[list]:
    """The batches `good` commits as, each named by its records. With rejects kept, a Kinesis
    event commits the records before its first bad one as a batch of their own: the batch a
    handler without rejects commits from that event. So switching FLUSSFS_REJECTS_URI on or off
    between attempts of one event commits no record twice (an SQS event's batch is its good
    records either way)."""
    if not (kept_rejects and delivery.source == "kinesis"):
        return [good]
    first_bad = next(i for i, r in enumerate(delivery.records) if r.error is not None)
    return [good[:first_bad], good[first_bad:]]


def _end_offsets(results: list) -> dict:
    out = {}
    for result in results:
        for bucket, offset in result.end_offsets.items():
            out[bucket] = max(offset, out.get(bucket, offset))
    return out


def _rows(records: list) -> list:
    return [row for r in records for row in r.rows]


def _reject(uri: str, delivery: events.Delivery, records: list) -> dict:
    """Keep each of `records` (whole, as delivered, with its error) as one JSON object under
    `uri`; {record id: object URL}. Put-if-absent under a name fixed by the record, so a retried
    delivery finds its rejects already kept."""
    store = open_store(uri, storage_options())
    source = delivery.arn.rsplit(":", 1)[-1].rsplit("/", 1)[-1]  # the queue's or stream's name
    out = {}
    for r in records:
        key = "/".join(p for p in (delivery.source, source, delivery.shard, f"{r.id}.json") if p)
        doc = {"source": delivery.source, "arn": delivery.arn, "shard": delivery.shard or None,
               "id": r.id, "error": r.error, ("data" if delivery.source == "kinesis" else "body"): r.raw}
        store.put_if_absent(key, json.dumps(doc).encode())  # EXISTS: kept by an earlier attempt
        out[r.id] = f"{uri.rstrip('/')}/{key}"
    return out


def _runs(table, rows: list) -> list:
    """The checked runs of `rows`, in order. Consecutive rows with the same keys form one run:
    on a primary-key table a row that omits a column is a partial update of the other columns,
    which a table of the union of every row's keys would turn into an explicit null."""
    out, start = [], 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end].keys() != rows[start].keys():
            data = rows_table(table.schema, rows[start:end])
            out += (runs.upsert_runs(table.metadata, data, table.name) if table.primary_key
                    else [runs.append_run(table.metadata, data, table.name)])
            start = end
    return out


def _check(table, records: list) -> tuple[list, list]:
    """(records whose rows the table accepts, records that fail with their error set). The
    whole set is checked at once; one record at a time only when that fails."""
    candidates = [r for r in records if r.error is None]
    if candidates and _error(table, _rows(candidates)) is None:
        return candidates, [r for r in records if r.error is not None]
    for r in candidates:
        r.error = _error(table, r.rows)
        if r.error is not None:
            r.error = f"record {r.id}: {r.error}"
    return [r for r in records if r.error is None], [r for r in records if r.error is not None]


def _error(table, rows: list) -> str | None:
    try:
        _runs(table, rows)
    except FlussError as e:
        return str(e)
    return None


def rows_table(schema: pa.Schema, rows: list) -> pa.Table:
    """JSON objects as an Arrow table: known columns take the table's types (timestamps and
    dates also from ISO-8601 strings); unknown keys are kept so the table rejects them by name."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {}
    for name in names:
        values = [r.get(name) for r in rows]
        index = schema.get_field_index(name)
        columns[name] = (_typed(values, schema.field(index), name) if index >= 0
                         else pa.array(values))
    return pa.table(columns)


def _typed(values: list, field: pa.Field, name: str) -> pa.Array:
    try:
        return pa.array(values, field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            return _temporal(values, field.type, name)
        raise InvalidInputError(f"column {name!r}: values do not fit {field.type}: {e}") from None


def _temporal(values: list, type_: pa.DataType, name: str) -> pa.Array:
    """Timestamps or dates given as ISO-8601 strings, numbers (the type's unit) or both mixed."""
    strings = [v if isinstance(v, str) else None for v in values]
    others = [None if isinstance(v, str) else v for v in values]
    try:
        parsed = pa.array(strings, pa.string()).cast(type_)
        given = pa.array(others, type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as e:
        raise InvalidInputError(f"column {name!r}: values are neither ISO-8601 strings nor "
                                f"numbers of {type_}: {e}") from None
    return pa.compute.coalesce(parsed, given)
