"""The compactor (compactor/, format_spec section 20): snapshots equal the log they cover, the
published Iceberg table reads the same through pyiceberg, DuckDB and polars, compaction cost
follows what changed, the changelog carries before-images, and crashes and GC are safe."""
import random

import pyarrow as pa
import pytest

import compactor
import flussfs
from compactor import tasks
from flussfs.engines import allows_partial_updates
from iceberg_readers import duckdb_rows, iceberg_properties, polars_rows, pyiceberg_rows

SCHEMA = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("v", pa.int64()),
                    pa.field("ver", pa.int32()), pa.field("x", pa.float64()), pa.field("s", pa.string())])
ENGINES = {"last_row": "last_row", "first_row": "first_row", "versioned": flussfs.Versioned("ver"),
           "aggregate": flussfs.Aggregate({"v": "sum", "x": "sum", "ver": "max", "s": "min"})}


def rows_of(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.select(SCHEMA.names).to_pylist())


def batch(rng, keys, columns=None) -> pa.Table:
    data = {"k": pa.array(keys, pa.int64()), "v": [rng.randrange(-50, 50) for _ in keys],
            "ver": pa.array([rng.randrange(5) for _ in keys], pa.int32()),
            "x": [rng.choice([0.1, 0.25, -3.5, None]) for _ in keys],
            "s": [rng.choice(["a", "b", None, "zz"]) for _ in keys]}
    names = columns or SCHEMA.names
    return pa.table({n: data[n] for n in names}, schema=pa.schema([SCHEMA.field(n) for n in names]))


def random_round(rng, tables, keys_max, changes):
    """The same random upserts, partial updates and deletes on every table of `tables`."""
    keys = rng.sample(range(keys_max), changes)
    third = len(keys) // 3
    partial = ["k", "v", "x"] if allows_partial_updates(tables[0].merge_engine) else None
    ops = [("upsert", batch(rng, keys[:third])),
           ("upsert", batch(rng, keys[third:2 * third], partial)),
           ("delete", pa.table({"k": pa.array(keys[2 * third:2 * third + third // 2], pa.int64())})),
           ("upsert", batch(rng, keys[2 * third + third // 2:]))]
    for op, data in ops:
        for t in tables:
            getattr(t, op)(data)


def iceberg_readers_rows(result, storage_options, endpoint):
    loc = result.metadata_location
    return {"pyiceberg": rows_of(pyiceberg_rows(loc, iceberg_properties(storage_options))),
            "duckdb": rows_of(duckdb_rows(loc, s3_endpoint=endpoint)),
            "polars": rows_of(polars_rows(loc, storage_options))}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_iceberg_readers_equal_scan_for_random_workloads(table_uri, engine, request):
    """Under every merge engine, after random upserts, partial updates and deletes with
    compactions in between (incremental ones and a rewrite), pyiceberg, DuckDB and polars read
    exactly what scan() gives, and scan() equals that of a never-compacted twin."""
    uri, so = table_uri
    endpoint = so["endpoint_url"] if so else None
    rng = random.Random(hash(engine) % 1000)
    t = flussfs.create_table(uri, SCHEMA, primary_key=["k"], buckets=2, merge_engine=ENGINES[engine],
                             storage_options=so)
    twin = flussfs.create_table(uri + "-twin", SCHEMA, primary_key=["k"], buckets=2,
                                merge_engine=ENGINES[engine], storage_options=so)
    both = [t, twin]
    for table in both:
        table.upsert(batch(random.Random(7), list(range(400))))
    rewrites = []
    for changes in (24, 30, 240):  # two small rounds (merge-on-read), then one that rewrites
        random_round(rng, both, 500, changes)
        result = compactor.compact(uri, storage_options=so)
        rewrites.append(any(s["rewritten"] for s in result.buckets))
        expected = rows_of(twin.scan().to_arrow())
        assert rows_of(t.scan().to_arrow()) == expected
    assert rewrites[:2] == [False, False] and rewrites[-1], rewrites
    for reader, got in iceberg_readers_rows(result, so, endpoint).items():
        assert got == expected, f"{reader} differs from scan()"
    random_round(rng, both, 500, 30)  # after the snapshot: scan = snapshot + newer changes
    assert rows_of(t.scan().to_arrow()) == rows_of(twin.scan().to_arrow())
    keys = pa.table({"k": pa.array(range(0, 500, 7), pa.int64())})
    assert rows_of(t.lookup(keys)) == rows_of(twin.lookup(keys))


def test_compaction_after_a_few_changes_rewrites_only_them(tmp_path):
    """After 1% of the keys change, a compaction writes a data file of those keys and a delete
    file of their old positions, and leaves the bucket's big file in place."""
    t = flussfs.create_table(str(tmp_path / "t"), SCHEMA, primary_key=["k"], buckets=1)
    rng = random.Random(3)
    t.upsert(batch(rng, list(range(20_000))))
    first = compactor.compact(t.uri)
    big = t.snapshot().bucket(0).files
    changed = rng.sample(range(20_000), 200)
    t.upsert(batch(rng, changed))
    second = compactor.compact(t.uri, changelog=False)
    state = t.snapshot().bucket(0)
    assert state.files[0].key == big[0].key and state.files[0].deleted == 200
    assert state.files[1].rows == 200 and state.deletes.rows == 200
    assert second.rows_written == 400 and not second.buckets[0]["rewritten"]
    assert second.bytes_written * 10 < first.bytes_written


def test_full_changelog_has_before_images_and_replays_to_the_snapshot(table_uri):
    """subscribe(changelog="full") yields +I, -U/+U pairs (the -U holding the row before) and
    -D, in offset order per bucket; replaying it gives the compacted state."""
    uri, so = table_uri
    t = flussfs.create_table(uri, SCHEMA, primary_key=["k"], buckets=2, storage_options=so)
    rng = random.Random(5)
    t.upsert(batch(rng, list(range(30))))
    first_end = t.end_offsets()
    compactor.compact(uri, storage_options=so)
    random_round(rng, [t], 40, 24)
    t.upsert(batch(rng, [1, 1, 2]))
    compactor.compact(uri, storage_options=so)
    stream = pa.Table.from_batches(list(t.subscribe(changelog="full", idle_timeout=0.3)))
    replay, pairs = {}, 0
    records = stream.to_pylist()
    for i, r in enumerate(records):
        row = tuple(r[c] for c in SCHEMA.names)
        kind = r["_change_type"]
        if kind == "-U":
            nxt = records[i + 1]
            assert nxt["_change_type"] == "+U" and nxt["_offset"] == r["_offset"] and nxt["k"] == r["k"]
            assert replay[r["k"]] == row, "a -U must carry the row before the change"
            pairs += 1
        if kind in ("+I", "+U"):
            assert (kind == "+I") == (r["k"] not in replay)
            replay[r["k"]] = row
        elif kind == "-D":
            assert replay.pop(r["k"]) == row
        if r["_offset"] < first_end[r["_bucket"]] and kind != "+I":
            pytest.fail(f"the first upsert of distinct keys gives only +I, got {r}")
    assert pairs > 0
    assert sorted(replay.values()) == rows_of(t.scan().to_arrow())
    for b in range(2):
        offsets = [r["_offset"] for r in records if r["_bucket"] == b]
        assert offsets == sorted(offsets)


def test_log_tables_tier_in_offset_order_and_merge_small_files(tmp_path, monkeypatch):
    """A log table's compactions tier its rows into Parquet in offset order; past LOG_FILES_MAX
    files the small trailing ones are merged; scan() and Iceberg keep every row once."""
    monkeypatch.setattr(tasks, "LOG_FILES_MAX", 3)
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("tiny", pa.int8()), pa.field("u", pa.uint32())])
    t = flussfs.create_table(str(tmp_path / "log"), schema, buckets=2, bucket_key=["id"])
    for i in range(6):
        ids = list(range(i * 10, i * 10 + 10))
        t.append(pa.table({"id": ids, "tiny": pa.array([i] * 10, pa.int8()),
                           "u": pa.array([2**32 - 1] * 10, pa.uint32())}, schema=schema))
        result = compactor.compact(t.uri)
    assert all(len(s.files) <= 3 for s in t.snapshot().buckets)
    scanned = t.scan().to_arrow()
    assert scanned.schema == schema and sorted(scanned.column("id").to_pylist()) == list(range(60))
    ids = scanned.column("id").to_pylist()  # bucket after bucket, each in offset (= id) order
    assert sum(a > b for a, b in zip(ids, ids[1:])) <= 1, ids
    ice = pyiceberg_rows(result.metadata_location)
    assert sorted(ice.column("id").to_pylist()) == list(range(60))
    assert ice.column("u").to_pylist() == [2**32 - 1] * 60  # widened to long, losslessly


def test_create_table_refuses_types_iceberg_cannot_hold(tmp_path):
    """uint64 and nanosecond timestamps have no lossless Iceberg v2 type: create_table says so."""
    for t in (pa.uint64(), pa.timestamp("ns")):
        schema = pa.schema([pa.field("id", pa.int64()), pa.field("bad", t)])
        with pytest.raises(flussfs.InvalidInputError, match="'bad'"):
            flussfs.create_table(str(tmp_path / str(t)), schema)


def test_a_corrupt_data_file_is_reported_not_read(tmp_path):
    """A flipped byte in a snapshot data file fails its page checksum: scan raises
    CorruptObjectError naming the file."""
    t = flussfs.create_table(str(tmp_path / "t"), SCHEMA, primary_key=["k"], buckets=1)
    t.upsert(batch(random.Random(1), list(range(1000))))
    compactor.compact(t.uri)
    ref = t.snapshot().bucket(0).files[0]
    path = tmp_path / "t" / ref.key
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(flussfs.CorruptObjectError, match=ref.key.rsplit("/", 1)[-1]):
        flussfs.open_table(t.uri).scan().to_arrow()
