"""Commits and segments (format_spec/spec-v1.md, "Commits" and "Segments").

A commit is a block whose footer records one step of a bucket's log: its number, the offsets
[base_offset, base_offset + record_count), the commit time, the writer id and sequence, the data
(inline column chunks in the commit's own body, or referenced segment objects with their column
descriptors copied in), and the running index of the earlier commits of its checkpoint interval.
A segment is a block holding column chunks and a footer describing them.

Invariants: the rows of the parts add up to record_count; each part's column descriptors name
every field of the schema `schema_id` once; a referenced part names its segment key and size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CorruptObjectError
from . import block

COMMIT_KIND = "commit"
SEGMENT_KIND = "segment"


@dataclass(frozen=True)
class RunningIndex:
    """Base offsets and timestamps of commits first_number, first_number + 1, ..."""
    first_number: int
    base_offsets: tuple[int, ...] = ()
    timestamps_ms: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"first_number": self.first_number, "base_offset": list(self.base_offsets),
                "timestamp_ms": list(self.timestamps_ms)}

    @classmethod
    def from_json(cls, j: dict) -> "RunningIndex":
        return cls(j["first_number"], tuple(j["base_offset"]), tuple(j["timestamp_ms"]))


@dataclass(frozen=True)
class Commit:
    bucket: int
    number: int
    base_offset: int
    record_count: int
    timestamp_ms: int
    writer_id: str
    writer_seq: int
    parts: tuple[dict, ...]  # {"rows", "columns", and "key"/"size" when referenced}
    index: RunningIndex
    schema_id: int = 0
    operation: str = "append"
    body: bytes = field(default=b"", repr=False)  # writing: the inline chunks (from offset 8)
    raw: bytes = field(default=b"", repr=False)   # reading: the whole object, for inline parts

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.record_count

    def to_bytes(self) -> bytes:
        """The whole commit object; `body` holds the inline chunks at their recorded offsets."""
        assert sum(p["rows"] for p in self.parts) == self.record_count, "parts must add up"
        assert self.index.first_number + len(self.index.base_offsets) == self.number
        return block.encode({
            "format_version": block.FORMAT_VERSION, "kind": COMMIT_KIND, "bucket": self.bucket,
            "number": self.number, "base_offset": self.base_offset,
            "record_count": self.record_count, "timestamp_ms": self.timestamp_ms,
            "writer_id": self.writer_id, "writer_seq": self.writer_seq,
            "schema_id": self.schema_id, "operation": self.operation,
            "parts": list(self.parts), "index": self.index.to_json()}, self.body)

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "Commit":
        f = block.decode_object(data, name, COMMIT_KIND, "a commit")
        try:
            commit = cls(bucket=f["bucket"], number=f["number"], base_offset=f["base_offset"],
                         record_count=f["record_count"], timestamp_ms=f["timestamp_ms"],
                         writer_id=f["writer_id"], writer_seq=f["writer_seq"],
                         parts=tuple(f["parts"]), index=RunningIndex.from_json(f["index"]),
                         schema_id=f["schema_id"], operation=f["operation"], raw=data)
        except (KeyError, TypeError) as e:
            raise CorruptObjectError(f"{name}: commit lacks {e}") from None
        if sum(p["rows"] for p in commit.parts) != commit.record_count:
            raise CorruptObjectError(f"{name}: parts hold a different number of rows than record_count")
        return commit


def encode_segment(rows: int, columns: list[dict], body: bytes, writer_id: str,
                   writer_seq: int, schema_id: int) -> bytes:
    """A segment object: `body` holds the chunks that `columns` describe (offsets absolute)."""
    return block.encode({"format_version": block.FORMAT_VERSION, "kind": SEGMENT_KIND,
                         "rows": rows, "columns": columns, "writer_id": writer_id,
                         "writer_seq": writer_seq, "schema_id": schema_id}, body)
