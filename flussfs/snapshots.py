"""Reading snapshots (format_spec/spec-v1.md, section 20): which snapshot is current, and the
live rows a bucket's snapshot files hold.

The current snapshot is the highest-numbered manifest under `_flussfs/snapshots/` (one LIST,
one GET). A bucket's live rows are its data files' rows minus the positions its delete file
names; a key filter reads only the row groups whose key statistics may hold an asked key.

Invariants: snapshot manifests are immutable and numbered contiguously from 1; a bucket's live
rows hold each key at most once (primary-key tables); rows come back as the table's own types.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import parquet, paths
from .errors import CorruptObjectError
from .format.snapshot import BucketState, Snapshot, empty


def latest_number(store) -> int:
    """The number of the current snapshot (0: never compacted)."""
    last = None
    for info in store.list(paths.SNAPSHOTS_DIR):
        last = info.key
    return 0 if last is None else paths.parse_number(last)


def load(store, number: int, buckets: int | None = None) -> Snapshot:
    """Snapshot `number`, checked against its key (and the table's bucket count, if given)."""
    key = paths.snapshot(number)
    snap = Snapshot.from_bytes(store.get(key), key)
    if snap.number != number or (buckets is not None and len(snap.buckets) != buckets):
        raise CorruptObjectError(f"{key}: holds snapshot {snap.number} of {len(snap.buckets)} "
                                 f"buckets, expected snapshot {number}"
                                 + (f" of {buckets}" if buckets is not None else ""))
    return snap


def current(store, buckets: int) -> Snapshot:
    """The current snapshot, or the empty one (number 0) if the table was never compacted."""
    n = latest_number(store)
    return load(store, n, buckets) if n else empty(buckets)


def deleted_positions(store, uri: str, state: BucketState) -> dict[str, np.ndarray]:
    """Data file key -> sorted positions its bucket's delete file removes. Delete files name
    data files by absolute location (Iceberg's rule); they are matched by the table-relative key
    the location ends with, so a table that was moved or copied still reads."""
    if state.deletes is None:
        return {}
    rows = parquet.read(store, state.deletes.key)
    out = {}
    paths_col = rows.column("file_path")
    for loc in pc.unique(paths_col).to_pylist():
        match = [f.key for f in state.files if loc == f.key or loc.endswith("/" + f.key)]
        if not match:
            raise CorruptObjectError(f"{state.deletes.key}: deletes rows of {loc}, which is not a "
                                     f"live file of bucket {state.bucket}")
        pos = rows.filter(pc.equal(paths_col, loc)).column("pos").to_numpy()
        out[match[0]] = np.sort(pos)
    return out


def live_rows(store, uri: str, meta, state: BucketState, names: list[str],
              keys: pa.Table | None = None) -> pa.Table:
    """The live rows of a bucket's snapshot files, columns `names` (table types). With `keys`
    (a table of primary-key columns), only rows of those keys, reading only row groups whose key
    statistics may hold one."""
    schema = pa.schema([meta.schema.field(n) for n in names])
    if not state.files:
        return schema.empty_table()
    deleted = deleted_positions(store, uri, state)
    tables = [_file_rows(store, meta, f, names, deleted.get(f.key), keys) for f in state.files]
    return pa.concat_tables([t for t in tables if t.num_rows] or [schema.empty_table()])


def _file_rows(store, meta, ref, names, deleted, keys) -> pa.Table:
    pf = parquet.open_file(store, ref.key, ref.size)
    groups = _row_groups(pf, meta, keys)
    starts = np.r_[0, np.cumsum([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])]
    if not groups:
        return pa.schema([meta.schema.field(n) for n in names]).empty_table()
    with parquet.reading(ref.key):
        rows = pf.read_row_groups(groups, columns=names)
    positions = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
    keep = np.ones(len(positions), bool)
    if deleted is not None and len(deleted):
        keep &= ~np.isin(positions, deleted, assume_unique=True)
    if keys is not None:
        from .state import key_mask
        keep &= key_mask(rows, keys, list(meta.primary_key))
    if not keep.all():
        rows = rows.filter(pa.array(keep))
    return parquet.from_snapshot(rows, meta, names)


def _row_groups(pf, meta, keys) -> list[int]:
    """Row groups that may hold one of `keys` (all of them without keys or statistics)."""
    everything = list(range(pf.num_row_groups))
    if keys is None or len(meta.primary_key) != 1:
        return everything
    name = meta.primary_key[0]
    column = pf.schema_arrow.get_field_index(name)
    wanted = keys.column(name).cast(pf.schema_arrow.field(name).type)
    out = []
    for g in everything:
        stats = pf.metadata.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max:
            out.append(g)
            continue
        inside = pc.and_(pc.greater_equal(wanted, stats.min), pc.less_equal(wanted, stats.max))
        if pc.any(inside).as_py():
            out.append(g)
    return out
