"""Input checking and bucketing: what append accepts, what it rejects (naming the column), and
that the bucket function is Iceberg's bucket transform."""
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import DateType, IntegerType, LongType, StringType, TimestamptzType

import flussfs
from flussfs.bucketing import bucket_of
from flussfs.conform import conform
from flussfs.pruning import PartPruner, referenced_columns

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string()),
                    pa.field("x", pa.float64()), pa.field("ts", pa.timestamp("us", tz="UTC"))])


@pytest.mark.parametrize("data, column", [
    ({"id": ["1"]}, "id"),                      # strings are never parsed into numbers
    ({"id": [1], "name": [5]}, "name"),          # numbers are never formatted into strings
    ({"id": [1.5]}, "id"),                      # lossy float -> int
    ({"id": [2**63 + 5]}, "id"),                # overflow
    ({"id": [1, None]}, "id"),                  # null in a non-nullable column
    ({"name": ["a"]}, "id"),                    # missing non-nullable column
    ({"id": [1], "zzz": [1]}, "zzz"),           # unknown column
    ({"id": [1], "ts": [datetime(2024, 1, 1)]}, "ts"),  # naive vs aware timestamps
])
def test_bad_input_is_rejected_naming_the_column(data, column):
    """Each kind of bad input raises InvalidInputError whose message names the column."""
    with pytest.raises(flussfs.InvalidInputError, match=repr(column)):
        conform(pa.table(data) if not any(v == [2**63 + 5] for v in data.values())
                else pa.table({"id": pa.array([2**63 + 5], pa.uint64())}), SCHEMA)


def test_safe_casts_and_list_of_dicts_are_accepted():
    """int32 -> int64, int -> float, list of dicts, and omitted nullable columns work."""
    got = conform([{"id": 1, "x": 2}, {"id": 2, "name": "b"}], SCHEMA)
    assert got.schema == SCHEMA
    assert got.to_pylist() == [{"id": 1, "name": None, "x": 2.0, "ts": None},
                               {"id": 2, "name": "b", "x": None, "ts": None}]
    assert conform(pa.table({"id": pa.array([3], pa.int32())}), SCHEMA).column("id").type == pa.int64()


@pytest.mark.parametrize("values, arrow_type, iceberg_type", [
    ([0, 1, -1, 34, 2**40], pa.int64(), LongType()),
    ([0, 7, -9, 34], pa.int32(), IntegerType()),
    (["", "iceberg", "héllo", "a" * 100], pa.string(), StringType()),
    ([date(1970, 1, 1), date(2017, 11, 16)], pa.date32(), DateType()),
    ([datetime(2017, 11, 16, 22, 31, 8, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC"),
     TimestamptzType()),
])
def test_bucket_function_is_icebergs_bucket_transform(values, arrow_type, iceberg_type):
    """Single-column bucket keys land where Iceberg's bucket[16] transform puts them."""
    table = pa.table({"k": pa.array(values, arrow_type)})
    transform = BucketTransform(16).transform(iceberg_type)
    expected = [transform(_iceberg_value(v, iceberg_type)) for v in values]
    assert list(bucket_of(table, ["k"], 16)) == expected


def _iceberg_value(v, iceberg_type):
    if isinstance(iceberg_type, DateType):
        return (v - date(1970, 1, 1)).days
    if isinstance(iceberg_type, TimestamptzType):
        return int(v.timestamp() * 1_000_000)
    return v


def test_bucket_key_routes_equal_keys_to_one_bucket(tmp_path):
    """With a bucket key, every row of a key lands in the bucket the hash names."""
    t = flussfs.create_table(str(tmp_path / "t"), SCHEMA, buckets=4, bucket_key=["name"])
    names = [f"user{i % 13}" for i in range(200)]
    t.append(pa.table({"id": list(range(200)), "name": names}))
    expected = dict(zip(names, bucket_of(pa.table({"name": names}), ["name"], 4).tolist()))
    for batch in t.subscribe("earliest", idle_timeout=0.5):
        for name, bucket in zip(batch.column("name").to_pylist(), batch.column("_bucket").to_pylist()):
            assert expected[name] == bucket


def test_filter_columns_and_statistics_pruning():
    """referenced_columns finds exactly the filter's columns; pruning skips only impossible parts."""
    expr = (pc.field("x") > 5) & pc.field("name").is_null()
    assert referenced_columns(expr, SCHEMA) == ["name", "x"]
    pruner = PartPruner(pc.field("x") > 5, SCHEMA, [1, 2, 3, 4], ["x"])
    part = lambda lo, hi, nulls: {"rows": 10, "columns": [{"field_id": 3, "nulls": nulls, "min": lo, "max": hi}]}
    assert not pruner.may_match(part(0.0, 5.0, 0))
    assert pruner.may_match(part(0.0, 6.0, 0))
    assert not pruner.may_match(part(0.0, 5.0, 3))  # nulls never satisfy x > 5
    nulls = PartPruner(pc.field("x").is_null(), SCHEMA, [1, 2, 3, 4], ["x"])
    assert nulls.may_match(part(0.0, 5.0, 3)) and not nulls.may_match(part(0.0, 5.0, 0))
    no_stats = {"rows": 10, "columns": [{"field_id": 3, "nulls": 0}]}
    assert pruner.may_match(no_stats)
