"""The writer and reader Lambda handlers, fed real-shaped SQS and Kinesis trigger events against
local directories and moto's S3 server: records land exactly once when an event is delivered
again, bad records are reported by id and never committed."""
import base64
import json

import pyarrow as pa
import pytest

import flussfs
from aws_events import STREAM_ARN, kinesis_event, sqs_event
from flussfs.serverless import reader, writer
from flussfs.storage import open_store
from helpers import ids_of

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("user", pa.string()),
                    pa.field("amount", pa.float64()), pa.field("at", pa.timestamp("us", "UTC"))])


@pytest.fixture
def env(table_uri, monkeypatch):
    """(uri, options) with the handler's environment pointing at that table."""
    uri, options = table_uri
    monkeypatch.setenv("FLUSSFS_TABLE", uri)
    if options:
        monkeypatch.setenv("FLUSSFS_STORAGE_OPTIONS", json.dumps(options))
    else:
        monkeypatch.delenv("FLUSSFS_STORAGE_OPTIONS", raising=False)
    monkeypatch.delenv("FLUSSFS_REJECTS_URI", raising=False)
    return uri, options


def order(i):
    return {"id": i, "user": f"u{i % 4}", "amount": i * 1.5, "at": f"2026-11-24T10:00:{i % 60:02d}Z"}


def test_sqs_event_delivered_twice_lands_once(env, capsys):
    """An SQS batch redelivered (same messages, new order) commits its rows once."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, buckets=2, storage_options=options)
    event = sqs_event([order(i) for i in range(8)])
    assert writer.handler(event) == {"batchItemFailures": []}
    again = {"Records": list(reversed(event["Records"]))}
    assert writer.handler(again) == {"batchItemFailures": []}
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["duplicate"] for s in summaries] == [False, True]
    assert ids_of(t) == list(range(8))
    assert t.scan(filter=pa.compute.field("id") == 3).to_arrow().column("at")[0].as_py().second == 3


def test_kinesis_event_delivered_twice_lands_once(env):
    """A Kinesis batch retried by Lambda commits its rows once; the next batch of the shard lands."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    first = kinesis_event([order(i) for i in range(5)])
    for _ in range(2):
        assert writer.handler(first) == {"batchItemFailures": []}
    writer.handler(kinesis_event([order(i) for i in range(5, 9)], first_seq=10**55))
    assert ids_of(t) == list(range(9))


def test_records_holding_arrays_of_rows(env):
    """A message whose body is a JSON array contributes each object as a row."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    writer.handler(sqs_event([[order(1), order(2)], order(3)]))
    assert ids_of(t) == [1, 2, 3]


def test_bad_sqs_messages_are_reported_and_the_rest_commit(env, capsys):
    """Poison SQS messages (not JSON, unknown column, null key) are reported by message id; the
    others commit once, also when the event comes again."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    bodies = [order(1), "not json", {"id": 2, "colour": "red"}, {"id": None}, order(3)]
    ids = ["m1", "m2", "m3", "m4", "m5"]
    event = sqs_event(bodies, ids=ids)
    for _ in range(2):
        assert writer.handler(event) == {"batchItemFailures": [{"itemIdentifier": i}
                                                               for i in ("m2", "m3", "m4")]}
    failed = json.loads(capsys.readouterr().out.splitlines()[0])["failed"]
    assert "not JSON" in failed[0]["error"] and "colour" in failed[1]["error"]
    assert "id" in failed[2]["error"]
    assert ids_of(t) == [1, 3]


def test_bad_kinesis_record_stops_the_shard_there(env):
    """A bad Kinesis record: the records before it commit, it is reported, and the retry from
    it (the same bad record first) commits nothing more."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    payloads = [order(1), order(2), b"\xff not utf-8", order(4)]
    event = kinesis_event(payloads, first_seq=100)
    assert writer.handler(event) == {"batchItemFailures": [{"itemIdentifier": "102"}]}
    retry = kinesis_event(payloads[2:], first_seq=102)
    assert writer.handler(retry) == {"batchItemFailures": [{"itemIdentifier": "102"}]}
    assert ids_of(t) == [1, 2]


def kept_rejects(uri, options) -> dict:
    """{object key: parsed JSON} of every reject kept under `uri`."""
    store = open_store(uri, options)
    return {info.key: json.loads(store.get(info.key)) for info in store.list("")}


def test_bad_kinesis_records_are_kept_and_the_rest_commit(env, monkeypatch, capsys):
    """With FLUSSFS_REJECTS_URI, bad Kinesis records are kept whole with their errors, every
    other record commits, nothing is reported for retry; the event again changes nothing."""
    uri, options = env
    monkeypatch.setenv("FLUSSFS_REJECTS_URI", uri + "_rejects")
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    payloads = [order(1), b"\xff not utf-8", order(3), {"id": 4, "colour": "red"}, order(5)]
    event = kinesis_event(payloads, first_seq=100)
    for _ in range(2):
        assert writer.handler(event) == {"batchItemFailures": []}
    assert ids_of(t) == [1, 3, 5]
    first, again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (first["duplicate"], again["duplicate"], first["committed_records"]) == (False, True, 3)
    kept = kept_rejects(uri + "_rejects", options)
    prefix = "kinesis/flussfs-events/shardId-000000000006/"
    assert sorted(kept) == [prefix + "101.json", prefix + "103.json"]
    assert [r["object"] for r in first["rejected"]] == [f"{uri}_rejects/{k}" for k in sorted(kept)]
    bad_utf8, bad_column = kept[prefix + "101.json"], kept[prefix + "103.json"]
    assert base64.b64decode(bad_utf8["data"]) == payloads[1] and "not base64 UTF-8" in bad_utf8["error"]
    assert json.loads(base64.b64decode(bad_column["data"])) == payloads[3]
    assert "colour" in bad_column["error"] and bad_column["arn"] == STREAM_ARN


def test_bad_sqs_messages_are_kept_when_rejects_are_configured(env, monkeypatch):
    """SQS with FLUSSFS_REJECTS_URI: bad messages are kept, not returned to the queue, and a
    redelivery of the whole event commits nothing new."""
    uri, options = env
    monkeypatch.setenv("FLUSSFS_REJECTS_URI", uri + "_rejects/")
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    event = sqs_event([order(1), "not json", order(3)], ids=["m1", "m2", "m3"])
    for _ in range(2):
        assert writer.handler(event) == {"batchItemFailures": []}
    assert ids_of(t) == [1, 3]
    kept = kept_rejects(uri + "_rejects", options)
    assert list(kept) == ["sqs/flussfs-events/m2.json"]
    assert kept["sqs/flussfs-events/m2.json"]["body"] == "not json"


@pytest.mark.parametrize("source", ["kinesis", "sqs"])
@pytest.mark.parametrize("first", ["without", "with"])
def test_switching_rejects_between_attempts_of_an_event_commits_nothing_twice(env, monkeypatch,
                                                                              source, first):
    """An attempt that committed but never answered (a timeout), then the same event again after
    FLUSSFS_REJECTS_URI was switched on or off (a deploy in between): no record lands twice."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    payloads = [order(1), order(2), "not json" if source == "sqs" else b"\xff", order(4)]
    event = (sqs_event(payloads) if source == "sqs" else kinesis_event(payloads, first_seq=100))
    for mode in ([first, "with" if first == "without" else "without"]):
        if mode == "with":
            monkeypatch.setenv("FLUSSFS_REJECTS_URI", uri + "_rejects")
        else:
            monkeypatch.delenv("FLUSSFS_REJECTS_URI", raising=False)
        writer.handler(event)
    assert ids_of(t) == [1, 2, 4]


def test_nothing_commits_when_rejects_cannot_be_kept(env, monkeypatch, tmp_path):
    """Rejects are kept before the batch commits: when they cannot be, the handler raises (Lambda
    retries the event) and no record of it is committed."""
    uri, options = env
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    unwritable = "s3://flussfs-no-such-bucket/rejects" if uri.startswith("s3://") else str(blocker / "rejects")
    monkeypatch.setenv("FLUSSFS_REJECTS_URI", unwritable)
    t = flussfs.create_table(uri, SCHEMA, storage_options=options)
    with pytest.raises(flussfs.FlussError, match="flussfs-events/shardId-000000000006/") as info:
        writer.handler(kinesis_event([order(1), b"\xff", order(3)]))
    assert unwritable in str(info.value)
    assert ids_of(t) == []


def test_primary_key_table_is_upserted(env):
    """On a primary-key table the records are upserts: later records of a key win."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, primary_key=["id"], storage_options=options)
    writer.handler(sqs_event([order(1), {**order(1), "amount": 99.0}, order(2)]))
    writer.handler(sqs_event([{**order(2), "user": "zed"}]))
    rows = {r["id"]: r for r in t.scan().to_arrow().to_pylist()}
    assert rows[1]["amount"] == 99.0 and rows[2]["user"] == "zed" and len(rows) == 2


def test_wrong_events_are_rejected(env):
    """An event that is neither SQS nor Kinesis is rejected by name."""
    uri, options = env
    flussfs.create_table(uri, SCHEMA, storage_options=options)
    with pytest.raises(flussfs.FlussError, match="aws:sqs or aws:kinesis"):
        writer.handler({"Records": [{"eventSource": "aws:s3"}]})
    with pytest.raises(flussfs.FlussError, match="no Records"):
        writer.handler({"detail-type": "Scheduled Event"})


def test_reader_lookup_scan_and_poll(env):
    """The reader example answers lookups, scans and polls of changes in JSON."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, primary_key=["id"], buckets=2, storage_options=options)
    writer.handler(sqs_event([order(i) for i in range(6)]))
    found = reader.handler({"lookup": {"id": [2, 4, 99]}})["rows"]
    assert sorted(r["id"] for r in found) == [2, 4] and isinstance(found[0]["at"], str)
    assert len(reader.handler({"scan": {"columns": ["id"], "limit": 4}})["rows"]) == 4
    first = reader.handler({"poll": {"offsets": "earliest", "max_rows": 100}})
    assert sorted(r["id"] for r in first["rows"]) == list(range(6))
    t.upsert(pa.table({"id": [7], "user": ["new"]}))
    second = reader.handler({"poll": {"offsets": first["next_offsets"]}})
    assert [(r["id"], r["_change_type"]) for r in second["rows"]] == [(7, "+I")]
    assert reader.handler({"poll": {"offsets": second["next_offsets"]}})["rows"] == []
    with pytest.raises(flussfs.FlussError, match="limit"):
        reader.handler({"scan": {"limit": -1}})


def test_partial_updates_and_mixed_timestamps_from_one_event(env):
    """Messages that omit columns are partial updates on a primary-key table (not nulls), and
    timestamps given as ISO strings in one message and epoch microseconds in another commit."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, primary_key=["id"], storage_options=options)
    writer.handler(sqs_event([order(1)]))
    event = sqs_event([{"id": 1, "amount": 7.0}, {"id": 2, "user": "x", "at": 1795000000000000},
                       {"id": 3, "at": "2026-11-24T10:00:00Z"}])
    assert writer.handler(event) == {"batchItemFailures": []}
    rows = {r["id"]: r for r in t.scan().to_arrow().to_pylist()}
    assert rows[1]["user"] == "u1" and rows[1]["amount"] == 7.0
    assert rows[2]["at"].year == 2026 and rows[3]["at"].hour == 10


def test_poll_follows_every_bucket(env):
    """Polling from the offsets a poll returned sees rows of buckets that had none before."""
    uri, options = env
    t = flussfs.create_table(uri, SCHEMA, buckets=4, storage_options=options)
    t.append(writer.rows_table(SCHEMA, [order(0)]))
    first = reader.handler({"poll": {"offsets": "earliest"}})
    assert len(first["next_offsets"]) == 4 and len(first["rows"]) == 1
    for i in range(1, 9):
        t.append(writer.rows_table(SCHEMA, [order(i)]))  # round robin: every bucket gets rows
    second = reader.handler({"poll": {"offsets": first["next_offsets"]}})
    assert sorted(r["id"] for r in second["rows"]) == list(range(1, 9))


def test_malformed_records_are_named(env):
    """A record missing a field the source always sends is reported, not a raw KeyError."""
    uri, options = env
    flussfs.create_table(uri, SCHEMA, storage_options=options)
    with pytest.raises(flussfs.FlussError, match="messageId"):
        writer.handler({"Records": [{"eventSource": "aws:sqs", "eventSourceARN": "arn"}]})
