"""Recovery paths found in review: retried drafts past the deadline, writer failures while
preparing, expired drafts in the batching writer, read-only readers, long runs of missing
checkpoints, and create-time checks of types and bucket keys."""
import pyarrow as pa
import pytest

import flussfs
from flussfs import drafts, paths
from flussfs.log import COMMIT_DEADLINE_S, BucketLog
from flussfs.storage.wrappers import Fault, FaultStore, MeteredStore
from helpers import EVENTS, commit_count, create, events, ids_of, over, wide, wide_schema

ROWS = 40_000  # enough for a referenced segment


def test_retried_draft_past_its_deadline_is_found_committed(tmp_path):
    """A draft whose lost put landed is reported committed on retry, even past the deadline."""
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    faulty = FaultStore(t.store, [Fault("lost", key_contains="/commits/"),
                                  Fault("error", ops=("get",), key_contains="/commits/", times=100)])
    handle = over(t, faulty)
    drafts = handle.prepare(wide(ROWS))
    with pytest.raises(flussfs.CommitOutcomeUnknownError) as err:
        handle.commit_drafts(drafts)
    assert err.value.drafts is drafts
    faulty.faults.clear()
    drafts[0].prepared_at -= COMMIT_DEADLINE_S + 1
    result = t.commit_drafts(err.value.drafts)
    assert result.end_offsets == {0: ROWS} and commit_count(t) == 1


def test_writer_keeps_rows_when_preparing_them_fails(tmp_path):
    """A segment upload that fails inside the writer loses no rows: the next flush commits them."""
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    faulty = FaultStore(t.store, [Fault("error", key_contains="/segments/", times=4)])
    w = over(t, faulty).writer(linger_s=3600)
    w.append(wide(ROWS))
    with pytest.raises(flussfs.CommitOutcomeUnknownError):
        w.flush()
    w.flush()
    w.close()
    assert t.scan(columns=["c00"]).to_arrow().column("c00").to_pylist() == list(range(ROWS))


def test_writer_renews_an_expired_draft(tmp_path):
    """A kept draft that passed the commit deadline is encoded again and committed once."""
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    faulty = FaultStore(t.store, [Fault("error", key_contains="/commits/", times=100)])
    w = over(t, faulty).writer(linger_s=3600)
    w.append(wide(ROWS))
    with pytest.raises(flussfs.CommitOutcomeUnknownError):
        w.flush()
    faulty.faults.clear()
    for d in w._unfinished[0].values():
        d.prepared_at -= COMMIT_DEADLINE_S + 1
    w.close()
    assert t.scan(columns=["c00"]).to_arrow().column("c00").to_pylist() == list(range(ROWS))
    assert commit_count(t) == 1


def test_reader_without_write_access_locates_offsets(tmp_path):
    """A reader that cannot write rebuilds missing checkpoints in memory and still answers."""
    t = create(str(tmp_path / "t"), buckets=1, checkpoint_interval=2)
    for i in range(30):
        t.append(events([i]))
    t.close()
    for info in list(t.store.list(paths.checkpoints_dir(0))):
        t.store.delete(info.key)
    read_only = FaultStore(t.store, [Fault("error", ops=("put_if_absent", "put"), times=10**6)])
    log = BucketLog(read_only, 0, 2)
    assert [log.locate(o) for o in (0, 7, 29)] == [0, 7, 29]
    assert list(t.store.list(paths.checkpoints_dir(0))) == []


def test_a_long_run_of_missing_checkpoints_is_rebuilt(tmp_path):
    """Hundreds of missing checkpoints are rebuilt in one pass, and later ones chain on them."""
    t = create(str(tmp_path / "t"), buckets=1, checkpoint_interval=2)
    for i in range(300):
        t.append(events([i]))
    t.close()
    for info in list(t.store.list(paths.checkpoints_dir(0))):
        t.store.delete(info.key)
    t.store.delete(paths.checkpoint_hint(0))
    metered = MeteredStore(t.store)
    log = BucketLog(metered, 0, 2)
    assert log.locate(3) == 3
    assert len(list(t.store.list(paths.checkpoints_dir(0)))) == 149
    metered.reset()
    assert BucketLog(metered, 0, 2).locate(5) == 5
    assert sum(metered.requests.values()) <= 5


def test_idle_subscriber_costs_one_get_per_bucket_per_poll(tmp_path):
    """An idle subscriber probes each bucket with one GET per poll (404s are requests too)."""
    t = create(str(tmp_path / "t"), buckets=2)
    t.append(events(range(4)))
    metered = MeteredStore(t.store)
    sub = over(t, metered).subscribe("latest", idle_timeout=1.0, poll_interval_s_min=0.25,
                                     poll_interval_s_max=0.25)
    metered.reset()
    assert list(sub) == []
    polls = metered.requests["get"] / 2
    assert 2 <= polls <= 6 and metered.requests["list"] == 0


@pytest.mark.parametrize("schema, column", [
    (pa.schema([pa.field("h", pa.float16())]), "h"),
    (pa.schema([pa.field("id", pa.int64())]), "_x"),
])
def test_create_rejects_unsupported_types_and_names(tmp_path, schema, column):
    """create_table rejects float16 and reserved '_' names, naming the column."""
    if column == "_x":
        schema = pa.schema([pa.field("_x", pa.int64())])
    with pytest.raises(flussfs.InvalidInputError, match=repr(column)):
        flussfs.create_table(str(tmp_path / "t"), schema)


def test_create_rejects_a_bucket_key_without_a_hash(tmp_path):
    """A float bucket key cannot be hashed like Iceberg does: rejected at create, not at append."""
    with pytest.raises(flussfs.InvalidInputError, match="'score'"):
        flussfs.create_table(str(tmp_path / "t"), EVENTS, bucket_key=["score"])
    assert not (tmp_path / "t").exists() or not list((tmp_path / "t").rglob("*.meta"))


def test_segment_key_outside_its_bucket_is_refused(tmp_path):
    """A commit whose segment key points outside its bucket's segments/ is reported corrupt."""
    from flussfs.format.commit import Commit
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    t.append(wide(ROWS))
    c = t.logs[0].read_commit(0)
    parts = ({**c.parts[0], "key": "_flussfs/table/00000000000000000000.meta"},)
    forged = Commit(0, 0, 0, c.record_count, c.timestamp_ms, "w", 0, parts, c.index)
    t.store.delete(paths.commit(0, 0))
    t.store.put_if_absent(paths.commit(0, 0), forged.to_bytes())
    with pytest.raises(flussfs.CorruptObjectError, match="outside"):
        flussfs.open_table(t.uri).scan().to_arrow()  # a fresh handle: `t` caches checked commits


def test_an_expired_retry_never_recommits_a_bucket_that_landed(monkeypatch):
    """A flush whose bucket 0 committed and bucket 1 did not (unknown outcome), retried after
    the commit deadline, renews only bucket 1's draft: bucket 0 is not committed twice (an
    Aggregate sum would double). Found by review."""
    from flussfs import log as flog
    monkeypatch.setattr(drafts, "INLINE_BYTES_MAX", 0)  # referenced segments, which can expire
    monkeypatch.setattr(flog, "BACKOFF_S_MAX", 0.001)
    schema = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("n", pa.int64())])
    base = flussfs.create_table("memory://expired-retry", schema, primary_key=["k"], buckets=2,
                                merge_engine=flussfs.Aggregate({"n": "sum"}))
    faults = FaultStore(base.store)
    faults.add(Fault("error", ("put_if_absent",), "log/00001/commits/", times=8))
    w = over(base, faults).writer(linger_s=1000)
    w.upsert(pa.table({"k": pa.array(range(8), pa.int64()), "n": [1] * 8}))
    with pytest.raises(flussfs.CommitOutcomeUnknownError):
        w.flush()
    for d in w._unfinished[0].values():
        d.prepared_at -= flog.COMMIT_DEADLINE_S + 1
    w.close()
    assert base.scan().to_arrow().column("n").to_pylist() == [1] * 8
    assert sorted(base.end_offsets().values()) != [0, 0] and sum(base.end_offsets().values()) == 8
