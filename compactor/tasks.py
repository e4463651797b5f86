"""One compaction task per bucket (format_spec/spec-v1.md, section 20.4): read the bucket's new
commits, merge them into its snapshot files, write the Parquet files of the next snapshot.

A task writes only new, uniquely named objects (its epoch and its compactor's token are in every
key) and commits nothing: the job commits all buckets at once by putting the snapshot manifest.
So a task that crashes, or whose compaction loses the race, leaves only orphans.

Primary-key buckets are merge-on-read: the rows of keys that changed are written to a new data
file and their old positions to the bucket's delete file, so the cost grows with the keys that
changed, not with the bucket; the bucket is rewritten whole (one sorted run, no deletes) once
deleted rows pass DELETED_FRACTION_MAX of its rows or it has FILES_MAX data files.
Log buckets append one file of the new rows per task, merging small trailing files.

Invariants: a bucket's state after a task covers exactly commits 0..task.head; live rows hold
each key once; every data file of a primary-key table is sorted by key.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cloudpickle
import numpy as np
import pyarrow as pa

import flussfs
from flussfs import merge, parquet, paths, snapshots
from flussfs.format.snapshot import BucketState, FileRef
from flussfs.io import parallel
from flussfs.merge import Changes
from flussfs.reader import read_commit_rows
from flussfs.state import BucketReader, changes_of_commits, key_mask

from .changelog import changelog_rows

DELETED_FRACTION_MAX = 0.25     # rewrite a bucket once this share of its file rows is deleted
FILES_MAX = 8                   # ... or once it has this many data files below FILE_ROWS_MAX / 2
FILE_ROWS_MAX = 4_000_000       # rows per data file written by a rewrite
LOG_FILES_MAX = 16              # log buckets: merge trailing small files past this count
LOG_SMALL_ROWS = 256 * 1024     # ... "small" meaning fewer rows than this


@dataclass(frozen=True)
class BucketTask:
    uri: str
    storage_options: dict | None
    bucket: int
    epoch: int
    token: str
    base: BucketState
    head: int                   # the last commit number this task covers
    changelog: bool = True


@dataclass
class BucketResult:
    state: BucketState
    removed: tuple[str, ...] = ()
    stats: dict = field(default_factory=dict)


# Every global a pickled BucketTask names: all a fan-out worker lets a task's payload build.
TASK_GLOBALS = frozenset((c.__module__, c.__qualname__) for c in (BucketTask, BucketState, FileRef))


def run_pickled(payload: bytes, loads=cloudpickle.loads) -> bytes:
    """The executor entry point: tasks and results travel as cloudpickle bytes (`loads` reads
    the task; a fan-out worker passes one that accepts nothing but TASK_GLOBALS)."""
    return cloudpickle.dumps(run(loads(payload)))


def run(task: BucketTask, table=None) -> BucketResult:
    """Run a task on `table` (an open handle in-process) or on a handle of its own."""
    if table is not None:
        return _work(table, task)
    table = flussfs.open_table(task.uri, storage_options=task.storage_options)
    try:
        return _work(table, task)
    finally:
        table.close()


def _work(table, task: BucketTask) -> BucketResult:
    return (_PrimaryKeyBucket if table.primary_key else _LogBucket)(table, task).run()


class _Bucket:
    def __init__(self, table, task: BucketTask):
        self.table, self.task, self.meta, self.store = table, task, table.metadata, table.store
        self.base, self.b = task.base, task.bucket
        self.written: list[FileRef] = []
        self.stats = {"bucket": task.bucket, "commits": task.head - task.base.commit,
                      "changes": 0, "rows_written": 0, "bytes_written": 0, "rewritten": False}

    def commits(self):
        log = self.table.logs[self.b]
        numbers = range(self.base.commit + 1, self.task.head + 1)
        commits = parallel(log.read_commit, numbers)
        for n, c in zip(numbers, commits):
            if c is None:
                raise flussfs.CorruptObjectError(f"{paths.commit(self.b, n)} is missing below bucket "
                                                 f"{self.b}'s head")
        return commits

    def write(self, rows: pa.Table, name: str, sort_key=None, first_offset=None, key=None) -> FileRef:
        data, _ = parquet.encode(rows, sort_key)
        key = key or paths.data_file(self.b, self.task.epoch, self.task.token, name)
        self.store.put_if_absent(key, data)   # the key is ours alone; EXISTS means a retry of ours
        ref = FileRef(key, rows.num_rows, len(data), self.task.epoch, first_offset)
        self.written.append(ref)
        self.stats["rows_written"] += rows.num_rows
        self.stats["bytes_written"] += len(data)
        return ref

    def end_offset(self, commits) -> int:
        return commits[-1].end_offset if commits else self.base.offset


class _PrimaryKeyBucket(_Bucket):
    def run(self) -> BucketResult:
        meta = self.meta
        self.key = list(meta.primary_key)
        reader = BucketReader(self.table, meta.schema.names)
        commits = self.commits()
        changes, offsets, times = changes_of_commits(reader, commits)
        self.stats["changes"] = changes.rows.num_rows
        touched = changes.rows.select(self.key).group_by(self.key).aggregate([])
        self.deleted = snapshots.deleted_positions(self.store, self.base)
        # Old values matter only to a changelog's before-images and to engines or partial updates
        # that fold them in; a last_row table given whole rows needs only their positions.
        values = self.task.changelog or reader.engine != "last_row" or changes.present is not None
        old, hits = self._old_rows(touched, values)
        before = Changes(old, np.zeros(old.num_rows, bool))
        images = merge.images(Changes.concat([before, changes], reader.schema), self.key, reader.engine)
        latest = images.rows.filter(pa.array(images.last & images.exists))
        changelog = None
        if self.task.changelog:
            changelog = self._changelog(images, old.num_rows, changes, offsets, times)
        files, deletes = self._files(latest, hits)
        state = BucketState(self.b, self.task.head, self.end_offset(commits), files, deletes, changelog)
        removed = tuple(sorted(self.base.keys() - state.keys()))
        return BucketResult(state, removed, self.stats)

    def _old_rows(self, touched: pa.Table, values: bool = True) -> tuple[pa.Table, dict[str, np.ndarray]]:
        """The live snapshot rows of the keys that changed (none unless `values`), and file key
        -> their positions."""
        found, hits = [], {}
        for ref in self.base.files:
            pf = parquet.open_file(self.store, ref.key, ref.size)
            with parquet.reading(ref.key):
                keys = parquet.from_snapshot(pf.read(columns=self.key), self.meta, self.key)
            mask = key_mask(keys, touched, self.key)
            gone = self.deleted.get(ref.key)
            if gone is not None and len(gone):
                mask[gone] = False
            positions = np.flatnonzero(mask)
            if not len(positions):
                continue
            hits[ref.key] = positions
            if not values:
                continue
            with parquet.reading(ref.key):
                found.append(_rows_at(pf, positions, self.meta))
        empty = self.meta.schema.empty_table()
        return (pa.concat_tables(found) if found else empty), hits

    def _files(self, latest: pa.Table, hits: dict) -> tuple[tuple[FileRef, ...], FileRef | None]:
        """The bucket's data files and delete file after this task."""
        files = self.base.files
        deleted_before = sum(f.deleted for f in files)
        deleted_now = deleted_before + sum(len(p) for p in hits.values())
        rows = sum(f.rows for f in files)
        deltas = sum(f.rows < FILE_ROWS_MAX // 2 for f in files)  # a rewrite's full files never count
        if files and (deleted_now > DELETED_FRACTION_MAX * rows or deltas >= FILES_MAX):
            return self._rewrite(latest, hits), None
        out = [replace(f, deleted=f.deleted + len(hits.get(f.key, ()))) for f in files]
        if latest.num_rows:
            out.append(self.write(self._sorted(latest), "data-0", self.key))
        deletes = self.base.deletes
        if hits:
            deletes = self._delete_file(hits)
        return tuple(out), deletes

    def _rewrite(self, latest: pa.Table, hits: dict) -> tuple[FileRef, ...]:
        """One sorted run of every live row (split by FILE_ROWS_MAX), no deletes."""
        self.stats["rewritten"] = True
        kept = [latest]
        for ref in self.base.files:
            rows = parquet.read(self.store, ref.key)
            drop = np.zeros(rows.num_rows, bool)
            for positions in (self.deleted.get(ref.key), hits.get(ref.key)):
                if positions is not None:
                    drop[positions] = True
            kept.append(parquet.from_snapshot(rows.filter(pa.array(~drop)), self.meta,
                                              self.meta.schema.names))
        rows = self._sorted(pa.concat_tables(kept))
        return tuple(self.write(rows.slice(i, FILE_ROWS_MAX), f"data-{i // FILE_ROWS_MAX:05d}", self.key)
                     for i in range(0, max(rows.num_rows, 1), FILE_ROWS_MAX) if rows.num_rows)

    def _delete_file(self, hits: dict) -> FileRef:
        """The bucket's delete file: the previous one's positions and the new ones."""
        locations, positions = [], []
        # Iceberg wants position deletes sorted by file_path, then pos.
        for ref in sorted(self.base.files, key=lambda f: parquet.location(self.task.uri, f.key)):
            pos = [p for p in (self.deleted.get(ref.key), hits.get(ref.key)) if p is not None]
            if pos:
                merged = np.unique(np.concatenate(pos))
                locations.append(np.full(len(merged), parquet.location(self.task.uri, ref.key), object))
                positions.append(merged)
        rows = pa.table([pa.array(np.concatenate(locations), pa.string()),
                         pa.array(np.concatenate(positions), pa.int64())],
                        schema=parquet.POSITION_DELETE_SCHEMA)
        return self.write(rows, "deletes")

    def _sorted(self, rows: pa.Table) -> pa.Table:
        return parquet.to_snapshot(rows.sort_by([(k, "ascending") for k in self.key]), self.meta)

    def _changelog(self, images, before: int, changes, offsets, times) -> FileRef | None:
        rows = changelog_rows(images, before, changes.deletes, offsets, times, self.meta)
        if rows.num_rows == 0:
            return None
        key = paths.changelog_piece(self.b, int(offsets[0]), self.task.epoch, self.task.token)
        return self.write(rows, "changelog", first_offset=int(offsets[0]), key=key)


def _rows_at(pf, positions: np.ndarray, meta) -> pa.Table:
    """The rows of a Parquet file at sorted `positions` (reading only row groups holding any)."""
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    starts = np.r_[0, np.cumsum(sizes)]
    groups = np.unique(np.searchsorted(starts, positions, side="right") - 1)
    rows = pf.read_row_groups(groups.tolist())
    base = np.r_[0, np.cumsum([sizes[g] for g in groups])]
    local = np.empty(len(positions), np.int64)
    for i, g in enumerate(groups):
        inside = (positions >= starts[g]) & (positions < starts[g + 1])
        local[inside] = positions[inside] - starts[g] + base[i]
    return parquet.from_snapshot(rows.take(pa.array(local)), meta, meta.schema.names)


class _LogBucket(_Bucket):
    def run(self) -> BucketResult:
        meta = self.meta
        fields = [(meta.field_id(n), meta.schema.field(n)) for n in meta.schema.names]
        commits = self.commits()
        batches = [b for c in commits for b in read_commit_rows(self.store, c, fields) if b is not None]
        rows = pa.Table.from_batches(batches, schema=meta.schema)
        self.stats["changes"] = rows.num_rows
        files = self._append(list(self.base.files), rows)
        state = BucketState(self.b, self.task.head, self.end_offset(commits), tuple(files))
        removed = tuple(sorted(self.base.keys() - state.keys()))
        return BucketResult(state, removed, self.stats)

    def _append(self, files: list[FileRef], rows: pa.Table) -> list[FileRef]:
        """The files with the new rows appended; past LOG_FILES_MAX files, the trailing run of
        small ones and the new rows become one file."""
        if rows.num_rows == 0:
            return files
        start = len(files)
        if len(files) + 1 > LOG_FILES_MAX:
            while start > 0 and files[start - 1].rows < LOG_SMALL_ROWS:
                start -= 1
        first = files[start].first_offset if start < len(files) else self.base.offset
        merged = [parquet.read(self.store, f.key) for f in files[start:]]
        self.stats["rewritten"] = bool(merged)
        new = parquet.to_snapshot(rows, self.meta)
        written = self.write(pa.concat_tables(merged + [new]), "data-0", first_offset=first)
        return files[:start] + [written]
