"""The writer Lambda handler: appends (log tables) or upserts (primary-key tables) the JSON
records of an SQS or Kinesis trigger event, exactly once across Lambda's retries of an event.

Each invocation commits its valid records as one batch (format_spec/spec-v1.md, 13.7) whose id
names them, so a redelivery commits nothing new. Records that cannot become rows are reported in
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

from flussfs import runs
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
    rows = rows_table(table.schema, [row for r in records for row in r.rows])
    write = table.upsert if table.primary_key else table.append
    return write(rows, batch_id=delivery.batch_id(records))


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
        data = rows_table(table.schema, rows)
        if table.primary_key:
            runs.upsert_runs(table.metadata, data, table.name)
        else:
            runs.append_run(table.metadata, data, table.name)
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
        parsed = _from_strings(values, field.type)
        if parsed is not None:
            return parsed
        raise InvalidInputError(f"column {name!r}: values do not fit {field.type}: {e}") from None


def _from_strings(values: list, type_: pa.DataType) -> pa.Array | None:
    """ISO-8601 strings as timestamps or dates; None if the values are not all such strings."""
    if not (pa.types.is_timestamp(type_) or pa.types.is_date(type_)):
        return None
    if not all(v is None or isinstance(v, str) for v in values):
        return None
    try:
        return pa.array(values, pa.string()).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
