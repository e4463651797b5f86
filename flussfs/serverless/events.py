"""Lambda trigger events as batches of rows: SQS and Kinesis records carrying JSON objects.

A delivery's batch id (format_spec/spec-v1.md, 13.7) names exactly the records it carries, so a
retried delivery of the same records commits nothing new:
- SQS: the queue ARN and a SHA-256 of the sorted message ids (order-free: a redelivery of the
  same messages in another order is the same batch);
- Kinesis: the stream ARN, the shard and the first and last sequence numbers (a shard's records
  are delivered in order, and a retry resends the same range).

Invariants: every record yields at least one row or an error naming the record; rows keep the
event's record order.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field

from flussfs.errors import InvalidInputError


@dataclass
class Record:
    id: str                    # SQS messageId or Kinesis sequence number
    rows: list                 # the JSON objects it carries
    error: str | None = None   # why it carries none
    raw: str = ""              # the record as delivered: the SQS body, the Kinesis data (base64)


@dataclass
class Delivery:
    source: str                # "sqs" or "kinesis"
    arn: str
    records: list = field(default_factory=list)
    shard: str = ""

    def batch_id(self, records: list) -> str:
        """The batch id of `records` (a subset of this delivery's, in order)."""
        if self.source == "sqs":
            digest = hashlib.sha256("\n".join(sorted(r.id for r in records)).encode()).hexdigest()
            return f"sqs:{self.arn}:{digest}"
        return f"kinesis:{self.arn}:{self.shard}:{records[0].id}-{records[-1].id}"


def parse(event: dict) -> Delivery:
    """The delivery an SQS or Kinesis trigger event carries."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not records:
        raise InvalidInputError("the event has no Records: expected an SQS or Kinesis trigger event")
    sources = {r.get("eventSource") if isinstance(r, dict) else None for r in records}
    try:
        if sources == {"aws:sqs"}:
            return _sqs(records)
        if sources == {"aws:kinesis"}:
            return _kinesis(records)
    except (KeyError, TypeError, AttributeError) as e:
        raise InvalidInputError(f"malformed {sources.pop()} event: a record lacks {e}") from None
    raise InvalidInputError(f"unsupported event source(s) {sorted(map(str, sources))}: "
                            f"expected aws:sqs or aws:kinesis")


def _sqs(records: list) -> Delivery:
    delivery = Delivery("sqs", _one({r.get("eventSourceARN") for r in records}, "eventSourceARN"))
    for r in records:
        delivery.records.append(_decode(r["messageId"], r.get("body")))
    return delivery


def _kinesis(records: list) -> Delivery:
    arn = _one({r.get("eventSourceARN") for r in records}, "eventSourceARN")
    shard = _one({r["eventID"].split(":", 1)[0] for r in records}, "shard")
    delivery = Delivery("kinesis", arn, shard=shard)
    for r in records:
        seq, data = r["kinesis"]["sequenceNumber"], r["kinesis"]["data"]
        try:
            text = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            delivery.records.append(Record(seq, [], f"record {seq}: data is not base64 UTF-8: {e}", data))
            continue
        delivery.records.append(_decode(seq, text, data))
    return delivery


def _decode(record_id: str, text, raw=None) -> Record:
    """A record's rows: a JSON object, or a JSON array of objects. `raw` is the record as
    delivered, when that is not `text` itself (Kinesis data is base64)."""
    raw = text if raw is None else raw
    raw = raw if isinstance(raw, str) else ""
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        return Record(record_id, [], f"record {record_id}: body is not JSON: {e}", raw)
    rows = value if isinstance(value, list) else [value]
    if not rows or not all(isinstance(v, dict) for v in rows):
        return Record(record_id, [], f"record {record_id}: expected a JSON object or a "
                                     f"non-empty array of objects", raw)
    return Record(record_id, rows, raw=raw)


def _one(values: set, what: str) -> str:
    if len(values) != 1 or None in values:
        raise InvalidInputError(f"the event's records do not share one {what}: {sorted(map(str, values))}")
    return values.pop()
