"""compactor.iceberg.publish: hand-built snapshots published as Iceberg v2 tables read back exactly by
pyiceberg, DuckDB and polars, locally and on S3 (moto), with per-bucket manifest reuse."""
import json
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.expressions import EqualTo
from pyiceberg.manifest import ManifestContent, read_manifest_list
from pyiceberg.table import StaticTable
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import LongType

import flussfs
from compactor import iceberg
from flussfs import paths
from flussfs.bucketing import bucket_of
from flussfs.format.snapshot import BucketState, FileRef, Snapshot
from flussfs.parquet import POSITION_DELETE_SCHEMA, encode, location, to_snapshot
from flussfs.storage.wrappers import MeteredStore
from iceberg_readers import duckdb_rows, iceberg_properties, polars_rows, pyiceberg_rows

SCHEMA = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("v", pa.int64()),
                    pa.field("s", pa.string())])
BUCKETS = 3


@pytest.fixture(scope="module")
def duckdb_home(tmp_path_factory):
    return tmp_path_factory.mktemp("duckdb_home")


class Table:
    """A flussfs table whose snapshots the test builds by hand, and a dict model of its rows."""

    def __init__(self, uri, storage_options, duckdb_home, primary_key=("k",), schema=SCHEMA):
        self.uri, self.options, self.duckdb_home = uri, storage_options, duckdb_home
        t = flussfs.create_table(uri, schema, primary_key=list(primary_key) if primary_key else None,
                                 buckets=BUCKETS, storage_options=storage_options)
        self.meta, self.store, self.token = t.metadata, t.store, uuid.uuid4().hex[:8]

    def bucket(self, k: int) -> int:
        return int(bucket_of(pa.table({"k": pa.array([k], pa.int64())}), ["k"], BUCKETS)[0])

    def keys_of(self, b: int, keys) -> list[int]:
        return [k for k in keys if self.bucket(k) == b]

    def data(self, b: int, epoch: int, keys, tag: str) -> tuple[FileRef, list[tuple]]:
        """A sorted data file of rows (k, k * 10, tag + k) in bucket b; its ref and its rows."""
        keys = sorted(keys)
        rows = pa.table({"k": pa.array(keys, pa.int64()), "v": pa.array([k * 10 for k in keys], pa.int64()),
                         "s": [f"{tag}{k}" for k in keys]}, schema=SCHEMA)
        data, _ = encode(to_snapshot(rows, self.meta), sorting_columns=["k"])
        return self._put(b, epoch, f"{tag}-data", data, len(keys)), [(k, k * 10, f"{tag}{k}") for k in keys]

    def deletes(self, b: int, epoch: int, positions: dict) -> FileRef:
        """A position-delete file: {FileRef: [row positions]}, sorted by file_path, pos."""
        pairs = sorted((location(self.uri, ref.key), p) for ref, ps in positions.items() for p in ps)
        table = pa.table({"file_path": [f for f, _ in pairs],
                          "pos": pa.array([p for _, p in pairs], pa.int64())}, schema=POSITION_DELETE_SCHEMA)
        data, _ = encode(table)
        return self._put(b, epoch, "deletes", data, len(pairs))

    def _put(self, b, epoch, name, data, rows) -> FileRef:
        key = paths.data_file(b, epoch, self.token, name)
        self.store.put_if_absent(key, data)
        return FileRef(key, rows, len(data), epoch)

    def snapshot(self, n: int, states: dict, previous=None) -> Snapshot:
        buckets = tuple(states.get(b, previous.bucket(b) if previous else BucketState(b))
                        for b in range(BUCKETS))
        live = {k for s in buckets for k in s.keys()}
        removed = tuple(sorted(k for k in (previous.live_keys() if previous else ()) if k not in live))
        return Snapshot(n, 0, int(time.time() * 1000), "test", buckets, removed)

    def publish(self, snap, previous, **kw) -> str:
        return iceberg.publish(self.store, self.uri, self.meta, snap, previous, **kw)

    def assert_readers(self, loc: str, expected) -> None:
        """pyiceberg, DuckDB and polars all read exactly `expected` (row tuples) at `loc`."""
        endpoint = (self.options or {}).get("endpoint_url")
        props = iceberg_properties(self.options)
        for name, table in (("pyiceberg", pyiceberg_rows(loc, props)),
                            ("duckdb", duckdb_rows(loc, self.duckdb_home, endpoint)),
                            ("polars", polars_rows(loc, self.options))):
            assert table.column_names == ["k", "v", "s"], name
            got = zip(*(table.column(c).to_pylist() for c in ("k", "v", "s")))
            assert sorted(got) == sorted(expected), name

    def manifests(self, loc: str) -> list:
        meta = StaticTable.from_metadata(loc, properties=iceberg_properties(self.options)).metadata
        fio = iceberg.StoreFileIO(self.store, self.uri)
        return list(read_manifest_list(fio.new_input(meta.current_snapshot().manifest_list)))


@pytest.fixture
def table(table_uri, duckdb_home):
    uri, options = table_uri
    return Table(uri, options, duckdb_home)


def test_three_versions_read_exactly_by_pyiceberg_duckdb_and_polars(table):
    """v1 inserts, v2 adds a file and a position-delete file, v3 rewrites a bucket and adds a
    delete file over two files: every reader returns the model's rows at every version."""
    t, keys = table, range(30)
    a = {b: t.data(b, 1, t.keys_of(b, keys), "a") for b in range(BUCKETS)}
    s1 = t.snapshot(1, {b: BucketState(b, 0, 1, (a[b][0],)) for b in range(BUCKETS)})
    v1_rows = [r for b in range(BUCKETS) for r in a[b][1]]
    loc1 = t.publish(s1, None)
    assert loc1 == location(t.uri, "metadata/v1.metadata.json")
    t.assert_readers(loc1, v1_rows)

    # v2: bucket 0 updates two keys and deletes one (position deletes over a0), adds key 100+;
    # bucket 1 appends new keys; bucket 2 is unchanged.
    k0 = t.keys_of(0, keys)
    new0 = t.keys_of(0, range(100, 130))[:2]
    b0, b0_rows = t.data(0, 2, k0[:2] + new0, "b")
    d0 = t.deletes(0, 2, {a[0][0]: [0, 1, 2]})  # a0 is sorted: positions 0..2 are k0[0..2]
    b1, b1_rows = t.data(1, 2, t.keys_of(1, range(100, 130)), "b")
    s2 = t.snapshot(2, {0: BucketState(0, 1, 2, (a[0][0], b0), d0),
                        1: BucketState(1, 1, 2, (a[1][0], b1))}, s1)
    v2_rows = [r for r in v1_rows if r[0] not in k0[:3]] + b0_rows + b1_rows
    loc2 = t.publish(s2, s1)
    t.assert_readers(loc2, v2_rows)

    # v3: bucket 0 rewritten into one file (a0, b0, d0 removed); bucket 1 gets one delete file
    # over both its files (not limited to one data file); bucket 2 still unchanged.
    merged = sorted({r[0]: r for r in [r for r in a[0][1] if r[0] not in k0[:3]] + b0_rows}.values())
    c0, c0_rows = t.data(0, 3, [r[0] for r in merged], "c")
    d1 = t.deletes(1, 3, {a[1][0]: [0], b1: [1]})
    s3 = t.snapshot(3, {0: BucketState(0, 2, 3, (c0,)), 1: BucketState(1, 2, 3, (a[1][0], b1), d1)}, s2)
    assert set(s3.removed) == {a[0][0].key, b0.key, d0.key}
    gone = {sorted(t.keys_of(1, keys))[0], sorted(t.keys_of(1, range(100, 130)))[1]}
    v3_rows = c0_rows + [r for r in v2_rows if t.bucket(r[0]) == 1 and r[0] not in gone] + a[2][1]
    loc3 = t.publish(s3, s2)
    t.assert_readers(loc3, v3_rows)
    t.assert_readers(loc1, v1_rows)  # older versions stay readable (their files are still there)

    # Bucket 2's manifest from v1 is reused by v2 and v3; changed buckets got new manifests.
    m1, m2, m3 = (t.manifests(loc) for loc in (loc1, loc2, loc3))
    p1, p2, p3 = ({(int(m.manifest_path.rsplit("/m-", 1)[1][:5]), m.content): m.manifest_path for m in ms}
                  for ms in (m1, m2, m3))
    assert p1[(2, ManifestContent.DATA)] == p2[(2, ManifestContent.DATA)] == p3[(2, ManifestContent.DATA)]
    assert p2[(0, ManifestContent.DATA)] != p1[(0, ManifestContent.DATA)]
    assert p3[(1, ManifestContent.DATA)] != p2[(1, ManifestContent.DATA)]
    assert (0, ManifestContent.DELETES) in p2 and (0, ManifestContent.DELETES) not in p3
    static = StaticTable.from_metadata(loc3, properties=iceberg_properties(t.options))
    summary = static.current_snapshot().summary
    assert summary["flussfs.snapshot"] == "3" and summary["operation"].value == "overwrite"
    assert json.loads(summary["flussfs.offsets"]) == {"0": 3, "1": 3, "2": 1}
    assert summary["total-records"] == str(sum(f.rows for s in s3.buckets for f in s.files))


class Recording:
    """A store wrapper that records the keys of every GET and PUT."""

    def __init__(self, inner):
        self.inner, self.url, self.gets, self.puts = inner, inner.url, [], []

    def get(self, key, start=None, end=None):
        self.gets.append(key)
        return self.inner.get(key, start, end)

    def put_if_absent(self, key, data):
        self.puts.append(key)
        return self.inner.put_if_absent(key, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_publishing_touches_only_the_changed_buckets(table):
    """With one bucket of three changed, v2 writes one manifest, the list and v2, and reads no
    other bucket's manifests."""
    t = table
    a = {b: t.data(b, 1, t.keys_of(b, range(30)), "a")[0] for b in range(BUCKETS)}
    s1 = t.snapshot(1, {b: BucketState(b, 0, 1, (a[b],)) for b in range(BUCKETS)})
    loc1 = t.publish(s1, None)
    b1, _ = t.data(1, 2, t.keys_of(1, range(100, 130)), "b")
    s2 = t.snapshot(2, {1: BucketState(1, 1, 2, (a[1], b1))}, s1)
    rec = Recording(t.store)
    iceberg.publish(rec, t.uri, t.meta, s2, s1)
    assert [k.split("/")[1][:2] for k in rec.puts] == ["m-", "sn", "v2"]
    assert rec.puts[0].startswith("metadata/m-00001-data-")
    old = {m.manifest_path.rsplit("/", 1)[1] for m in t.manifests(loc1)}
    read = {k.rsplit("/", 1)[1] for k in rec.gets} & old
    assert read == {n for n in old if n.startswith("m-00001-")}
    assert {k for k in rec.gets if k.startswith("data/")} == {b1.key}  # only the new file's footer


def test_sequence_numbers_are_epochs_and_unchanged_files_stay_existing(table):
    """A changed bucket's older files stay EXISTING with their epoch as data sequence number; new
    ones are ADDED at N."""
    t = table
    a, _ = t.data(0, 1, t.keys_of(0, range(40)), "a")
    s1 = t.snapshot(1, {0: BucketState(0, 0, 1, (a,))})
    t.publish(s1, None)
    b, _ = t.data(0, 2, t.keys_of(0, range(100, 140)), "b")
    s2 = t.snapshot(2, {0: BucketState(0, 0, 2, (a, b))}, s1)
    loc2 = t.publish(s2, s1)
    fio = iceberg.StoreFileIO(t.store, t.uri)
    entries = {e.data_file.file_path: e for m in t.manifests(loc2) for e in m.fetch_manifest_entry(fio)}
    assert entries[location(t.uri, a.key)].sequence_number == 1
    assert entries[location(t.uri, a.key)].status.name == "EXISTING"
    assert entries[location(t.uri, b.key)].sequence_number == 2
    assert entries[location(t.uri, b.key)].status.name == "ADDED"


def test_partition_values_are_the_bucket_transform_and_key_filters_prune(table):
    """Every row's pyiceberg BucketTransform equals its file's partition value; `k == x` scans one bucket."""
    t, keys = table, range(60)
    refs = {b: t.data(b, 1, t.keys_of(b, keys), "a")[0] for b in range(BUCKETS)}
    loc = t.publish(t.snapshot(1, {b: BucketState(b, 0, 1, (refs[b],)) for b in range(BUCKETS)}), None)
    props = iceberg_properties(t.options)
    static = StaticTable.from_metadata(loc, properties=props)
    transform = BucketTransform(BUCKETS).transform(LongType())
    tasks = list(static.scan().plan_files())
    assert sorted(task.file.partition[0] for task in tasks) == list(range(BUCKETS))
    for task in tasks:
        with static.io.new_input(task.file.file_path).open() as f:
            ks = pq.read_table(f, columns=["k"]).column("k").to_pylist()
        assert ks and {transform(k) for k in ks} == {task.file.partition[0]}
    for x in (0, 7, 59):
        planned = list(static.scan(row_filter=EqualTo("k", x)).plan_files())
        assert [task.file.partition[0] for task in planned] == [transform(x)]
        got = pyiceberg_rows(loc, props, EqualTo("k", x))
        assert got.column("k").to_pylist() == [x] and got.column("s").to_pylist() == [f"a{x}"]


def test_empty_first_snapshot_is_an_empty_table_and_later_snapshots_build_on_it(table):
    """A first snapshot with no files publishes an empty table every reader reads; v2 adds rows to it."""
    t = table
    s1 = t.snapshot(1, {})
    loc1 = t.publish(s1, None)
    t.assert_readers(loc1, [])
    a, rows = t.data(1, 2, t.keys_of(1, range(20)), "a")
    s2 = t.snapshot(2, {1: BucketState(1, 0, 5, (a,))}, s1)
    loc2 = t.publish(s2, s1)
    t.assert_readers(loc2, rows)


def test_publishing_twice_is_a_no_op_returning_the_same_location(table):
    """A second publish of v<N> (a racing compactor) writes nothing and returns v<N>'s location."""
    t = table
    a, _ = t.data(0, 1, t.keys_of(0, range(10)), "a")
    s1 = t.snapshot(1, {0: BucketState(0, 0, 1, (a,))})
    loc = t.publish(s1, None)
    before = t.store.get("metadata/v1.metadata.json")
    metered = MeteredStore(t.store)
    assert iceberg.publish(metered, t.uri, t.meta, s1, None) == loc
    assert metered.requests["put"] == 0
    assert t.store.get("metadata/v1.metadata.json") == before
    # A racer that missed v1 on its first look loses at the put, and removes what it wrote.
    keys = {i.key for i in t.store.list("metadata/")}
    blind = Recording(t.store)
    blind.head = lambda key: None
    assert iceberg.publish(blind, t.uri, t.meta, s1, None) == loc
    assert len(blind.puts) == 3 and blind.puts[-1] == "metadata/v1.metadata.json"
    assert t.store.get("metadata/v1.metadata.json") == before
    assert {i.key for i in t.store.list("metadata/")} == keys


def test_version_hint_is_monotone_and_lists_only_versions(table):
    """The hint names the newest v<M> even when an older publisher writes it late; DuckDB follows it."""
    t = table
    prev = None
    for n in (1, 2, 3):
        ref, _ = t.data(0, n, t.keys_of(0, range(n * 100, n * 100 + 20)), f"e{n}")
        files = (prev.bucket(0).files if prev else ()) + (ref,)
        snap = t.snapshot(n, {0: BucketState(0, 0, n, files)}, prev)
        t.publish(snap, prev)
        prev = snap
    assert iceberg.published_versions(t.store) == [1, 2, 3]
    assert iceberg.write_version_hint(t.store, 1) == 3  # a late publisher of v1 never moves it back
    t.store.put(paths.VERSION_HINT, b"2")               # a racer wrote an older number
    assert iceberg.write_version_hint(t.store, 2) == 3
    assert t.store.get(paths.VERSION_HINT) == b"3"
    with pytest.raises(flussfs.NotFoundError):
        iceberg.write_version_hint(t.store, 4)
    endpoint = (t.options or {}).get("endpoint_url")
    rows = sum(f.rows for f in prev.bucket(0).files)
    assert duckdb_rows(location(t.uri, "").rstrip("/"), t.duckdb_home, endpoint).num_rows == rows


def test_retention_drops_old_iceberg_snapshots_but_keeps_the_current(table):
    """retention_ms=0 leaves only the current snapshot; the default keeps history and the metadata log."""
    t = table
    a, _ = t.data(0, 1, t.keys_of(0, range(10)), "a")
    s1 = t.snapshot(1, {0: BucketState(0, 0, 1, (a,))})
    t.publish(s1, None)
    b, rows_b = t.data(2, 2, t.keys_of(2, range(10)), "b")
    s2 = t.snapshot(2, {2: BucketState(2, 0, 1, (b,))}, s1)
    loc2 = t.publish(s2, s1)
    s3 = t.snapshot(3, {0: BucketState(0, 1, 1)}, s2)  # bucket 0 emptied
    loc3 = t.publish(s3, s2, retention_ms=0)
    props = iceberg_properties(t.options)
    assert len(StaticTable.from_metadata(loc2, properties=props).metadata.snapshots) == 2
    m3 = StaticTable.from_metadata(loc3, properties=props).metadata
    assert [s.sequence_number for s in m3.snapshots] == [3]
    logged = [e.metadata_file.rsplit("/", 1)[1] for e in m3.metadata_log]
    assert logged == ["v1.metadata.json", "v2.metadata.json"]
    t.assert_readers(loc3, rows_b)


def test_log_table_without_bucket_key_is_unpartitioned(table_uri, duckdb_home):
    """A log table (no key) publishes unpartitioned and unsorted, with delete files applied by position."""
    uri, options = table_uri
    t = Table(uri, options, duckdb_home, primary_key=None)
    a, rows = t.data(0, 1, range(10), "a")
    d = t.deletes(0, 1, {a: [3]})
    loc = t.publish(t.snapshot(1, {0: BucketState(0, 0, 10, (a,), d)}), None)
    meta = StaticTable.from_metadata(loc, properties=iceberg_properties(options)).metadata
    assert meta.spec().is_unpartitioned() and meta.sort_order_by_id(meta.default_sort_order_id).is_unsorted
    assert meta.schema().identifier_field_ids == []
    t.assert_readers(loc, [r for r in rows if r[0] != 3])


def test_bad_input_and_corrupt_objects_raise_flussfs_errors(table):
    """A missing or unreadable v<N-1>, a file that is not Parquet and wrong arguments raise
    FlussErrors, never library errors."""
    t = table
    a, _ = t.data(0, 1, t.keys_of(0, range(10)), "a")
    s1 = t.snapshot(1, {0: BucketState(0, 0, 1, (a,))})
    s2 = t.snapshot(2, {0: BucketState(0, 0, 1, (a,))}, s1)
    with pytest.raises(flussfs.NotFoundError):
        t.publish(s2, s1)  # v1 is not published yet
    with pytest.raises(flussfs.InvalidInputError):
        t.publish(s2, t.snapshot(3, {}))
    junk_key = paths.data_file(1, 1, t.token, "junk")
    t.store.put_if_absent(junk_key, b"PAR1 this is not a parquet file PAR1")
    junk = FileRef(junk_key, 5, 36, 1)
    with pytest.raises(flussfs.CorruptObjectError):
        t.publish(t.snapshot(1, {1: BucketState(1, 0, 1, (junk,))}), None)
    assert t.store.head("metadata/v1.metadata.json") is None
    t.store.put_if_absent("metadata/v1.metadata.json", b"{not json")
    with pytest.raises(flussfs.CorruptObjectError):
        t.publish(s2, s1)


def test_composite_bucket_key_is_unpartitioned_and_sorted_by_the_whole_key():
    """A two-column primary key gives an unpartitioned spec, a two-field sort order and both
    identifier ids."""
    schema = pa.schema([pa.field("a", pa.string(), nullable=False),
                        pa.field("b", pa.int32(), nullable=False), pa.field("x", pa.float64())])
    uri = f"memory://{uuid.uuid4().hex}"
    meta = flussfs.create_table(uri, schema, primary_key=["a", "b"], buckets=2).metadata
    lay = iceberg.layout(meta)
    assert lay.spec.is_unpartitioned() and lay.partition(1) == iceberg.Record()
    assert [f.source_id for f in lay.sort_order.fields] == [meta.field_id("a"), meta.field_id("b")]
    assert lay.schema.identifier_field_ids == [meta.field_id("a"), meta.field_id("b")]
