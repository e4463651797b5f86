"""Checkpoints and the checkpoint hint (format_spec/spec-v1.md, "Checkpoints").

Commits of a bucket fall into intervals of `checkpoint_interval` (K) commits: interval i holds
commits [i*K, (i+1)*K). Checkpoint i is written after commit (i+1)*K - 1 and is named by that
number. It holds the base offsets and timestamps of every commit of its interval, and the
history of every interval up to and including it (last commit number, end offset, timestamp),
so that one or two GETs map an offset or a time to a commit number.

Invariants: history numbers increase by K from K-1; end offsets and timestamps never decrease;
the interval's entries are exactly K.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CorruptObjectError
from . import block

KIND = "checkpoint"
HINT_KIND = "checkpoint_hint"


@dataclass(frozen=True)
class Checkpoint:
    bucket: int
    number: int           # the last commit of the interval
    interval: int         # K
    base_offsets: tuple[int, ...]   # of commits number-K+1 .. number
    timestamps_ms: tuple[int, ...]
    end_offset: int       # offset after commit `number`
    history_end_offsets: tuple[int, ...]   # end offset after interval 0, 1, ..., this one
    history_timestamps_ms: tuple[int, ...]  # timestamp of the last commit of each interval

    @property
    def first_number(self) -> int:
        return self.number - self.interval + 1

    def to_bytes(self) -> bytes:
        assert len(self.base_offsets) == self.interval == len(self.timestamps_ms)
        assert (self.number + 1) % self.interval == 0
        assert len(self.history_end_offsets) == (self.number + 1) // self.interval
        return block.encode({
            "format_version": block.FORMAT_VERSION, "kind": KIND, "bucket": self.bucket,
            "number": self.number, "interval": self.interval, "end_offset": self.end_offset,
            "commits": {"base_offset": list(self.base_offsets),
                        "timestamp_ms": list(self.timestamps_ms)},
            "history": {"end_offset": list(self.history_end_offsets),
                        "timestamp_ms": list(self.history_timestamps_ms)}})

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "Checkpoint":
        f = block.decode_object(data, name, KIND, "a checkpoint")
        try:
            return cls(f["bucket"], f["number"], f["interval"], tuple(f["commits"]["base_offset"]),
                       tuple(f["commits"]["timestamp_ms"]), f["end_offset"],
                       tuple(f["history"]["end_offset"]), tuple(f["history"]["timestamp_ms"]))
        except (KeyError, TypeError) as e:
            raise CorruptObjectError(f"{name}: checkpoint lacks {e}") from None


def encode_hint(bucket: int, checkpoint_number: int) -> bytes:
    return block.encode({"format_version": block.FORMAT_VERSION, "kind": HINT_KIND,
                         "bucket": bucket, "checkpoint": checkpoint_number})


def decode_hint(data: bytes, name: str) -> int:
    f = block.decode_footer(data, name)
    if f.get("kind") != HINT_KIND or not isinstance(f.get("checkpoint"), int):
        raise CorruptObjectError(f"{name}: not a checkpoint hint")
    return f["checkpoint"]
