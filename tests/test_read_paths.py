"""The snapshot read paths tuned for the benchmark suite: encodings chosen per column, footers
and delete positions cached per process, coalesced ranged reads for lookups, and key matching
by binary search over sorted keys. Each must give exactly what the plain path gives."""
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compactor
import flussfs
from flussfs import parquet
from flussfs.cache import ImmutableCache
from flussfs.errors import CorruptObjectError
from flussfs.state import key_mask
from flussfs.storage.wrappers import MeteredStore


def _rows(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "k": pa.array(np.arange(n), pa.int64()),
        "unique": pa.array(rng.integers(0, 2**60, n), pa.int64()),
        "city": pa.array([f"city-{i % 50}" for i in range(n)]),
        "amount": pa.array(rng.random(n)),
    })


def _encodings(data: bytes) -> dict:
    md = pq.read_metadata(io.BytesIO(data))
    chunks = [md.row_group(0).column(i) for i in range(md.num_columns)]
    return {c.path_in_schema: set(c.encodings) for c in chunks}


def test_encode_picks_dictionary_only_for_repeating_columns_and_delta_for_the_sort_key():
    rows = _rows(50_000)
    data, _ = parquet.encode(rows, ["k"])
    enc = _encodings(data)
    assert "DELTA_BINARY_PACKED" in enc["k"]
    assert any("DICTIONARY" in e for e in enc["city"])
    assert not any("DICTIONARY" in e for e in enc["unique"] | enc["amount"])
    assert pq.read_table(io.BytesIO(data)).equals(rows)


def test_read_row_groups_fetches_wanted_chunks_coalesced_and_the_footer_once(store):
    rows = _rows(3 * parquet.ROW_GROUP_ROWS + 5)
    data, _ = parquet.encode(rows, ["k"])
    store.put_if_absent("f.parquet", data)
    metered = MeteredStore(store)
    groups, got = parquet.read_row_groups(metered, "f.parquet", len(data), [1, 3], ["k", "city"])
    assert groups == [1, 3]
    expected = pq.ParquetFile(io.BytesIO(data)).read_row_groups([1, 3], columns=["k", "city"])
    assert got.equals(expected)
    first = metered.requests["get"]
    metered.reset()
    _, again = parquet.read_row_groups(metered, "f.parquet", len(data), [2], ["amount"])
    assert again.equals(pq.ParquetFile(io.BytesIO(data)).read_row_group(2, columns=["amount"]))
    # Second read: the footer comes from the cache; one GET for the one chunk wanted.
    assert metered.requests["get"] == 1 and first >= 1


def test_read_row_groups_reports_a_corrupt_chunk(store):
    rows = _rows(parquet.ROW_GROUP_ROWS)
    data, meta = parquet.encode(rows, ["k"])
    chunk = meta.row_group(0).column(3)  # "amount"
    at = chunk.data_page_offset + chunk.total_compressed_size - 8
    bad = data[:at] + bytes(b ^ 0xFF for b in data[at:at + 4]) + data[at + 4:]
    store.put_if_absent("bad.parquet", bad)
    with pytest.raises(CorruptObjectError, match="bad.parquet"):
        parquet.read_row_groups(store, "bad.parquet", len(bad), [0], ["amount"])


@settings(max_examples=60, deadline=None)
@given(have=st.lists(st.integers(-50, 50), max_size=60),
       want=st.lists(st.integers(-60, 60), min_size=1, max_size=20),
       sort=st.booleans())
def test_key_mask_by_binary_search_equals_the_hash_path(have, want, sort):
    have = sorted(have) if sort else have
    rows = pa.table({"k": pa.array(have, pa.int64())})
    keys = pa.table({"k": pa.array(want, pa.int64())})
    expected = np.isin(np.asarray(have, dtype=np.int64), np.asarray(want, dtype=np.int64))
    assert key_mask(rows, keys, ["k"]).tolist() == expected.tolist()


def test_immutable_cache_keeps_to_its_budget_and_keys_by_store():
    class Store:
        def __init__(self, url):
            self.url = url
    cache, loads = ImmutableCache(bytes_max=800), []

    def load(value):
        loads.append(value)
        return value
    a, b = Store("memory://a"), Store("memory://b")
    assert cache.get(a, "t", "x", lambda: load("a-x"), lambda v: 100) == "a-x"
    assert cache.get(a, "t", "x", lambda: load("again"), lambda v: 100) == "a-x"
    assert cache.get(b, "t", "x", lambda: load("b-x"), lambda v: 100) == "b-x"
    assert cache.get(a, "u", "x", lambda: load("a-x-u"), lambda v: 100) == "a-x-u"
    assert cache.get(a, "t", "big", lambda: load("big"), lambda v: 101) == "big"  # > 800/8
    assert cache.get(a, "t", "big", lambda: load("big2"), lambda v: 101) == "big2"
    for i in range(10):
        cache.get(a, "t", f"k{i}", lambda: load(i), lambda v: 100)
    assert cache.bytes <= 800
    assert loads[:4] == ["a-x", "b-x", "a-x-u", "big"]


def test_scan_and_lookup_after_merge_on_read_compactions_equal_an_uncompacted_twin(table_uri):
    """Split reads (changed keys taken out in the pass that drops deletes), cached delete
    positions and coalesced lookups, over several snapshots with delete files."""
    uri, options = table_uri
    schema = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("v", pa.string())])
    table = flussfs.create_table(uri, schema, primary_key=["k"], storage_options=options)
    twin = flussfs.create_table(uri + "-twin", schema, primary_key=["k"], storage_options=options)
    rng = np.random.default_rng(7)
    n = 2 * parquet.ROW_GROUP_ROWS
    for version in range(4):
        keys = np.arange(n) if version == 0 else rng.choice(n + 500, 3000, replace=False)
        batch = pa.table({"k": pa.array(keys, pa.int64()),
                          "v": pa.array([f"v{version}-{k}" for k in keys])})
        for t in (table, twin):
            t.upsert(batch)
        gone = pa.table({"k": pa.array(rng.choice(n, 200, replace=False), pa.int64())})
        for t in (table, twin):
            t.delete(gone)
        if version < 3:
            compactor.compact(uri, storage_options=options)
    expected = twin.scan().to_arrow().sort_by("k")
    for _ in range(2):  # the second time from the caches
        assert table.scan().to_arrow().sort_by("k").equals(expected)
    probe = pa.table({"k": pa.array(rng.choice(n + 500, 40, replace=False), pa.int64())})
    assert table.lookup(probe).sort_by("k").equals(twin.lookup(probe).sort_by("k"))


def test_read_row_groups_with_a_probe_decodes_only_groups_that_hold_a_wanted_key(store):
    rows = _rows(3 * parquet.ROW_GROUP_ROWS)
    data, _ = parquet.encode(rows, ["k"])
    store.put_if_absent("p.parquet", data)
    wanted = pa.table({"k": pa.array([parquet.ROW_GROUP_ROWS + 3], pa.int64())})
    probe = (["k"], lambda group: bool(key_mask(group, wanted, ["k"]).any()))
    groups, got = parquet.read_row_groups(store, "p.parquet", len(data), [0, 1, 2],
                                          ["k", "city"], probe=probe)
    assert groups == [1]
    assert got.equals(pq.ParquetFile(io.BytesIO(data)).read_row_group(1, columns=["k", "city"]))


def test_a_composite_key_with_a_widened_type_reads_after_compaction(tmp_path):
    """Snapshot files store int16 as int32: keys are matched in the table's own types."""
    schema = pa.schema([pa.field("a", pa.int16(), nullable=False),
                        pa.field("b", pa.string(), nullable=False), pa.field("v", pa.int64())])
    uri = str(tmp_path / "t")
    table = flussfs.create_table(uri, schema, primary_key=["a", "b"])
    first = pa.table({"a": pa.array([1, 2, 3], pa.int16()), "b": ["x", "y", "z"], "v": [1, 2, 3]})
    table.upsert(first)
    compactor.compact(uri)
    table.upsert(pa.table({"a": pa.array([2], pa.int16()), "b": ["y"], "v": [20]}))
    assert table.scan().to_arrow().sort_by("a")["v"].to_pylist() == [1, 20, 3]
    probe = pa.table({"a": pa.array([2, 3], pa.int16()), "b": ["y", "z"]})
    assert table.lookup(probe).sort_by("a")["v"].to_pylist() == [20, 3]
    compactor.compact(uri)
    assert table.scan().to_arrow().sort_by("a")["v"].to_pylist() == [1, 20, 3]
