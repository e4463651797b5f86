"""The change stream of a primary-key table, as subscribe yields it (../shared/API.md,
`subscribe`; format_spec/spec-v1.md, section 19.8).

One output row per change record, at the record's offset, so offsets stay contiguous:
- "images" (the default): an upsert yields the key's whole row after it (every merge engine and
  partial update applied), `+I` if the key was not live before it, else `+U`; a delete yields
  `-D` with the row it removed (the key and nulls if the key was not live). Replaying the stream
  (+I/+U set the row, -D removes the key) gives exactly scan(). The subscriber keeps the live
  rows of its buckets (the projected columns) to do this: memory grows with the table's live
  keys, and starting anywhere but "earliest" first merges the bucket up to the start.
- "raw": the records as written: `+U` with the columns the upsert gave (others null), `-D` with
  the key. No state; replay equals scan() only for whole-row last_row upserts.

Invariant: an emitted row's offset and timestamp are its record's.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import merge
from .errors import InvalidInputError
from .merge import Changes
from .state import BucketReader, changes_of_commits, key_mask

CHANGELOG_MODES = ("images", "raw", "full")  # "full": full_changelog.py
SYSTEM_FIELDS = [pa.field("_bucket", pa.int32(), nullable=False),
                 pa.field("_offset", pa.int64(), nullable=False),
                 pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
                 pa.field("_change_type", pa.string(), nullable=False)]


class BucketChangelog:
    """Turns one bucket's commits, in order, into change-stream batches."""

    def __init__(self, table, bucket: int, columns: list[str], mode: str, start_number: int):
        if mode not in CHANGELOG_MODES:
            raise InvalidInputError(f"subscribe to {table.name}: changelog must be one of "
                                    f"{CHANGELOG_MODES}, got {mode!r}")
        self.reader = BucketReader(table, columns)
        self.bucket, self.columns, self.mode = bucket, list(columns), mode
        self.key = list(table.metadata.primary_key)
        # A -D of a key that was not live (and a raw record) has nulls in non-key columns.
        self.schema = pa.schema([table.schema.field(c).with_nullable(c not in self.key)
                                 for c in columns] + SYSTEM_FIELDS)
        self._start_number = start_number
        self._state: pa.Table | None = None  # live rows after the last commit emitted

    def emit(self, commits: list, skip_to: int) -> list[pa.RecordBatch]:
        """The stream rows of `commits` (consecutive, this bucket's) at offsets >= skip_to."""
        if not commits:
            return []
        changes, offsets, times = changes_of_commits(self.reader, commits)
        if self.mode == "raw":
            rows, kinds = changes.rows, np.where(changes.deletes, "-D", "+U")
        else:
            rows, kinds = self._images(changes)
        wanted = offsets >= skip_to
        if not wanted.all():
            rows, kinds, offsets, times = (rows.filter(pa.array(wanted)), kinds[wanted],
                                           offsets[wanted], times[wanted])
        if rows.num_rows == 0:
            return []
        return [self._batch(rows, kinds, offsets, times)]

    def _images(self, changes: Changes) -> tuple[pa.Table, np.ndarray]:
        """Each record's row after it (an upsert) or the row it removed (a delete), and its
        change type; the state moves past the records."""
        state = self._load_state()
        touched = key_mask(state, changes.rows, self.key)
        old = state.filter(pa.array(touched))
        before = Changes(old, np.zeros(old.num_rows, bool))
        merged = Changes.concat([before, changes], self.reader.schema)
        images = merge.images(merged, self.key, self.reader.engine)
        self._state = pa.concat_tables([
            state.filter(pa.array(~touched)),
            images.rows.filter(pa.array(images.last & images.exists))]).combine_chunks()
        own = np.arange(before.rows.num_rows, merged.rows.num_rows)
        previous = images.previous[own]
        was_live = (previous >= 0) & images.exists[np.maximum(previous, 0)]
        deletes = changes.deletes
        source = np.where(deletes & was_live, previous, own)
        kinds = np.where(deletes, "-D", np.where(was_live, "+U", "+I"))
        return images.rows.take(pa.array(source)), kinds

    def _load_state(self) -> pa.Table:
        if self._state is None:
            load_states({self.bucket: self})
        return self._state


    def _batch(self, rows: pa.Table, kinds, offsets, times) -> pa.RecordBatch:
        n = rows.num_rows
        system = [pa.repeat(pa.scalar(self.bucket, pa.int32()), n), pa.array(offsets),
                  pa.array(times).cast(pa.timestamp("ms", tz="UTC")), pa.array(kinds, pa.string())]
        columns = [rows.column(c).combine_chunks() for c in self.columns]
        return pa.record_batch(columns + system, schema=self.schema)


def load_states(changelogs: dict[int, BucketChangelog]) -> None:
    """Merge each images-mode bucket's commits before its start into its state, reading every
    bucket's commits concurrently (call it from the subscriber's own thread, not the pool)."""
    waiting = {b: c for b, c in changelogs.items() if c.mode == "images" and c._state is None}
    if not waiting:
        return
    reader = next(iter(waiting.values())).reader
    refs = [(b, n) for b, c in waiting.items() for n in range(c._start_number)]
    changes = reader.read(refs)
    for b, c in waiting.items():
        c._state = (reader.schema.empty_table() if b not in changes
                    else merge.latest(changes[b], c.key, reader.engine))
