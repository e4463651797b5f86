"""flussfs behind the suite's Peer interface, through its public API only.

Tables have 4 buckets (the default). append() reports the commit races its bucket logs lost
and retried; tailing uses subscribe() itself (the streaming workload drives the real iterator,
with its own poll schedule, rather than tail_poll).
"""
from __future__ import annotations

import pyarrow as pa

import flussfs

from . import Peer


class FlussfsPeer(Peer):
    name = "flussfs"

    def __init__(self, store, table):
        super().__init__(store, table)
        self._table = None

    @property
    def handle(self) -> flussfs.Table:
        if self._table is None:
            self._table = flussfs.open_table(self.uri, storage_options=self.store.fsspec_options())
        return self._table

    def create(self, schema: pa.Schema, key: str | None = None) -> None:
        if key is not None:
            schema = _key_not_null(schema, key)
        self._table = flussfs.create_table(self.uri, schema, primary_key=[key] if key else None,
                                           storage_options=self.store.fsspec_options())

    def append(self, rows: pa.Table) -> int:
        before = self._conflicts()
        self.handle.append(rows)
        return self._conflicts() - before

    def _conflicts(self) -> int:
        return sum(log.conflicts for log in self.handle.logs)

    def upsert(self, rows: pa.Table) -> None:
        self.handle.upsert(rows)

    def compact(self) -> None:
        import compactor
        compactor.compact(self.uri, storage_options=self.store.fsspec_options())

    def scan(self, columns=None) -> pa.Table:
        return self.handle.scan(columns=columns).to_arrow()

    def lookup(self, value) -> pa.Table:
        key = self.handle.primary_key[0]
        return self.handle.lookup(pa.table({key: pa.array([value], self.handle.schema.field(key).type)}))

    def tail_start(self):
        return self.handle.end_offsets()

    def tail_poll(self, position):
        batches = list(self.handle.subscribe(start=position, idle_timeout=0))
        if not batches:
            return None, position
        rows = pa.Table.from_batches(batches)
        moved = dict(position)
        for bucket, offset in zip(rows["_bucket"].to_pylist(), rows["_offset"].to_pylist()):
            moved[bucket] = max(moved[bucket], offset + 1)
        return rows.drop_columns([c for c in rows.column_names if c.startswith("_")]), moved

    def close(self) -> None:
        if self._table is not None:
            self._table.close()


def _key_not_null(schema: pa.Schema, key: str) -> pa.Schema:
    i = schema.get_field_index(key)
    return schema.set(i, schema.field(i).with_nullable(False))
