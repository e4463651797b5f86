"""Point lookups on a primary-key table (../shared/API.md, `lookup`; format_spec/spec-v1.md,
"Lookups").

The keys hash to their buckets; only those buckets are read, only parts whose key statistics
can hold one of the keys asked are fetched, and only rows of those keys are merged. So the cost
grows with the keys asked and the changes of their buckets, not with the table. Commits and
data-file footers are cached, and the snapshot rows are fetched while the LISTs (the snapshot
and each bucket's head) run, so a warm lookup costs one round trip plus any new commits.

Invariant: the result holds the current row of each asked key that is live, all columns, in
schema order; missing and deleted keys give no row.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .bucketing import bucket_of, split_by_bucket
from .errors import FlussError
from .format.columns import stat_scalar
from .io import parallel
from .runs import lookup_keys
from .state import BucketReader, key_mask


def lookup(table, keys) -> pa.Table:
    meta = table.metadata
    asked = lookup_keys(meta, keys, table.name)
    if asked.num_rows == 0:
        return meta.schema.empty_table()
    key = list(meta.primary_key)
    asked = asked.group_by(key).aggregate([])  # distinct keys
    per_bucket = split_by_bucket(asked, bucket_of(asked, list(meta.bucket_key), meta.buckets),
                                 meta.buckets)
    reader = BucketReader(table, meta.schema.names)
    ranges = {b: KeyRanges(keys, meta) for b, keys in per_bucket.items()}
    buckets = sorted(per_bucket)
    refs, base = _refs_and_base(table, reader, buckets, per_bucket)
    changes = reader.read(refs, part_filter=lambda b, part: ranges[b].may_hold(part),
                          key_mask=lambda b, rows: ranges[b].rows_of(rows))
    found = [t for t in reader.latest(changes, base) if t.num_rows]
    if not found:
        return meta.schema.empty_table()
    return pa.concat_tables(found).select(meta.schema.names)


def _refs_and_base(table, reader: BucketReader, buckets, per_bucket) -> tuple[list, dict]:
    """The commits past the current snapshot and the snapshot rows of the keys. The snapshot
    this handle saw last is almost always still current, so its rows are fetched while the
    LISTs learn what is current: a warm lookup takes one round trip, not two. If a newer
    snapshot turns up (or the old one's files are gone), its rows are read after all."""
    guess = table.known_snapshot()
    if guess is None:
        refs = reader.refs(buckets)
        return refs, reader.base(buckets, per_bucket)

    def speculative():
        try:
            return reader.base(buckets, per_bucket, snapshot=guess)
        except FlussError:  # collected files of a snapshot that is no longer current
            return None
    # The rows are read on a thread outside the I/O pool, so that their own requests (buckets,
    # files, ranges) still run concurrently there, while the pool LISTs the snapshot and heads.
    rows = _speculation().submit(speculative)
    found = parallel(lambda job: job(), [table.snapshot] + [table.logs[b].head for b in buckets])
    refs, base = reader.refs_from(found[0], found[1:], buckets), rows.result()
    if base is None or reader.snapshot.number != guess.number:
        base = reader.base(buckets, per_bucket)
    return refs, base


_speculation_pool: ThreadPoolExecutor | None = None
_speculation_lock = threading.Lock()
SPECULATION_THREADS = 8


def _speculation() -> ThreadPoolExecutor:
    """Threads for speculative snapshot reads; they wait on the I/O pool, never the reverse."""
    global _speculation_pool
    with _speculation_lock:
        if _speculation_pool is None:
            _speculation_pool = ThreadPoolExecutor(SPECULATION_THREADS,
                                                   thread_name_prefix="flussfs-lookup")
        return _speculation_pool


class KeyRanges:
    """The keys of one bucket's lookup: which parts may hold them, which rows are them."""

    def __init__(self, keys: pa.Table, meta):
        self.keys, self.names = keys, list(meta.primary_key)
        self.ids = [meta.field_id(k) for k in self.names]
        self.types = [meta.schema.field(k).type for k in self.names]

    def may_hold(self, part: dict) -> bool:
        """False only if the part's key statistics rule out every key asked."""
        stats = {d["field_id"]: d for d in part["columns"]}
        inside = np.ones(self.keys.num_rows, bool)
        for name, fid, t in zip(self.names, self.ids, self.types):
            d = stats.get(fid, {})
            if "min" not in d or "max" not in d:
                continue
            column = self.keys.column(name)
            low = pc.greater_equal(column, stat_scalar(d["min"], t))
            high = pc.less_equal(column, stat_scalar(d["max"], t))
            inside &= pc.and_(low, high).to_numpy(zero_copy_only=False)
        return bool(inside.any())

    def rows_of(self, rows: pa.Table) -> np.ndarray:
        """Which of `rows` have one of the keys asked."""
        return key_mask(rows, self.keys, self.names)
