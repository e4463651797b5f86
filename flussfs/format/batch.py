"""Batch receipts: the claim and the done marker of an exactly-once batch
(format_spec/spec-v1.md, "Batches").

A claim is put-if-absent before any draft of the batch is committed and records each bucket's
head at that moment (-1 for an empty bucket): a lower bound on the number any attempt of the
batch can commit at. A done marker is put-if-absent after every bucket of the batch committed
and records where.

Invariants: both are block-container objects (CRC-checked footer) whose `writer_id` equals the
one in their key; bucket numbers in them are JSON object keys (decimal strings).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CorruptObjectError
from . import block

CLAIM_KIND = "batch_claim"
DONE_KIND = "batch_done"


@dataclass(frozen=True)
class Claim:
    writer_id: str
    batch_id: str
    heads: dict          # bucket -> head commit number when claimed (-1: empty bucket)
    created_ms: int

    def to_bytes(self) -> bytes:
        return block.encode({"format_version": block.FORMAT_VERSION, "kind": CLAIM_KIND,
                             "writer_id": self.writer_id, "batch_id": self.batch_id,
                             "heads": {str(b): n for b, n in sorted(self.heads.items())},
                             "created_ms": self.created_ms})

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "Claim":
        f = block.decode_object(data, name, CLAIM_KIND, "a batch claim")
        try:
            return cls(f["writer_id"], f["batch_id"], _buckets(f["heads"]), f["created_ms"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptObjectError(f"{name}: batch claim lacks or mangles {e}") from None


@dataclass(frozen=True)
class Done:
    writer_id: str
    batch_id: str
    end_offsets: dict    # bucket -> end offset of the batch's commit there
    numbers: dict        # bucket -> the batch's commit number there

    def to_bytes(self) -> bytes:
        return block.encode({"format_version": block.FORMAT_VERSION, "kind": DONE_KIND,
                             "writer_id": self.writer_id, "batch_id": self.batch_id,
                             "end_offsets": {str(b): o for b, o in sorted(self.end_offsets.items())},
                             "numbers": {str(b): n for b, n in sorted(self.numbers.items())}})

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "Done":
        f = block.decode_object(data, name, DONE_KIND, "a batch done marker")
        try:
            return cls(f["writer_id"], f["batch_id"], _buckets(f["end_offsets"]),
                       _buckets(f["numbers"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptObjectError(f"{name}: batch done marker lacks or mangles {e}") from None


def _buckets(mapping: dict) -> dict:
    out = {int(b): int(v) for b, v in mapping.items()}
    if any(b < 0 for b in out):
        raise ValueError("a negative bucket")
    return out
