"""Exactly-once batches (format_spec/spec-v1.md, 13.7): a batch written again by a fresh process,
after any crash point, lands once; and never at the cost of another writer's rows."""
import threading

import pyarrow as pa
import pytest

import flussfs
from flussfs import drafts, paths
from flussfs.batches import batch_writer_id
from flussfs.errors import CorruptObjectError, InvalidInputError
from flussfs.storage.wrappers import Fault, FaultStore
from helpers import assert_contiguous, create, events, ids_of, over, wide, wide_schema


@pytest.fixture
def table(table_uri):
    uri, options = table_uri
    return create(uri, buckets=3, storage_options=options)


def fresh(table):
    """A new handle, as a new Lambda invocation would open."""
    return flussfs.open_table(table.uri, storage_options=table.storage_options)


def batch_commits(table, batch_id):
    wid = batch_writer_id(batch_id)
    return [(log.bucket, n) for log in table.logs for n in log.numbers_after(None)
            if log.read_commit(n).writer_id == wid]


def test_same_batch_twice_lands_once(table):
    """A redelivered batch commits nothing and reports where the first delivery landed."""
    first = table.append(events(range(10)), batch_id="sqs:q:a")
    again = fresh(table).append(events(range(10)), batch_id="sqs:q:a")
    assert not first.duplicate and again.duplicate
    assert again.end_offsets == first.end_offsets and again.commit_numbers == first.commit_numbers
    assert ids_of(table) == list(range(10))


def test_different_batches_both_land(table):
    """Two batches with equal rows but different ids are two batches."""
    table.append(events([1, 2]), batch_id="b1")
    fresh(table).append(events([1, 2]), batch_id="b2")
    assert ids_of(table) == [1, 1, 2, 2]


def test_crash_after_commit_before_done_marker(table):
    """The first attempt commits but dies before its done marker: the retry finds the commit
    among the ones written since the claim, with other writers' commits in between."""
    dying = over(table, FaultStore(table.store, [Fault("error", key_contains=".done")]))
    dying.append(events(range(5)), batch_id="k:shard-1:100-104")   # the marker put failed quietly
    assert table.store.head(paths.batch_done(batch_writer_id("k:shard-1:100-104"))) is None
    for i in range(4):
        fresh(table).append(events([100 + i]))
    retry = fresh(table).append(events(range(5)), batch_id="k:shard-1:100-104")
    assert retry.duplicate
    assert ids_of(table) == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    assert table.store.head(paths.batch_done(batch_writer_id("k:shard-1:100-104"))) is not None


def test_crash_after_claim_before_commit(table):
    """The first attempt claims, then every commit put fails: the retry commits the rows once."""
    failing = over(table, FaultStore(table.store, [Fault("error", key_contains="/commits/",
                                                         times=10_000)]))
    with pytest.raises(flussfs.FlussError):
        failing.append(events(range(6)), batch_id="b")
    assert table.store.head(paths.batch_claim(batch_writer_id("b"))) is not None
    assert ids_of(table) == []
    result = fresh(table).append(events(range(6)), batch_id="b")
    assert not result.duplicate and ids_of(table) == list(range(6))
    assert len(batch_commits(table, "b")) == 1


def test_earlier_attempts_put_landing_after_the_scan_is_read_as_ours(table):
    """An earlier attempt's commit put still in flight lands at the very number the retry
    builds on: the retry reads it back as the batch's and commits nothing more."""
    batch_id, rows = "late", events(range(4))
    with pytest.raises(flussfs.FlussError):
        over(table, FaultStore(table.store, [Fault("error", key_contains="/commits/", times=10_000)])
             ).append(rows, batch_id=batch_id)
    bucket = next(iter(drafts.route_runs([flussfs.runs.append_run(table.metadata, rows, "t")],
                                         table.metadata, lambda: int(batch_writer_id(batch_id)[:8], 16) % 3)))
    fresh(table).append(events([50]))  # the chain moved on since the claim

    def land_the_earlier_attempt():
        log = table.logs[bucket]
        old = drafts.encode(table.store, table.metadata, bucket,
                            [flussfs.runs.append_run(table.metadata, rows, "t")],
                            batch_writer_id(batch_id), 7)
        head = log.head()
        table.store.put_if_absent(paths.commit(bucket, 0 if head is None else head.number + 1),
                                  old.at(bucket, head, table.metadata.checkpoint_interval).to_bytes())

    retry = over(table, FaultStore(table.store, [Fault("delay", key_contains=f"/{bucket:05d}/commits/",
                                                       on_hit=land_the_earlier_attempt)]))
    result = retry.append(rows, batch_id=batch_id)
    assert retry.store.faults[0].hits == 1
    assert ids_of(table) == [0, 1, 2, 3, 50]
    assert batch_commits(table, batch_id) == [(bucket, result.commit_numbers[bucket])]
    assert_contiguous(table)


def test_partly_committed_batch_commits_only_the_rest(table_uri):
    """A batch over several buckets whose first attempt committed some of them: the retry
    commits only the others."""
    uri, options = table_uri
    t = create(uri, buckets=4, bucket_key=["id"], storage_options=options)
    rows = events(range(40))
    faulty = over(t, FaultStore(t.store, [Fault("error", key_contains="00002/commits/", times=10_000)]))
    with pytest.raises(flussfs.FlussError):
        faulty.append(rows, batch_id="multi")
    landed = ids_of(t)
    assert 0 < len(landed) < 40
    result = fresh(t).append(rows, batch_id="multi")
    assert not result.duplicate and sorted(result.end_offsets) == [0, 1, 2, 3]
    assert ids_of(t) == list(range(40))


def test_concurrent_deliveries_of_one_batch_land_once(table_uri):
    """The same batch written by four handles at once (duplicate deliveries racing the
    original), while plain writers race them on the one bucket, lands once; plain rows too."""
    uri, options = table_uri
    table = create(uri, buckets=1, storage_options=options)
    errors = []

    def deliver():
        try:
            fresh(table).append(events(range(20)), batch_id="race")
        except flussfs.FlussError as e:
            errors.append(e)

    def plain(base):
        handle = fresh(table)
        for i in range(5):
            handle.append(events([1000 + base * 10 + i]))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    threads += [threading.Thread(target=plain, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert ids_of(table) == list(range(20)) + sorted(1000 + k * 10 + i for k in range(4) for i in range(5))
    assert len(batch_commits(table, "race")) == 1
    assert_contiguous(table)


def test_large_batch_with_segments_retried_after_claim(tmp_path):
    """A batch big enough for segments: a failed first attempt's segments are left as orphans
    and the retry's own segments are committed."""
    t = create(str(tmp_path / "w"), schema=wide_schema(), buckets=1)
    data = wide(60_000)
    with pytest.raises(flussfs.FlussError):
        over(t, FaultStore(t.store, [Fault("error", key_contains="/commits/", times=10_000)])
             ).append(data, batch_id="big")
    fresh(t).append(data, batch_id="big")
    fresh(t).append(data, batch_id="big")
    assert t.scan(columns=["c00"]).to_arrow().num_rows == 60_000


def test_upserts_into_an_aggregate_table_are_not_folded_twice(table_uri):
    """Redelivered upserts into a sum table do not double the sums."""
    uri, options = table_uri
    t = flussfs.create_table(uri, pa.schema([pa.field("k", pa.string(), nullable=False),
                                             pa.field("n", pa.int64())]),
                             primary_key=["k"], merge_engine=flussfs.Aggregate({"n": "sum"}),
                             storage_options=options)
    batch = pa.table({"k": ["a", "b", "a"], "n": [1, 2, 3]})
    for _ in range(3):
        fresh(t).upsert(batch, batch_id="agg-1")
    fresh(t).upsert(pa.table({"k": ["a"], "n": [10]}), batch_id="agg-2")
    assert sorted(t.scan().to_arrow().to_pylist(), key=lambda r: r["k"]) == \
        [{"k": "a", "n": 14}, {"k": "b", "n": 2}]


def test_bad_batch_ids_and_corrupt_claims_are_reported(table):
    """An empty batch id is rejected; a corrupt claim is reported by name, never trusted."""
    with pytest.raises(InvalidInputError, match="batch_id"):
        table.append(events([1]), batch_id="")
    key = paths.batch_claim(batch_writer_id("c"))
    table.store.put_if_absent(key, b"not a claim")
    with pytest.raises(CorruptObjectError, match=key):
        fresh(table).append(events([1]), batch_id="c")
    assert ids_of(table) == []


def test_retry_that_jumps_over_an_earlier_attempts_commit_stops_there(tmp_path):
    """A retry that loses three races jumps to the head; an earlier attempt's commit landed
    among the numbers it jumped over, and the retry finds it there instead of committing again."""
    t = create(str(tmp_path / "j"), buckets=1)
    rows, batch_id = events(range(3)), "jumpy"
    with pytest.raises(flussfs.FlussError):
        over(t, FaultStore(t.store, [Fault("error", key_contains="/commits/", times=10**6)])
             ).append(rows, batch_id=batch_id)
    races = []

    def lose_a_race():
        races.append(1)
        fresh(t).append(events([100 + len(races)]))          # a plain writer takes the number
        if len(races) == 3:                                  # the earlier attempt lands above it
            head = t.logs[0].head()
            old = drafts.encode(t.store, t.metadata, 0, [flussfs.runs.append_run(t.metadata, rows, "t")],
                                batch_writer_id(batch_id), 7)
            t.store.put_if_absent(paths.commit(0, head.number + 1),
                                  old.at(0, head, t.metadata.checkpoint_interval).to_bytes())
            fresh(t).append(events([200]))                   # and the chain moves past it

    over(t, FaultStore(t.store, [Fault("delay", key_contains="/commits/", times=3, on_hit=lose_a_race)])
         ).append(rows, batch_id=batch_id)
    assert ids_of(t) == [0, 1, 2, 101, 102, 103, 200]
    assert len(batch_commits(t, batch_id)) == 1
    assert_contiguous(t)


def test_large_keyless_batch_routes_the_same_in_any_order(tmp_path):
    """A keyless batch over the size at which plain appends spread goes to one bucket, so a
    redelivery in another order, after the first attempt committed nothing, lands once."""
    t = create(str(tmp_path / "o"), schema=wide_schema(), buckets=3)
    data = wide(40_000)
    assert data.nbytes > drafts.SPREAD_BYTES_MIN
    first = t.append(data, batch_id="big-order")
    again = fresh(t).append(data.take(list(range(data.num_rows - 1, -1, -1))), batch_id="big-order")
    assert len(first.end_offsets) == 1 and again.duplicate
    assert t.scan(columns=["c00"]).to_arrow().num_rows == 40_000
