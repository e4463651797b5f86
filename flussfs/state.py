"""The latest state of a primary-key table: every bucket's changes read and merged
(format_spec/spec-v1.md, "Reading a primary-key table").

A read fixes each bucket's head first (one LIST per bucket), so it sees every commit that was
acknowledged before it started; then it reads the commits of all buckets concurrently (each
commit one GET, cached by the table since commits are immutable; referenced segments by ranged
GETs of the needed columns), skips parts a key filter rules out, and merges each bucket on its
own (keys never span buckets).

Invariants: a bucket's changes are merged in offset order; the columns a merge needs (key,
version column) are always read, whatever was projected.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import merge, paths, snapshots
from .engines import from_json
from .errors import CorruptObjectError
from .io import parallel, parallel_iter
from .merge import Changes
from .reader import read_change_parts

READ_AHEAD_COMMITS = 64


class BucketReader:
    """Reads change rows of chosen buckets of a primary-key table, over chosen columns."""

    def __init__(self, table, columns: list[str]):
        meta = table.metadata
        self.table, self.key = table, list(meta.primary_key)
        self.engine = from_json(meta.merge_engine, table.name)
        wanted = set(columns) | set(merge.required_columns(self.key, self.engine))
        self.names = [n for n in meta.schema.names if n in wanted]
        self.fields = [(meta.field_id(n), meta.schema.field(n)) for n in self.names]
        self.schema = pa.schema([f for _, f in self.fields])
        self.key_ids = {meta.field_id(k) for k in self.key}

    def refs(self, buckets) -> list[tuple[int, int]]:
        """(bucket, commit number) of every commit of `buckets` past the current snapshot, as of
        now (the snapshot and the heads are found concurrently; a snapshot covers a prefix of
        each log, so whichever is newer, snapshot plus later commits is a state the table had)."""
        logs, buckets = self.table.logs, list(buckets)
        found = parallel(lambda b: self.table.snapshot() if b is None else logs[b].head(),
                         [None] + buckets)
        return self.refs_from(found[0], found[1:], buckets)

    def refs_from(self, snapshot, heads, buckets) -> list[tuple[int, int]]:
        """refs() from a snapshot and the heads of `buckets` found (concurrently) by the caller."""
        self.snapshot = snapshot
        return [(b, n) for b, h in zip(buckets, heads) if h is not None
                for n in range(snapshot.bucket(b).commit + 1, h.number + 1)]

    def base(self, buckets, keys: dict | None = None, changes: dict | None = None,
             snapshot=None) -> dict:
        """bucket -> the live rows the snapshot (found by refs(), or `snapshot`) holds, columns
        `names`; with `keys` (bucket -> table of keys), only those keys' rows. With `changes`
        (bucket -> Changes read after the snapshot), a bucket's rows come as a pair: (rows of
        keys no change touches, rows of keys one does), split in the same pass that drops
        deletes."""
        t, snap = self.table, snapshot or self.snapshot
        wanted = [b for b in buckets if snap.bucket(b).files]
        threads = len(wanted) < 2  # else buckets decode in parallel, each on one thread

        def one(b):
            if changes is not None and b in changes:
                return snapshots.live_rows_split(t.store, t.uri, t.metadata, snap.bucket(b),
                                                 self.names, changes[b].rows.select(self.key),
                                                 threads)
            return snapshots.live_rows(t.store, t.uri, t.metadata, snap.bucket(b), self.names,
                                       keys.get(b) if keys else None, threads)
        return dict(zip(wanted, parallel(one, wanted)))

    def read(self, refs, part_filter=None, key_mask=None) -> dict[int, Changes]:
        """bucket -> its change rows (offset order) from the commits `refs`; `part_filter(bucket,
        part)` may skip parts, `key_mask(bucket, keys)` keeps only some keys' rows (reading
        the other columns only of parts that hold any)."""
        def one(ref):
            bucket, number = ref
            commit = self.table.logs[bucket].read_commit(number)
            if commit is None:  # below the head, and commits are never deleted
                raise CorruptObjectError(f"{paths.commit(bucket, number)} is missing below "
                                         f"bucket {bucket}'s head")
            keep = (lambda part: part_filter(bucket, part)) if part_filter else None
            mask = (lambda keys: key_mask(bucket, keys)) if key_mask else None
            return bucket, [p for p in read_change_parts(self.table.store, commit, self.fields,
                                                         self.key_ids, keep, mask) if p is not None]

        by_bucket: dict[int, list[Changes]] = {}
        for bucket, parts in parallel_iter(one, refs, READ_AHEAD_COMMITS):
            by_bucket.setdefault(bucket, []).extend(parts)
        return {b: Changes.concat(parts, self.schema) for b, parts in by_bucket.items()}

    def latest(self, changes: dict[int, Changes], base: dict | None = None) -> list[pa.Table]:
        """The live rows of each bucket read (snapshot rows `base`, as base() gives them, and
        later `changes`), merged concurrently (Arrow sorts release the GIL)."""
        base = base or {}
        buckets = sorted(set(changes) | set(base))
        return parallel(lambda b: self._merged(base.get(b), changes.get(b)), buckets)

    def _merged(self, base, changes: Changes | None) -> pa.Table:
        """Snapshot rows with later changes applied: only the keys that changed are merged.
        `base` is a table, or a pair (untouched rows, touched rows) from base(changes=...)."""
        if changes is None:
            return base
        if base is None or (not isinstance(base, tuple) and base.num_rows == 0):
            return merge.latest(changes, self.key, self.engine)
        if isinstance(base, tuple):
            rest, old = base
        else:
            touched = key_mask(base, changes.rows, self.key)
            rest, old = base.filter(pa.array(~touched)), base.filter(pa.array(touched))
        before = Changes(old, np.zeros(old.num_rows, bool))
        merged = merge.latest(Changes.concat([before, changes], self.schema), self.key, self.engine)
        return pa.concat_tables([rest, merged])


def changes_of_commits(reader: BucketReader, commits) -> tuple[Changes, np.ndarray, np.ndarray]:
    """The change rows of consecutive commits of one bucket (read concurrently), with each
    row's offset and commit timestamp."""
    store = reader.table.store
    parts = parallel(lambda c: read_change_parts(store, c, reader.fields, reader.key_ids), commits)
    offsets = [np.arange(c.base_offset, c.end_offset, dtype=np.int64) for c in commits]
    times = [np.full(c.record_count, c.timestamp_ms, np.int64) for c in commits]
    return (Changes.concat([p for ps in parts for p in ps], reader.schema),
            np.concatenate(offsets or [np.zeros(0, np.int64)]),
            np.concatenate(times or [np.zeros(0, np.int64)]))


def key_mask(rows: pa.Table, keys: pa.Table, names: list[str]) -> np.ndarray:
    """Which of `rows` have a key that occurs in `keys` (both hold the columns `names`)."""
    if rows.num_rows == 0 or keys.num_rows == 0:
        return np.zeros(rows.num_rows, bool)
    if len(names) == 1:
        column = rows.column(names[0])
        if pa.types.is_integer(column.type):
            mask = _sorted_int_mask(column.to_numpy(), keys.column(names[0]).to_numpy())
            if mask is not None:
                return mask
        return pc.is_in(column, value_set=keys.column(names[0]).combine_chunks()
                        ).to_numpy(zero_copy_only=False)
    numbered = rows.select(names).append_column("__row", pa.array(np.arange(rows.num_rows)))
    hits = numbered.join(keys.select(names), keys=names, join_type="left semi").column("__row")
    mask = np.zeros(rows.num_rows, bool)
    mask[hits.to_numpy()] = True
    return mask


def _sorted_int_mask(have: np.ndarray, want: np.ndarray) -> np.ndarray | None:
    """key_mask by binary search when `have` is sorted (snapshot files are sorted by key),
    else None. Equal runs in `have` are all marked."""
    if not np.all(have[1:] >= have[:-1]):
        return None
    lo = np.searchsorted(have, want, "left")
    hi = np.searchsorted(have, want, "right")
    found = hi > lo
    lo, hi = lo[found], hi[found]
    mask = np.zeros(len(have), bool)
    if len(lo) and np.all(hi - lo == 1):
        mask[lo] = True
    else:
        for a, b in zip(lo, hi):
            mask[a:b] = True
    return mask
