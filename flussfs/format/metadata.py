"""Table metadata (format_spec/spec-v1.md, "Table metadata").

One immutable object per version, `_flussfs/table/<version>.meta`, version 0 written by
create_table with put-if-absent. Invariants: field ids are unique and positive; key columns
exist and are non-nullable; 1 <= buckets <= BUCKETS_MAX.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from ..errors import CorruptObjectError
from . import block
from .types import decode_schema, encode_schema

KIND = "table_metadata"
CHECKPOINT_INTERVAL_DEFAULT = 32


@dataclass(frozen=True)
class TableMetadata:
    version: int
    table_uuid: str
    schema: pa.Schema
    field_ids: tuple[int, ...]
    primary_key: tuple[str, ...] | None = None
    bucket_key: tuple[str, ...] | None = None
    buckets: int = 4
    merge_engine: dict | None = None
    checkpoint_interval: int = CHECKPOINT_INTERVAL_DEFAULT
    created_ms: int = 0
    properties: dict = field(default_factory=dict)
    schema_id: int = 0

    @property
    def bucket_function(self) -> str:
        return "round_robin" if not self.bucket_key else "iceberg_murmur3"

    def field_id(self, name: str) -> int:
        return self.field_ids[self.schema.get_field_index(name)]

    def to_bytes(self) -> bytes:
        fields = encode_schema(self.schema)
        for f, fid in zip(fields, self.field_ids):
            f["id"] = fid
        return block.encode({
            "format_version": block.FORMAT_VERSION, "kind": KIND, "version": self.version,
            "table_uuid": self.table_uuid, "created_ms": self.created_ms,
            "schema": {"schema_id": self.schema_id, "fields": fields},
            "last_field_id": max(self.field_ids, default=0),
            "primary_key": list(self.primary_key) if self.primary_key else None,
            "bucket_key": list(self.bucket_key) if self.bucket_key else None,
            "buckets": self.buckets, "bucket_function": self.bucket_function,
            "merge_engine": self.merge_engine, "checkpoint_interval": self.checkpoint_interval,
            "properties": dict(self.properties)})

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> "TableMetadata":
        f = block.decode_object(data, name, KIND, "table metadata")
        try:
            fields = f["schema"]["fields"]
            return cls(version=f["version"], table_uuid=f["table_uuid"],
                       schema=decode_schema(fields), field_ids=tuple(x["id"] for x in fields),
                       primary_key=tuple(f["primary_key"]) if f["primary_key"] else None,
                       bucket_key=tuple(f["bucket_key"]) if f["bucket_key"] else None,
                       buckets=f["buckets"], merge_engine=f["merge_engine"],
                       checkpoint_interval=f["checkpoint_interval"], created_ms=f["created_ms"],
                       properties=f.get("properties", {}), schema_id=f["schema"]["schema_id"])
        except (KeyError, TypeError) as e:
            raise CorruptObjectError(f"{name}: table metadata lacks {e}") from None
