"""Reconciling the changes of a primary-key table into rows (format_spec/spec-v1.md, "Merge
engines"). One pure, vectorised function family shared by scan, lookup, subscribe and the
compactor: no per-row Python.

Input: `Changes`, the change rows in log order (a snapshot's or a state's rows first, then each
bucket's changes in offset order; keys never span buckets, so buckets may be interleaved).
`latest()` gives the row of every live key; `images()` gives, for every change row, the key's
row just after it (its running image), which is what subscribe emits.

How: a stable sort by key makes each key's rows contiguous and in log order. A delete, and the
start of a key, begins a *segment*: only rows after the latest delete count. Every engine then
reduces to "the best row so far within the segment" for a per-column score (latest position,
first position, version rank, value rank), computed by one running maximum over
`segment * n + score` (earlier segments always score lower), or to a segmented running sum.

Invariants: the result depends only on each key's rows in log order; `latest()` equals the
last running image of each key whose last row is an upsert.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .engines import Aggregate, Versioned

FOLD_STEPS_MAX = 64  # float sums: longer segments are folded one segment at a time


@dataclass
class Changes:
    """Change rows in log order. `rows` holds the key columns and the value columns read (a
    value not given is null); `deletes[i]` says row i deletes its key; `present[i, j]` says
    row i gave value column j (None: every row gave every column)."""
    rows: pa.Table
    deletes: np.ndarray
    present: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list["Changes"], schema: pa.Schema) -> "Changes":
        if not parts:
            return cls(schema.empty_table(), np.zeros(0, bool), None)
        rows = pa.concat_tables([p.rows for p in parts])
        deletes = np.concatenate([p.deletes for p in parts])
        if all(p.present is None for p in parts):
            return cls(rows, deletes, None)
        width = rows.num_columns
        present = np.concatenate([np.ones((p.rows.num_rows, width), bool) if p.present is None
                                  else p.present for p in parts])
        return cls(rows, deletes, present)


def required_columns(key: list[str], engine) -> list[str]:
    """Columns a merge needs besides the ones asked for."""
    return list(key) + ([engine.column] if isinstance(engine, Versioned) else [])


@dataclass
class Images:
    """Per change row, in input order: `rows` = the key's row after it, `exists` = whether the
    key is live after it, `previous` = the input index of the row before it of the same key
    (-1 for a key's first row), `last` = whether it is its key's last row (so the rows where
    `last & exists` are what latest() gives, in input order)."""
    rows: pa.Table
    exists: np.ndarray
    previous: np.ndarray
    last: np.ndarray


def latest(changes: Changes, key: list[str], engine) -> pa.Table:
    """The row of every live key, sorted by key."""
    if changes.rows.num_rows == 0:
        return changes.rows
    plan = _Plan(changes, key)
    last = np.r_[plan.start[1:], True]
    keep = np.flatnonzero(last & ~plan.deletes)
    return _gather(changes.rows, key, plan, _sources(changes, key, engine, plan), keep, plan.order[keep])


def images(changes: Changes, key: list[str], engine) -> Images:
    """The running image of every change row (see Images)."""
    n = changes.rows.num_rows
    if n == 0:
        return Images(changes.rows, np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, bool))
    plan = _Plan(changes, key)
    back = np.empty(n, np.int64)
    back[plan.order] = np.arange(n)             # input index -> sorted position
    sources = _sources(changes, key, engine, plan)
    rows = _gather(changes.rows, key, plan, sources, back, np.arange(n))
    prev_sorted = np.where(plan.start, -1, np.arange(n) - 1)
    previous = np.where(prev_sorted < 0, -1, plan.order[np.maximum(prev_sorted, 0)])[back]
    return Images(rows, ~changes.deletes, previous, np.r_[plan.start[1:], True][back])


class _Plan:
    """The stable key order, key starts and segments of a change set (in sorted positions)."""

    def __init__(self, changes: Changes, key: list[str]):
        rows, n = changes.rows, changes.rows.num_rows
        self.n = n
        self.order = pc.sort_indices(rows.select(key), sort_keys=[(k, "ascending") for k in key]
                                     ).to_numpy().astype(np.int64)  # stable: a key's rows stay in log order
        start = np.zeros(n, bool)
        start[0] = True
        for k in key:
            column = rows.column(k).take(self.order).combine_chunks()
            start[1:] |= pc.not_equal(column[1:], column[:-1]).to_numpy(zero_copy_only=False)
        self.start = start
        self.deletes = changes.deletes[self.order]
        self.segment = np.cumsum(start | self.deletes) - 1
        self.position = np.arange(n, dtype=np.int64)

    def best(self, score: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Per sorted position: the highest `score` (unique, in [0, n)) among candidates of its
        segment so far, or -1."""
        base = self.segment * self.n
        running = np.maximum.accumulate(np.where(candidate, base + score, -1))
        return np.where(running >= base, running - base, -1)

    def latest_of(self, candidate: np.ndarray) -> np.ndarray:
        return self.best(self.position, candidate)

    def first_of(self, candidate: np.ndarray) -> np.ndarray:
        found = self.best(self.n - 1 - self.position, candidate)
        return np.where(found < 0, -1, self.n - 1 - found)

    def ranked(self, values: pa.Array, candidate: np.ndarray, descending: bool = False) -> np.ndarray:
        """The candidate with the highest (or lowest) value so far; ties go to the later row."""
        by = pa.table({"v": values, "p": pa.array(self.position)})
        direction = "descending" if descending else "ascending"
        order = pc.sort_indices(by, sort_keys=[("v", direction), ("p", "ascending")]
                                ).to_numpy().astype(np.int64)
        score = np.empty(self.n, np.int64)
        score[order] = self.position
        found = self.best(score, candidate & values.is_valid().to_numpy(zero_copy_only=False))
        return np.where(found < 0, -1, order[np.maximum(found, 0)])


def _sources(changes: Changes, key, engine, plan: _Plan) -> dict:
    """value column -> per sorted position, the sorted position its value comes from (-1: null),
    or a ready pa.Array in sorted order (sums)."""
    upserts = ~plan.deletes
    values = [c for c in changes.rows.column_names if c not in key]
    if engine == "first_row":
        first = plan.first_of(upserts)
        return {c: first for c in values}
    if isinstance(engine, Versioned):
        best = plan.ranked(_sorted(changes, engine.column, plan), upserts)
        return {c: best for c in values}
    if isinstance(engine, Aggregate):
        return {c: _aggregate(changes, c, engine.function(c), plan) for c in values}
    out = {}
    for c in values:
        candidate = upserts
        if changes.present is not None:
            candidate = upserts & changes.present[plan.order, changes.rows.schema.get_field_index(c)]
        out[c] = plan.latest_of(candidate)
    return out


def _sorted(changes: Changes, column: str, plan: _Plan) -> pa.Array:
    return changes.rows.column(column).take(plan.order).combine_chunks()


def _aggregate(changes: Changes, column: str, fn: str, plan: _Plan):
    upserts = ~plan.deletes
    values = _sorted(changes, column, plan)
    valid = upserts & values.is_valid().to_numpy(zero_copy_only=False)
    if fn == "last_non_null":
        return plan.latest_of(valid)
    if fn == "first_non_null":
        return plan.first_of(valid)
    if fn in ("max", "min"):
        if pa.types.is_floating(values.type):  # NaN is skipped, as Arrow's min_max does
            upserts = upserts & ~pc.is_nan(values).fill_null(False).to_numpy(zero_copy_only=False)
        return plan.ranked(values, upserts, descending=fn == "min")
    if fn == "sum":
        return _running_sum(values, valid, plan)
    raise ValueError(f"unknown aggregate function {fn!r}")  # from_json refuses these


def _running_sum(values: pa.Array, valid: np.ndarray, plan: _Plan) -> pa.Array:
    """Segmented running sum, nulls skipped (all null: null). Integers add with two's-complement
    wrap-around in 64 bits, then wrap to the column's width; floats add as a left fold in offset
    order in the column's own type, so folding at once or commit by commit agrees bit for bit."""
    t = values.type
    counts = _segment_cumsum(valid.astype(np.int64), plan)
    dtype = t.to_pandas_dtype()
    if pa.types.is_floating(t):
        x = np.where(valid, values.fill_null(0).to_numpy(zero_copy_only=False), 0).astype(dtype)
        sums = _left_fold_cumsum(x, plan)
    else:
        wide = np.uint64 if pa.types.is_unsigned_integer(t) else np.int64
        x = np.where(valid, values.fill_null(0).to_numpy(zero_copy_only=False).astype(wide), 0).astype(wide)
        sums = _segment_cumsum(x, plan)
    return pa.array(sums.astype(dtype), type=t, mask=counts == 0)


def _segment_starts(plan: _Plan) -> np.ndarray:
    seg = plan.segment
    return np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])


def _segment_cumsum(x: np.ndarray, plan: _Plan) -> np.ndarray:
    """Exact (modular) running sum within segments, for integers."""
    with np.errstate(over="ignore"):
        total = np.cumsum(x)
        first = _segment_starts(plan)
        before = total[first] - x[first]
        return total - before[plan.segment]


def _left_fold_cumsum(x: np.ndarray, plan: _Plan) -> np.ndarray:
    """Running sum within segments as a strict left fold (never subtracting): segments longer
    than FOLD_STEPS_MAX by np.cumsum each (sequential), the rest one position at a time across
    all of them at once."""
    starts = _segment_starts(plan)
    lengths = np.diff(np.r_[starts, len(x)])
    out = x.copy()
    long = lengths > FOLD_STEPS_MAX
    for start, length in zip(starts[long], lengths[long]):
        out[start:start + length] = np.cumsum(x[start:start + length])
    short_starts, short_lengths = starts[~long], lengths[~long]
    for step in range(1, int(short_lengths.max(initial=1))):
        at = short_starts[short_lengths > step] + step
        out[at] = out[at - 1] + x[at]
    return out


def _gather(rows: pa.Table, key, plan: _Plan, sources: dict, at: np.ndarray,
            key_rows: np.ndarray) -> pa.Table:
    """Output rows for sorted positions `at`: key columns from input rows `key_rows`, value
    columns from their sources."""
    columns = []
    for name in rows.column_names:
        if name in key:
            columns.append(rows.column(name).take(pa.array(key_rows)))
            continue
        source = sources[name]
        if isinstance(source, pa.Array):
            columns.append(source.take(pa.array(at)))
            continue
        picked = source[at]
        index = pa.array(plan.order[np.maximum(picked, 0)], mask=picked < 0)
        columns.append(rows.column(name).take(index))
    return pa.Table.from_arrays(columns, schema=rows.schema)
