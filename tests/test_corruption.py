"""A flipped or missing byte in any object is caught by its checksum and reported, naming the
object; it is never returned as data."""
import os

import pytest

import flussfs
from flussfs import paths
from helpers import events, wide, wide_schema


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _file(t, key):
    return os.path.join(t.uri, *key.split("/"))


def test_flipped_byte_in_a_segment_column_is_caught(tmp_path):
    """Flipping one byte inside a segment's column chunk makes scans and subscriptions fail."""
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    t.append(wide(40_000))
    commit = t.logs[0].read_commit(0)
    part = commit.parts[0]
    column = next(d for d in part["columns"] if d["field_id"] == 3)
    _flip(_file(t, part["key"]), column["offset"] + column["length"] // 2)
    with pytest.raises(flussfs.CorruptObjectError, match=part["key"].rsplit("/", 1)[-1]):
        t.scan().to_arrow()
    with pytest.raises(flussfs.CorruptObjectError):
        list(t.subscribe("earliest", idle_timeout=0.5))
    # Columns whose chunks are intact still read: the checksum is per chunk.
    assert t.scan(columns=["c00"]).to_arrow().num_rows == 40_000


@pytest.mark.parametrize("where", ["start", "body", "footer", "trailer"])
def test_flipped_byte_in_a_commit_is_caught(tmp_path, where):
    """A flipped byte anywhere in an inline commit (magic, data, footer, trailer) is reported."""
    t = flussfs.create_table(str(tmp_path / "t"), events([]).schema, buckets=1)
    t.append(events(range(100)))
    path = _file(t, paths.commit(0, 0))
    size = os.path.getsize(path)
    offset = {"start": 0, "body": 20, "footer": size - 40, "trailer": size - 12}[where]
    _flip(path, offset)
    with pytest.raises(flussfs.CorruptObjectError, match="00000000000000000000"):
        flussfs.open_table(t.uri).scan().to_arrow()


def test_truncated_commit_and_segment_are_caught(tmp_path):
    """A truncated commit or segment is reported as corrupt."""
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    t.append(wide(40_000))
    t.append(wide(10))
    seg = _file(t, t.logs[0].read_commit(0).parts[0]["key"])
    os.truncate(seg, os.path.getsize(seg) // 2)
    with pytest.raises(flussfs.CorruptObjectError):
        t.scan().to_arrow()
    inline = _file(t, paths.commit(0, 1))
    os.truncate(inline, os.path.getsize(inline) - 1)
    with pytest.raises(flussfs.CorruptObjectError):  # a fresh handle: `t` caches checked commits
        flussfs.open_table(t.uri).scan(columns=["c00"]).to_arrow()


def test_corrupt_table_metadata_is_caught(tmp_path):
    """open_table of a table whose metadata object is damaged raises CorruptObjectError."""
    t = flussfs.create_table(str(tmp_path / "t"), events([]).schema)
    _flip(_file(t, paths.table_metadata(0)), 30)
    with pytest.raises(flussfs.CorruptObjectError):
        flussfs.open_table(t.uri)
