"""subscribe(changelog="full"): the compactor's changelog, with before-images
(format_spec/spec-v1.md, section 20.5; ../shared/API.md, `subscribe`).

Each snapshot manifest names, per bucket it compacted, the changelog piece for the offsets it
added: `+I`, `-U`/`+U` pairs and `-D`, in offset order. This subscriber follows the snapshot
manifests (one LIST per poll, whatever the number of buckets) and yields those pieces' rows. It
holds no table state; the price is latency: changes appear once a compaction covers them.

Invariants: within a bucket, rows come in offset order (a `-U` just before its `+U`), each once,
from the start offset on; pieces of snapshots that retention has already expired are gone, so
"earliest" starts at the oldest retained one.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from . import parquet, paths, snapshots
from .changelog import SYSTEM_FIELDS
from .errors import NotFoundError


class SnapshotChangelog:
    """Reads changelog pieces as compactions publish them."""

    def __init__(self, table, columns: list[str], skip_to: dict[int, int], since_ms: int | None = None,
                 buckets=None):
        self.table, self.columns = table, list(columns)
        key = set(table.primary_key)
        self.schema = pa.schema([table.schema.field(c).with_nullable(c not in key) for c in columns]
                                + SYSTEM_FIELDS)
        self.skip_to, self.since_ms, self.last = dict(skip_to), since_ms, 0
        self.buckets = None if buckets is None else set(buckets)  # None: every bucket

    def poll(self) -> list[pa.RecordBatch]:
        store, out = self.table.store, []
        after = paths.snapshot(self.last) if self.last else None
        for info in list(store.list(paths.SNAPSHOTS_DIR, start_after=after)):
            number = paths.parse_number(info.key)
            try:
                snap = snapshots.load(store, number)
            except NotFoundError:  # expired between the LIST and the GET
                continue
            for state in snap.buckets:
                if self.buckets is not None and state.bucket not in self.buckets:
                    continue
                piece = state.changelog
                if piece is not None and piece.epoch == number:
                    out += self._rows(state.bucket, piece)
                self.skip_to[state.bucket] = max(self.skip_to.get(state.bucket, 0), state.offset)
            self.last = number
        return out

    def _rows(self, bucket: int, piece) -> list[pa.RecordBatch]:
        rows = parquet.read(self.table.store, piece.key)
        keep = pc.greater_equal(rows.column("_offset"), self.skip_to.get(bucket, 0))
        if self.since_ms is not None:
            since = pa.scalar(self.since_ms, pa.timestamp("ms", tz="UTC"))
            keep = pc.and_(keep, pc.greater_equal(rows.column("_timestamp"), since))
        rows = rows.filter(keep)
        if rows.num_rows == 0:
            return []
        user = parquet.from_snapshot(rows, self.table.metadata, self.columns)
        n = rows.num_rows
        columns = list(user.columns) + [pa.repeat(pa.scalar(bucket, pa.int32()), n),
                                        rows.column("_offset"), rows.column("_timestamp"),
                                        rows.column("_change_type")]
        return pa.Table.from_arrays(columns, schema=self.schema).to_batches()
