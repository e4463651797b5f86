"""The writer Lambda handler: appends (log tables) or upserts (primary-key tables) the JSON
records of an SQS or Kinesis trigger event, exactly once across Lambda's retries of an event.

Each invocation commits its valid records as one batch (format_spec/spec-v1.md, 13.7) whose id
names them, so a redelivery of the same records commits nothing new. Exactly once holds per
delivered event: Kinesis resends a failed batch whole (the module turns bisection off), but SQS
returns failed messages to the queue one by one, and they may come back in other batches, under
other batch ids; a standard queue may also deliver a message twice. For SQS sources, key a
primary-key table on something stable in the message (its id) when a message must never count
twice. Records that cannot become rows are reported in
`batchItemFailures` (the event source mapping must enable ReportBatchItemFailures):
- SQS: every bad message is reported; the rest are committed (SQS retries just the bad ones,
  then moves them to the queue's dead-letter queue);
- Kinesis: the records before the first bad one are committed and that one is reported, since
  Kinesis resumes a shard from the reported sequence number.

Invariants: nothing of a record that fails is committed; a record's rows commit together with
the whole batch or not at all; the handler raises (and Lambda retries the whole event) only
when the table cannot be written, never for one bad record.
"""
from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from flussfs import runs
from flussfs.batches import commit_once
from flussfs.errors import FlussError, InvalidInputError

from . import events
from .config import table_from_env

log = logging.getLogger("flussfs.serverless")


def handler(event, context=None) -> dict:
    """Lambda entry point (`flussfs.serverless.writer.handler`)."""
    table = table_from_env()
    delivery = events.parse(event)
    good, bad = _check(table, delivery.records)
    if delivery.source == "kinesis" and bad:
        first_bad = delivery.records.index(bad[0])
        good, bad = delivery.records[:first_bad], [bad[0]]
    result = _write(table, delivery, good) if good else None
    summary = {"table": table.uri, "source": delivery.source, "records": len(delivery.records),
               "committed_records": len(good), "rows": sum(len(r.rows) for r in good),
               "duplicate": bool(result and result.duplicate),
               "end_offsets": {str(b): o for b, o in (result.end_offsets if result else {}).items()},
               "failed": [{"id": r.id, "error": r.error} for r in bad]}
    print(json.dumps(summary))
    return {"batchItemFailures": [{"itemIdentifier": r.id} for r in bad]}


def _write(table, delivery: events.Delivery, records: list):
    return commit_once(table, delivery.batch_id(records),
                       _runs(table, [row for r in records for row in r.rows]))


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
    if candidates and _error(table, [row for r in candidates for row in r.rows]) is None:
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
