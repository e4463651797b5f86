"""Primary-key tables beyond the shared acceptance suite: the merge function on its own, request
costs of lookups and key-filtered scans, change streams from later starts and in raw mode,
the batching writer's parts, and the checks on bad input."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import flussfs
from flussfs import drafts, merge
from flussfs.engines import Aggregate, Versioned
from flussfs.storage.wrappers import MeteredStore
from helpers import over

KV = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("v", pa.int64()),
                pa.field("s", pa.string())])


def kv(*rows, columns=("k", "v", "s")) -> pa.Table:
    schema = pa.schema([KV.field(c) for c in columns])
    return pa.table([pa.array(list(c), f.type) for c, f in zip(zip(*rows), schema)], schema=schema)


def keys(*ks) -> pa.Table:
    return pa.table({"k": pa.array(ks, pa.int64())})


def changes(table: pa.Table, deletes=None) -> merge.Changes:
    n = table.num_rows
    return merge.Changes(table, np.zeros(n, bool) if deletes is None else np.array(deletes, bool))


def test_merge_images_give_every_records_running_row():
    """images(): each record's row after it, liveness, and the key's previous record."""
    rows = kv((1, 10, "a"), (2, 20, "b"), (1, 11, "a2"), (1, None, None), (1, 12, "a3"))
    got = merge.images(changes(rows, [0, 0, 0, 1, 0]), ["k"], "last_row")
    assert got.rows.to_pylist()[2] == {"k": 1, "v": 11, "s": "a2"}
    assert got.exists.tolist() == [True, True, True, False, True]
    assert got.previous.tolist() == [-1, -1, 0, 2, 3]
    assert merge.latest(changes(rows, [0, 0, 0, 1, 0]), ["k"], "last_row").to_pylist() == [
        {"k": 1, "v": 12, "s": "a3"}, {"k": 2, "v": 20, "s": "b"}]


def test_merge_sums_wrap_and_float_sums_do_not_cancel():
    """Integer sums wrap in the column's width; a float sum after a huge key is not lost."""
    t = pa.table({"k": pa.array([1, 1, 2, 2], pa.int64()), "n": pa.array([127, 1, 5, None], pa.int8()),
                  "x": pa.array([1e20, 1e20, 1.0, 2.0])})
    got = merge.latest(changes(t), ["k"], Aggregate({"n": "sum", "x": "sum"})).to_pylist()
    assert got == [{"k": 1, "n": -128, "x": 2e20}, {"k": 2, "n": 5, "x": 3.0}]


def test_float_sums_are_a_left_fold_however_the_records_are_split():
    """A float sum equals Python's left fold, and folding a prefix first (as a tailing
    subscriber does) gives the same bits as folding everything at once (found by review)."""
    rng = np.random.default_rng(3)
    ks = rng.integers(0, 5, 400)
    ks[:100] = 9  # one key with a segment longer than the stepwise limit
    xs = rng.normal(size=400) * 10.0 ** rng.integers(-5, 5, 400)
    t = pa.table({"k": ks, "x": xs})
    engine = Aggregate({"x": "sum"})
    whole = {r["k"]: r["x"] for r in merge.latest(changes(t), ["k"], engine).to_pylist()}
    expected = {}
    for k, x in zip(ks.tolist(), xs.tolist()):
        expected[k] = expected.get(k, 0.0) + x
    assert whole == expected
    first = merge.latest(changes(t.slice(0, 150)), ["k"], engine)
    rest = merge.latest(changes(pa.concat_tables([first, t.slice(150)])), ["k"], engine)
    assert {r["k"]: r["x"] for r in rest.to_pylist()} == whole


def test_merge_min_max_of_a_key_with_only_nulls_is_null():
    """A key whose values are all null gets null, not a neighbour's value (found by the
    stateful test: unsigned sort indices wrapped -1 into a valid position)."""
    t = pa.table({"k": pa.array([0, 3, 0], pa.int64()), "m": pa.array([None, 0, None], pa.int64())})
    for fn in ("min", "max"):
        got = merge.latest(changes(t), ["k"], Aggregate({"m": fn})).to_pylist()
        assert got == [{"k": 0, "m": None}, {"k": 3, "m": 0}], fn


def test_merge_of_a_hot_key_is_vectorised_and_exact():
    """100,000 records of one key fold like a sequential Python loop, for each engine."""
    n = 100_000
    values = np.random.default_rng(7).integers(-1000, 1000, n)
    t = pa.table({"k": np.zeros(n, np.int64), "v": values, "s": pa.array([str(i) for i in range(n)])})
    total = merge.latest(changes(t), ["k"], Aggregate({"v": "sum", "s": "max"})).to_pylist()
    assert total == [{"k": 0, "v": int(values.sum()), "s": max(str(i) for i in range(n))}]
    ver = merge.latest(changes(t), ["k"], Versioned("v")).to_pylist()[0]
    assert ver["v"] == values.max() and ver["s"] == str(int(np.flatnonzero(values == values.max())[-1]))


def test_composite_keys_merge_per_full_key():
    t = pa.table({"a": ["x", "x", "y", "x"], "b": pa.array([1, 2, 1, 1], pa.int32()), "v": [1, 2, 3, 4]})
    got = merge.latest(changes(t), ["a", "b"], "first_row").to_pylist()
    assert got == [{"a": "x", "b": 1, "v": 1}, {"a": "x", "b": 2, "v": 2}, {"a": "y", "b": 1, "v": 3}]


def test_lookup_reads_only_the_buckets_and_parts_of_the_keys(tmp_path):
    """A one-key lookup touches one bucket, and of its referenced segments only those whose
    key range holds the key; a repeated lookup costs two LISTs (the bucket's head and the
    current snapshot, concurrently)."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=4)
    saved, drafts.INLINE_BYTES_MAX = drafts.INLINE_BYTES_MAX, 0  # every commit references segments
    try:
        for lo in range(0, 4000, 1000):
            t.upsert(kv(*[(k, k, f"s{k}") for k in range(lo, lo + 1000)]))
    finally:
        drafts.INLINE_BYTES_MAX = saved
    metered = MeteredStore(t.store)
    handle = over(t, metered)
    assert handle.lookup(keys(1500)).to_pylist() == [{"k": 1500, "v": 1500, "s": "s1500"}]
    bucket_lists = metered.requests["list"]
    segment_gets = metered.requests["get"] - 1 - 4  # hint GET, then the bucket's 4 commits
    assert bucket_lists == 2 and 1 <= segment_gets <= 3, metered.requests
    metered.reset()
    assert handle.lookup(keys(1500)).num_rows == 1  # cached commits: a LIST and the segment ranges
    assert metered.requests["list"] == 2 and metered.requests["get"] <= 3, metered.requests


def test_key_filters_prune_parts_and_value_filters_apply_after_the_merge(tmp_path):
    """A filter on the key skips parts by statistics; a filter on a value sees merged rows only
    (a key whose old value matched but whose new one does not is gone)."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=1)
    t.upsert(kv(*[(k, 100, "old") for k in range(100)]))
    t.upsert(kv(*[(k, 1, "new") for k in range(100, 200)]))
    t.upsert(kv((5, 1, "changed")))
    assert t.scan(filter=pc.field("v") == 100).count() == 99
    assert t.scan(columns=["s"], filter=pc.field("v") == 1).to_arrow().column("s").to_pylist().count("changed") == 1
    metered = MeteredStore(t.store)
    got = over(t, metered).scan(filter=pc.field("k") >= 150).to_arrow()
    assert sorted(got.column("k").to_pylist()) == list(range(150, 200))
    assert metered.requests["get"] <= 5, metered.requests  # hint + 3 commits, nothing else


def test_subscribe_from_latest_and_from_an_offset_continues_the_state(tmp_path):
    """A subscriber starting after 0 knows the state: an update of an old key is +U with its
    whole row, a delete carries the row it removed; rows before the start are not yielded."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=1)
    t.upsert(kv((1, 10, "a"), (2, 20, "b")))
    sub = t.subscribe("latest", idle_timeout=0.5)
    t.upsert(kv((1, 11), columns=("k", "v")))
    t.delete(keys(2, 3))
    t.upsert(kv((4, 40, "d")))
    got = [(r["_offset"], r["_change_type"], r["k"], r["v"], r["s"])
           for b in sub for r in b.to_pylist()]
    assert got == [(2, "+U", 1, 11, "a"), (3, "-D", 2, 20, "b"), (4, "-D", 3, None, None),
                   (5, "+I", 4, 40, "d")]
    mid = [(r["_offset"], r["_change_type"]) for b in t.subscribe({0: 3}, idle_timeout=0.5)
           for r in b.to_pylist()]
    assert mid == [(3, "-D"), (4, "-D"), (5, "+I")]


def test_raw_change_stream_and_projection(tmp_path):
    """changelog="raw" yields records as written: +U with the given columns, -D with the key."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=1)
    t.upsert(kv((1, 10, "a")))
    t.upsert(kv((1, "b"), columns=("k", "s")))
    t.delete(keys(1))
    raw = [(r["_change_type"], r["k"], r["v"], r["s"])
           for b in t.subscribe(changelog="raw", idle_timeout=0.5) for r in b.to_pylist()]
    assert raw == [("+U", 1, 10, "a"), ("+U", 1, None, "b"), ("-D", 1, None, None)]
    images = [b for b in t.subscribe(columns=["s"], idle_timeout=0.5)]
    assert images[0].schema.names == ["s", "_bucket", "_offset", "_timestamp", "_change_type"]
    assert [r["s"] for b in images for r in b.to_pylist()] == ["a", "b", "b"]


def test_dict_rows_leaving_out_a_column_do_not_null_it(tmp_path):
    """upsert([...dicts...]): a column a row leaves out is unchanged, not set to null."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=1)
    t.upsert(kv((1, 10, "keep"), (2, 20, "old")))
    t.upsert([{"k": 1, "v": 11}, {"k": 2, "v": 21, "s": "new"}, {"k": 1, "s": None}])
    assert t.scan().to_arrow().to_pylist() == [{"k": 1, "v": 11, "s": None}, {"k": 2, "v": 21, "s": "new"}]
    t.upsert([{"k": 1, "s": "back"}, {"k": 2, "v": 22}])
    assert t.lookup(keys(1, 2)).to_pylist() == [{"k": 1, "v": 11, "s": "back"}, {"k": 2, "v": 22, "s": "new"}]


def test_writer_commits_runs_in_call_order_as_parts(tmp_path):
    """A writer flush holding upserts, a delete and a partial update is one commit per bucket
    whose parts follow the calls (adjacent alike calls joined)."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=1)
    with t.writer(linger_s=60) as w:
        w.upsert(kv((1, 1, "a")))
        w.upsert(kv((2, 2, "b")))
        w.delete(keys(1))
        w.upsert(kv((2, "z"), columns=("k", "s")))
    commit = t.logs[0].read_commit(0)
    assert [(p["change"], p["rows"], len(p["columns"])) for p in commit.parts] == [
        ("upsert", 2, 3), ("delete", 1, 1), ("upsert", 1, 2)]
    assert t.scan().to_arrow().to_pylist() == [{"k": 2, "v": 2, "s": "z"}]


BAD_CREATE = {
    "sum over a string": (dict(merge_engine=Aggregate({"s": "sum"})), "'s'"),
    "unknown aggregate function": (dict(merge_engine=Aggregate({"v": "avg"})), "'avg'"),
    "aggregate of the key": (dict(merge_engine=Aggregate({"k": "max"})), "'k'"),
    "versioned without its column": (dict(merge_engine=Versioned("ver")), "'ver'"),
    "versioned on a string": (dict(merge_engine=Versioned("s")), "'s'"),
    "unknown key column": (dict(primary_key=["nope"]), "'nope'"),
    "bucket key outside the key": (dict(bucket_key=["v"]), "'v'"),
    "unknown engine": (dict(merge_engine="newest"), "'newest'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CREATE))
def test_bad_create_arguments_name_the_column(tmp_path, case):
    args, named = BAD_CREATE[case]
    with pytest.raises(flussfs.InvalidInputError, match=named):
        flussfs.create_table(str(tmp_path / "t"), KV, **{"primary_key": ["k"], **args})
    assert not list(tmp_path.rglob("*.meta"))


def test_merge_engine_on_a_log_table_is_rejected(tmp_path):
    with pytest.raises(flussfs.InvalidInputError, match="first_row"):
        flussfs.create_table(str(tmp_path / "t"), KV, merge_engine="first_row")


@pytest.mark.parametrize("engine", ["first_row", Versioned("v")])
def test_partial_update_is_rejected_where_the_engine_needs_whole_rows(tmp_path, engine):
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], merge_engine=engine)
    with pytest.raises(flussfs.InvalidInputError, match="'s'"):
        t.upsert(kv((1, 5), columns=("k", "v")))
    assert sum(t.end_offsets().values()) == 0


def test_calls_that_do_not_fit_the_table_kind_are_rejected(tmp_path):
    """Null version, append on a key table, upsert/lookup on a log table, extra lookup columns."""
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], merge_engine=Versioned("v"))
    with pytest.raises(flussfs.InvalidInputError, match="'v'"):
        t.upsert(kv((1, None, "x")))
    with pytest.raises(flussfs.InvalidInputError, match="upsert"):
        t.append(kv((1, 1, "x")))
    with pytest.raises(flussfs.InvalidInputError, match="'s'"):
        t.lookup(kv((1, "x"), columns=("k", "s")))
    log = flussfs.create_table(str(tmp_path / "log"), KV)
    for call in (log.upsert, log.delete, log.lookup):
        with pytest.raises(flussfs.InvalidInputError, match="log table"):
            call(keys(1))
    assert sum(t.end_offsets().values()) == 0 and sum(log.end_offsets().values()) == 0


def test_a_change_part_without_its_key_is_corrupt(tmp_path):
    """A forged change commit whose part lacks the key field is reported, never merged."""
    from flussfs import paths
    from flussfs.format.commit import Commit
    t = flussfs.create_table(str(tmp_path / "t"), KV, primary_key=["k"], buckets=1)
    t.upsert(kv((1, 1, "a")))
    c = t.logs[0].read_commit(0)
    part = {**c.parts[0], "columns": c.parts[0]["columns"][1:]}
    forged = Commit(0, 0, 0, 1, c.timestamp_ms, "w", 0, (part,), c.index, operation="change",
                    body=c.raw[8:len(c.raw)])
    t.store.delete(paths.commit(0, 0))
    t.store.put_if_absent(paths.commit(0, 0), forged.to_bytes())
    with pytest.raises(flussfs.CorruptObjectError, match="key field"):
        flussfs.open_table(t.uri).scan().to_arrow()


def test_primary_key_table_on_s3(s3_uri, s3_options):
    """Upsert, partial update, delete, lookup and reopen through moto's S3 server."""
    t = flussfs.create_table(s3_uri, KV, primary_key=["k"], buckets=2, storage_options=s3_options)
    t.upsert(kv(*[(k, k, f"s{k}") for k in range(50)]))
    t.upsert(kv((7, "seven"), columns=("k", "s")))
    t.delete(keys(8, 9))
    again = flussfs.open_table(s3_uri, storage_options=s3_options)
    assert again.lookup(keys(7, 8)).to_pylist() == [{"k": 7, "v": 7, "s": "seven"}]
    assert again.scan().count() == 48
