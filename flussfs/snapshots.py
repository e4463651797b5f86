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
from .cache import derived
from .io import parallel
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


def deleted_positions(store, state: BucketState) -> dict[str, np.ndarray]:
    """Data file key -> sorted positions its bucket's delete file removes. Delete files name
    data files by absolute location (Iceberg's rule); they are matched by the table-relative key
    the location ends with, so a table that was moved or copied still reads."""
    if state.deletes is None:
        return {}
    return derived.get(store, "deletes", state.deletes.key, lambda: _positions(store, state),
                       lambda out: sum(p.nbytes for p in out.values()))


def _positions(store, state: BucketState) -> dict[str, np.ndarray]:
    rows = parquet.read(store, state.deletes.key)
    out = {}
    paths_col = rows.column("file_path")
    for loc in pc.unique(paths_col).to_pylist():
        match = [f.key for f in state.files if loc == f.key or loc.endswith("/" + f.key)]
        if not match:
            raise CorruptObjectError(f"{state.deletes.key}: deletes rows of {loc}, which is not a "
                                     f"live file of bucket {state.bucket}")
        pos = np.sort(rows.filter(pc.equal(paths_col, loc)).column("pos").to_numpy())
        pos.flags.writeable = False  # shared through the cache
        out[match[0]] = pos
    return out


def live_rows(store, uri: str, meta, state: BucketState, names: list[str],
              keys: pa.Table | None = None, threads: bool = True) -> pa.Table:
    """The live rows of a bucket's snapshot files, columns `names` (table types). With `keys`
    (a table of primary-key columns), only rows of those keys, reading only row groups whose key
    statistics may hold one. `threads=False` decodes on the calling thread only (for callers
    that already read several buckets at once)."""
    return _live(store, uri, meta, state, names, keys, None, threads)[0]


def live_rows_split(store, uri: str, meta, state: BucketState, names: list[str],
                    changed: pa.Table, threads: bool = True) -> tuple[pa.Table, pa.Table]:
    """The live rows of a bucket's snapshot files as (rows whose key is not in `changed`, rows
    whose key is): one filtering pass that also drops deleted positions."""
    return _live(store, uri, meta, state, names, None, changed, threads)


def _live(store, uri, meta, state, names, keys, changed, threads) -> tuple[pa.Table, pa.Table]:
    empty = pa.schema([meta.schema.field(n) for n in names]).empty_table()
    if not state.files:
        return empty, empty
    deleted = deleted_positions(store, state)
    parts = parallel(lambda f: _file_rows(store, meta, f, names, deleted.get(f.key), keys,
                                          changed, threads), state.files)
    return tuple(pa.concat_tables([p[i] for p in parts if p[i].num_rows] or [empty])
                 for i in (0, 1))


def _file_rows(store, meta, ref, names, deleted, keys, changed, threads) -> tuple[pa.Table, pa.Table]:
    """(kept rows, rows of `changed` keys) of one data file, live positions only."""
    from .state import key_mask
    metadata, groups, rows = _decoded(store, meta, ref, names, keys, threads)
    if not groups:
        empty = pa.schema([meta.schema.field(n) for n in names]).empty_table()
        return empty, empty
    starts = np.r_[0, np.cumsum([metadata.row_group(i).num_rows
                                 for i in range(metadata.num_row_groups)])]
    positions = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
    rows = parquet.from_snapshot(rows, meta, names)  # key types as the caller's keys have them
    keep = np.ones(len(positions), bool)
    if deleted is not None and len(deleted):
        keep &= ~np.isin(positions, deleted, assume_unique=True)
    if keys is not None:
        keep &= key_mask(rows, keys, list(meta.primary_key))
    hit = key_mask(rows, changed, list(meta.primary_key)) if changed is not None else None
    kept = _where(rows, keep if hit is None else keep & ~hit)
    return kept, rows.slice(0, 0) if hit is None else _where(rows, keep & hit)


def _decoded(store, meta, ref, names, keys, threads) -> tuple:
    """(footer, row groups read, their rows). Most columns of every row group: one GET of the
    whole object beats ranged GETs of its parts; else the footer is cached and only the chunks
    wanted are fetched."""
    if keys is None and 2 * len(names) >= len(meta.schema):
        pf = parquet.open_file(store, ref.key, ref.size, whole=True)
        groups = list(range(pf.num_row_groups))
        with parquet.reading(ref.key):
            return pf.metadata, groups, pf.read_row_groups(groups, columns=names,
                                                           use_threads=threads)
    metadata = parquet.footer(store, ref.key, ref.size)
    groups = _row_groups(metadata, meta, keys)
    if not groups:
        return metadata, groups, None
    probe = None
    if keys is not None:  # decode a group's other columns only if its keys hold one asked
        from .state import key_mask
        key = list(meta.primary_key)
        probe = (key, lambda rows: bool(key_mask(parquet.from_snapshot(rows, meta, key), keys,
                                                 key).any()))
    groups, rows = parquet.read_row_groups(store, ref.key, ref.size, groups, names, threads, probe)
    return metadata, groups, rows


def _where(rows: pa.Table, mask: np.ndarray) -> pa.Table:
    return rows if mask.all() else rows.filter(pa.array(mask))


def _row_groups(metadata, meta, keys) -> list[int]:
    """Row groups that may hold one of `keys` (all of them without keys or statistics)."""
    everything = list(range(metadata.num_row_groups))
    if keys is None or len(meta.primary_key) != 1:
        return everything
    name = meta.primary_key[0]
    schema = metadata.schema.to_arrow_schema()
    column = schema.get_field_index(name)
    wanted = keys.column(name).cast(schema.field(name).type)
    out = []
    for g in everything:
        stats = metadata.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max:
            out.append(g)
            continue
        inside = pc.and_(pc.greater_equal(wanted, stats.min), pc.less_equal(wanted, stats.max))
        if pc.any(inside).as_py():
            out.append(g)
    return out
