"""Reading the rows of a commit: inline chunks from the commit's own bytes, referenced segments
by ranged GETs of only the projected columns (format_spec/spec-v1.md, "Reader requirements").

Invariants: every chunk is checked against its descriptor's CRC before it is decoded; a part
yields exactly its `rows` rows; per segment at most RANGES_PER_SEGMENT_MAX ranged requests are
issued, all at once, so projection costs one round trip per segment after the commit.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import paths
from .errors import CorruptObjectError
from .merge import Changes
from .runs import DELETE, UPSERT
from .format import block
from .format.columns import decode_chunk

RANGES_PER_SEGMENT_MAX = 8
COALESCE_GAP_BYTES = 64 * 1024  # read through gaps up to this size rather than split a request


def read_commit_rows(store, commit, fields: list[tuple[int, pa.Field]], part_filter=None):
    """One pa.RecordBatch per part of `commit` (parts rejected by `part_filter` are skipped,
    yielding None), with the columns `fields` = [(field_id, field)] in that order."""
    out = []
    for part in commit.parts:
        if part_filter is not None and not part_filter(part):
            out.append(None)
            continue
        out.append(_read_part(store, commit, part, fields))
    return out


def read_change_parts(store, commit, fields: list[tuple[int, pa.Field]], key_ids: set,
                      part_filter=None, key_mask=None) -> list:
    """One merge.Changes per part of a primary-key table's `commit` (None where `part_filter`
    rejects the part), over the columns `fields`: a column the part does not carry (a partial
    update, or a delete's non-key columns) is null and marked not present. With `key_mask`
    (a table of the key columns -> numpy bool per row), the key columns are read first and
    only the rows it keeps are returned; a part without any is None, its other columns unread."""
    out = []
    for part in commit.parts:
        if part_filter is not None and not part_filter(part):
            out.append(None)
            continue
        out.append(_change_part(store, commit, part, fields, key_ids, key_mask))
    return out


def _change_part(store, commit, part, fields, key_ids, key_mask=None) -> Changes | None:
    name = paths.commit(commit.bucket, commit.number)
    change = part.get("change")
    if change not in (UPSERT, DELETE):
        raise CorruptObjectError(f"{name}: part change {change!r} is neither upsert nor delete")
    carried = {d["field_id"] for d in part["columns"]}
    if not key_ids <= carried:
        raise CorruptObjectError(f"{name}: a part lacks key field(s) {sorted(key_ids - carried)}")
    given = [(fid, f) for fid, f in fields if fid in carried]
    mask, batches = None, []
    if key_mask is not None:
        keys = [(fid, f) for fid, f in given if fid in key_ids]
        batches.append(_read_part(store, commit, part, keys))
        mask = key_mask(pa.Table.from_batches(batches[:1]))
        if not mask.any():
            return None
        given = [(fid, f) for fid, f in given if fid not in key_ids]
    batches.append(_read_part(store, commit, part, given))
    n = part["rows"]
    read = {f.name: b.column(f.name) for b in batches for f in b.schema}
    rows = pa.Table.from_arrays([read.get(f.name, pa.nulls(n, f.type)) for _, f in fields],
                                schema=pa.schema([f for _, f in fields]))
    present = None
    if len(read) < len(fields):
        present = np.repeat(np.array([[fid in carried for fid, _ in fields]]), n, axis=0)
    changes = Changes(rows, np.full(n, change == DELETE), present)
    if mask is None or mask.all():
        return changes
    return Changes(rows.filter(pa.array(mask)), changes.deletes[mask],
                   None if present is None else present[mask])


def _read_part(store, commit, part, fields) -> pa.RecordBatch:
    wanted = _descriptors(part, fields, commit)
    if "key" in part:
        name = _segment_key(part["key"], commit)
        chunks = _fetch_ranges(store, name, wanted)
    else:
        name = paths.commit(commit.bucket, commit.number)
        chunks = [commit.raw[d["offset"]: d["offset"] + d["length"]] for d in wanted]
    return _assemble(part, fields, wanted, chunks, name)


def _segment_key(key, commit) -> str:
    """A referenced segment must live in its commit's bucket (a crafted key could escape)."""
    prefix = paths.segments_dir(commit.bucket)
    if not isinstance(key, str) or not key.startswith(prefix) or "/" in key[len(prefix):] \
            or key[len(prefix):].startswith("."):
        raise CorruptObjectError(f"{paths.commit(commit.bucket, commit.number)}: segment key "
                                 f"{key!r} is outside {prefix}")
    return key


def _descriptors(part: dict, fields, commit) -> list[dict]:
    by_id = {d["field_id"]: d for d in part["columns"]}
    try:
        return [by_id[fid] for fid, _ in fields]
    except KeyError as e:
        raise CorruptObjectError(f"{paths.commit(commit.bucket, commit.number)}: "
                                 f"no column chunk for field id {e}") from None


def _assemble(part, fields, wanted, chunks, name) -> pa.RecordBatch:
    arrays = []
    for (_, field), d, chunk in zip(fields, wanted, chunks):
        array = decode_chunk(block.check_chunk(chunk, d, name), d, name)
        if len(array) != part["rows"]:
            raise CorruptObjectError(f"{name}: column {field.name} has {len(array)} rows, "
                                     f"expected {part['rows']}")
        arrays.append(array if array.type == field.type else array.cast(field.type))
    if not fields:
        return pa.record_batch([pa.nulls(part["rows"])], names=["_"]).drop_columns(["_"])
    return pa.record_batch(arrays, schema=pa.schema([f for _, f in fields]))


def coalesce(spans: list[tuple[int, int]], gap: int = COALESCE_GAP_BYTES,
             ranges_max: int = RANGES_PER_SEGMENT_MAX) -> list[tuple[int, int]]:
    """Merge sorted [start, end) spans: through small gaps, then the smallest gaps until at
    most `ranges_max` ranges remain."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    while len(merged) > ranges_max:
        i = min(range(len(merged) - 1), key=lambda j: merged[j + 1][0] - merged[j][1])
        merged[i:i + 2] = [[merged[i][0], merged[i + 1][1]]]
    return [(s, e) for s, e in merged]


def _fetch_ranges(store, key: str, wanted: list[dict]) -> list[bytes]:
    if not wanted:
        return []
    ranges = coalesce([(d["offset"], d["offset"] + d["length"]) for d in wanted])
    blobs = store.get_ranges(key, ranges)
    out = []
    for d in wanted:
        for (start, end), blob in zip(ranges, blobs):
            if start <= d["offset"] and d["offset"] + d["length"] <= end:
                out.append(blob[d["offset"] - start: d["offset"] - start + d["length"]])
                break
    return out
