"""The compactor's changelog (format_spec/spec-v1.md, section 20.5): every change record of a
primary-key table as the full changelog, with before-images.

Per record, in offset order: an upsert of a key that was not live gives `+I` (the row after
it); of a live key, `-U` (the row before it) then `+U` (the row after it); a delete of a live
key gives `-D` (the row it removed); a delete of a key that was not live gives nothing. Every
row carries its record's offset and commit timestamp.

Invariant: replaying a bucket's changelog (+I/+U set the key's row, -U/-D remove it) from
offset 0 gives exactly the bucket's latest state at the end offset the pieces cover.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from flussfs import parquet

SYSTEM_FIELDS = [pa.field("_offset", pa.int64(), nullable=False),
                 pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
                 pa.field("_change_type", pa.string(), nullable=False)]


def changelog_rows(images, before: int, deletes: np.ndarray, offsets: np.ndarray,
                   times: np.ndarray, meta) -> pa.Table:
    """The changelog of the change records that follow `before` state rows in `images`
    (merge.Images over the state rows then the records), as a changelog file holds it."""
    n = len(deletes)
    own = np.arange(before, before + n)
    previous = images.previous[own]
    was_live = (previous >= 0) & images.exists[np.maximum(previous, 0)]
    upsert = ~deletes
    # Each record gives up to two rows: slot 0 = the before-image (-U or -D) where the key was
    # live, slot 1 = the image after it (+I or +U) where it is an upsert.
    first, second = was_live, upsert
    source = np.concatenate([previous[first], own[second]])
    kinds = np.concatenate([np.where(upsert[first], "-U", "-D"),
                            np.where(was_live[second], "+U", "+I")])
    record = np.concatenate([np.flatnonzero(first), np.flatnonzero(second)])
    slot = np.concatenate([np.zeros(first.sum(), np.int8), np.ones(second.sum(), np.int8)])
    order = np.lexsort((slot, record))
    source, kinds, record = source[order], kinds[order], record[order]
    rows = parquet.to_snapshot(images.rows.take(pa.array(source, pa.int64())), meta)
    system = [pa.array(offsets[record], pa.int64()),
              pa.array(times[record]).cast(pa.timestamp("ms", tz="UTC")),
              pa.array(kinds, pa.string())]
    return pa.Table.from_arrays(rows.columns + system,
                                schema=pa.schema(list(rows.schema) + SYSTEM_FIELDS))
