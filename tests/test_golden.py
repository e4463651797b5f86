"""Tables written by format v1 keep reading: tests/data/golden-v1 was written once by
tests/data/make_golden.py and is never rewritten."""
import os
import shutil

import pyarrow as pa
import pytest

import flussfs
from data.make_golden import SCHEMA, commits, rows

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden-v1")


@pytest.fixture
def golden(tmp_path):
    copy = str(tmp_path / "golden")
    shutil.copytree(GOLDEN, copy)  # reading must not need to write, but never risk the original
    return flussfs.open_table(copy)


def _expected() -> pa.Table:
    return pa.concat_tables(rows(lo, hi) for lo, hi in commits())


def test_golden_table_reads_back_every_row(golden):
    """Schema, bucket key, rows (inline commits and a referenced segment) and offsets read back."""
    assert golden.schema.equals(SCHEMA) and golden.buckets == 2
    assert golden.metadata.bucket_key == ("id",) and golden.metadata.checkpoint_interval == 4
    got = golden.scan().to_arrow().sort_by("id")
    assert got.equals(_expected().sort_by("id"))
    assert sum(golden.end_offsets().values()) == _expected().num_rows
    assert {log.head().number for log in golden.logs} == {len(commits()) - 1}


def test_golden_table_subscribes_from_an_offset(golden):
    """Subscribing from mid-bucket offsets uses the v1 checkpoints and running indexes."""
    ends = golden.end_offsets()
    start = {b: end // 3 for b, end in ends.items()}
    seen = {}
    for batch in golden.subscribe(start, columns=["id"], idle_timeout=0.5):
        for b, o in zip(batch.column("_bucket").to_pylist(), batch.column("_offset").to_pylist()):
            seen.setdefault(b, []).append(o)
    assert seen == {b: list(range(start[b], ends[b])) for b in ends}
