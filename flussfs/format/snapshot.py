"""Snapshot manifests (format_spec/spec-v1.md, section 20.2): what one compaction made of the log.

A snapshot manifest is a block container (section 3) with no body; its footer says, for every
bucket, which log prefix the snapshot covers (commits 0..`commit`, offsets below `offset`) and
which Parquet files hold that prefix's rows: data files, at most one position-delete file over
them, and the changelog piece this compaction produced.

Invariants: one BucketState per bucket, in bucket order; a bucket's covered offset never
decreases from one snapshot to the next; `deleted` of a file never exceeds its `rows`; keys are
relative to the table root.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import block
from ..errors import CorruptObjectError

KIND = "snapshot"


@dataclass(frozen=True)
class FileRef:
    """A Parquet file of a snapshot. `epoch` is the snapshot that wrote it (its Iceberg data
    sequence number); `first_offset` is the offset of its first row (log tables' data files and
    changelog pieces); `deleted` counts its rows that the bucket's delete file removes."""
    key: str
    rows: int
    size: int
    epoch: int
    first_offset: int | None = None
    deleted: int = 0

    def to_json(self) -> dict:
        j = {"key": self.key, "rows": self.rows, "size": self.size, "epoch": self.epoch}
        if self.first_offset is not None:
            j["first_offset"] = self.first_offset
        if self.deleted:
            j["deleted"] = self.deleted
        return j

    @classmethod
    def from_json(cls, j: dict) -> "FileRef":
        return cls(j["key"], j["rows"], j["size"], j["epoch"], j.get("first_offset"), j.get("deleted", 0))


@dataclass(frozen=True)
class BucketState:
    """One bucket of a snapshot: the log prefix it covers and the files holding it."""
    bucket: int
    commit: int = -1                      # last commit number covered; -1: none
    offset: int = 0                       # offsets below this are covered
    files: tuple[FileRef, ...] = ()       # live data files (log tables: in offset order)
    deletes: FileRef | None = None        # position deletes over `files` (Iceberg v2 layout)
    changelog: FileRef | None = None      # the changelog piece of this snapshot's compaction

    @property
    def live_rows(self) -> int:
        return sum(f.rows - f.deleted for f in self.files)

    def keys(self) -> set[str]:
        """Every file this state references (the changelog piece included)."""
        refs = list(self.files) + [r for r in (self.deletes, self.changelog) if r is not None]
        return {r.key for r in refs}

    def to_json(self) -> dict:
        return {"bucket": self.bucket, "commit": self.commit, "offset": self.offset,
                "files": [f.to_json() for f in self.files],
                "deletes": self.deletes.to_json() if self.deletes else None,
                "changelog": self.changelog.to_json() if self.changelog else None}

    @classmethod
    def from_json(cls, j: dict) -> "BucketState":
        ref = lambda x: FileRef.from_json(x) if x else None  # noqa: E731
        return cls(j["bucket"], j["commit"], j["offset"], tuple(FileRef.from_json(f) for f in j["files"]),
                   ref(j.get("deletes")), ref(j.get("changelog")))


@dataclass(frozen=True)
class Snapshot:
    """Snapshot `number` (the compaction epoch; 1 is the first compaction)."""
    number: int
    table_version: int
    timestamp_ms: int
    compactor_id: str
    buckets: tuple[BucketState, ...]
    removed: tuple[str, ...] = ()         # keys live in snapshot number - 1 and not in this one

    def bucket(self, b: int) -> BucketState:
        return self.buckets[b]

    def offsets(self) -> dict[int, int]:
        return {s.bucket: s.offset for s in self.buckets}

    def live_keys(self) -> set[str]:
        return set().union(*(s.keys() for s in self.buckets)) if self.buckets else set()

    def with_buckets(self, states: dict[int, BucketState]) -> "Snapshot":
        return replace(self, buckets=tuple(states.get(s.bucket, s) for s in self.buckets))

    def to_bytes(self) -> bytes:
        for i, s in enumerate(self.buckets):
            assert s.bucket == i, "one state per bucket, in order"
            assert all(0 <= f.deleted <= f.rows for f in s.files)
        return block.encode({"format_version": block.FORMAT_VERSION, "kind": KIND,
                             "number": self.number, "table_version": self.table_version,
                             "timestamp_ms": self.timestamp_ms, "compactor_id": self.compactor_id,
                             "buckets": [s.to_json() for s in self.buckets],
                             "removed": list(self.removed)})

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "Snapshot":
        f = block.decode_object(data, name, KIND, "a snapshot manifest")
        try:
            snap = cls(f["number"], f["table_version"], f["timestamp_ms"], f["compactor_id"],
                       tuple(BucketState.from_json(b) for b in f["buckets"]), tuple(f["removed"]))
        except (KeyError, TypeError) as e:
            raise CorruptObjectError(f"{name}: snapshot manifest lacks {e}") from None
        if any(s.bucket != i for i, s in enumerate(snap.buckets)):
            raise CorruptObjectError(f"{name}: bucket states out of order")
        return snap


def empty(buckets: int, table_version: int = 0) -> Snapshot:
    """The state before any compaction: nothing covered (snapshot number 0, never stored)."""
    return Snapshot(0, table_version, 0, "", tuple(BucketState(b) for b in range(buckets)))
