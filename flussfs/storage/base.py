"""The object-store protocol every flussfs component talks to (format_spec/spec-v1.md, "Storage").

Five operations: ranged get, put-if-absent, head, list with start-after, delete; plus a plain
overwriting put used only for advisory hints. Keys are '/'-separated and relative to the table
root. A conditional write has three outcomes and says which: CREATED, EXISTS (someone, maybe
an earlier retry of ours, holds the key) or it raises `CommitOutcomeUnknownError` (never clean
up after that: read back to learn what happened). Losing a race is a return value, not an error.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterator, Protocol

LIST_PAGE_KEYS_MAX = 1000  # S3's page size: one LIST request returns at most this many keys


class PutOutcome(enum.Enum):
    CREATED = "created"
    EXISTS = "exists"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float | None = None  # seconds since the epoch, as the store reports it


class Store(Protocol):
    url: str  # where the table root lives, for messages

    def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes [start, end) of `key` (the whole object by default). NotFoundError if missing."""

    def get_ranges(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Several [start, end) ranges of one object, fetched concurrently."""

    def put_if_absent(self, key: str, data: bytes) -> PutOutcome:
        """Create `key` only if it does not exist. CommitOutcomeUnknownError if the store did not say."""

    def put(self, key: str, data: bytes) -> None:
        """Create or overwrite `key`. Only for advisory objects (hints)."""

    def head(self, key: str) -> ObjectInfo | None:
        """Size and mtime of `key`, or None."""

    def list(self, prefix: str, start_after: str | None = None,
             limit: int | None = None) -> Iterator[ObjectInfo]:
        """Keys under `prefix` (which ends with '/', or is '' for every key), recursively, in
        lexicographic order, strictly after `start_after` when given."""

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
