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


GOLDEN_PK = os.path.join(os.path.dirname(__file__), "data", "golden-v1-pk")


def _pk_model() -> list[dict]:
    """The golden primary-key table's rows, folded row by row in plain Python (last_row)."""
    from data.make_golden_pk import operations
    state = _fold(operations())
    return [state[k] for k in sorted(state)]


def test_golden_primary_key_table_reads_back_its_state(tmp_path):
    """A primary-key table written by format v1 (partial updates, deletes, a referenced segment,
    a multi-part commit) scans, looks up and replays to the same state."""
    from data.make_golden_pk import SCHEMA as PK_SCHEMA
    copy = str(tmp_path / "golden-pk")
    shutil.copytree(GOLDEN_PK, copy)
    t = flussfs.open_table(copy)
    assert t.schema.equals(PK_SCHEMA) and t.primary_key == ["k"] and t.merge_engine == "last_row"
    expected = _pk_model()
    assert t.scan().to_arrow().sort_by("k").to_pylist() == expected
    asked = pa.table({"k": pa.array([0, 1, 3, 31, 2029, 5000], pa.int64())})
    assert t.lookup(asked).sort_by("k").to_pylist() == [r for r in expected if r["k"] in (0, 3, 31, 2029)]
    state = {}
    for batch in t.subscribe("earliest", idle_timeout=0.5):
        for r in batch.to_pylist():
            if r["_change_type"] == "-D":
                state.pop(r["k"], None)
            else:
                state[r["k"]] = {c: r[c] for c in PK_SCHEMA.names}
    assert [state[k] for k in sorted(state)] == expected


GOLDEN_COMPACTED = os.path.join(os.path.dirname(__file__), "data", "golden-v1-compacted")


def _fold(steps) -> dict:
    """key -> row after the golden operations `steps`, folded row by row (last_row)."""
    state = {}
    from data.make_golden_pk import SCHEMA as PK_SCHEMA
    flat = [s for kind, data in steps for s in (data if kind == "writer" else [(kind, data)])]
    for kind, data in flat:
        for r in data.to_pylist():
            if kind == "delete":
                state.pop(r["k"], None)
            else:
                state.setdefault(r["k"], dict.fromkeys(PK_SCHEMA.names)).update(r)
    return state


def test_golden_compacted_table_reads_snapshot_plus_log(tmp_path):
    """A table compacted by format v1 (a snapshot with a position-delete file, changelog pieces,
    a later upsert in the log), moved elsewhere: scan, lookup and the full changelog read back."""
    from data.make_golden_compacted import COMPACT_AFTER, steps
    copy = str(tmp_path / "golden-compacted")
    shutil.copytree(GOLDEN_COMPACTED, copy)
    t = flussfs.open_table(copy)
    assert t.snapshot().number == 2 and any(s.deletes for s in t.snapshot().buckets)
    state = _fold(steps())
    assert t.scan().to_arrow().sort_by("k").to_pylist() == [state[k] for k in sorted(state)]
    asked = pa.table({"k": pa.array([0, 1, 4, 31, 2040, 5000], pa.int64())})
    assert t.lookup(asked).sort_by("k").to_pylist() == [state[k] for k in (0, 4, 31, 2040)]
    compacted = _fold(steps()[:COMPACT_AFTER[-1] + 1])
    replay = {}
    for batch in t.subscribe("earliest", changelog="full", idle_timeout=0.3):
        for r in batch.to_pylist():
            if r["_change_type"] in ("+I", "+U"):
                replay[r["k"]] = {c: r[c] for c in t.schema.names}
            elif r["_change_type"] == "-D":
                replay.pop(r["k"])
    assert replay == compacted
