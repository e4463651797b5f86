"""Checked caller data as *runs*: rows of one kind of change carrying one set of columns
(format_spec/spec-v1.md, "Change records"). A call makes one run; a batching writer keeps its
calls' runs in order and commits them together, one part per run.

Invariants: a run's rows are conformed to the table schema (safe casts, no nulls in
non-nullable columns, key columns present and non-null), its columns in schema order; an
"upsert" run carries every key column and may lack nullable value columns (a partial update,
only where the merge engine allows it); a "delete" run carries exactly the key columns.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import pyarrow as pa

from . import engines
from .conform import conform, conform_given, to_table
from .engines import Versioned
from .errors import InvalidInputError

APPEND, UPSERT, DELETE = "append", "upsert", "delete"


@dataclass(frozen=True)
class Run:
    change: str      # APPEND, UPSERT or DELETE
    rows: pa.Table   # the columns it carries, in schema order

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.rows.column_names)


def append_run(meta, data, name: str) -> Run:
    if meta.primary_key:
        raise InvalidInputError(f"table {name} has a primary key {list(meta.primary_key)}: "
                                f"use upsert() and delete(), not append()")
    return Run(APPEND, conform(data, meta.schema, f"append to {name}"))


def upsert_runs(meta, data, name: str) -> list[Run]:
    """The runs of one upsert call. A list of dicts whose rows give different columns is one
    run per stretch of rows giving the same columns, so a key a row leaves out is "not given"
    (unchanged), never an explicit null."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        stretches = itertools.groupby(data, key=lambda r: tuple(sorted(r)))
        return [upsert_run(meta, list(rows), name) for _, rows in stretches]
    return [upsert_run(meta, data, name)]


def upsert_run(meta, data, name: str) -> Run:
    what = f"upsert to {name}"
    key = _require_primary_key(meta, name, "upsert")
    table = to_table(data, what)
    if table.num_columns or table.num_rows:
        _require_key_columns(table, key, what)
    rows = conform_given(table, meta.schema, what)
    engine = engines.from_json(meta.merge_engine, name)
    if rows.num_columns < len(meta.schema) and rows.num_rows and not engines.allows_partial_updates(engine):
        missing = [n for n in meta.schema.names if n not in rows.column_names]
        raise InvalidInputError(f"{what}: columns {missing} are missing; a {engines.describe(engine)} "
                                f"table takes whole rows (partial updates need last_row or aggregate)")
    if isinstance(engine, Versioned) and rows.num_rows and rows.column(engine.column).null_count:
        raise InvalidInputError(f"{what}: version column {engine.column!r} holds null(s)")
    return Run(UPSERT, rows)


def delete_run(meta, keys, name: str) -> Run:
    return Run(DELETE, _key_rows(meta, keys, name, f"delete from {name}", "delete"))


def lookup_keys(meta, keys, name: str) -> pa.Table:
    """The key table of a lookup, checked like delete keys."""
    return _key_rows(meta, keys, name, f"lookup in {name}", "lookup")


def _key_rows(meta, keys, name: str, what: str, op: str) -> pa.Table:
    key = _require_primary_key(meta, name, op)
    table = to_table(keys, what)
    extra = [c for c in table.column_names if c not in key]
    if extra:
        raise InvalidInputError(f"{what}: column(s) {extra} are not key columns; {op} takes "
                                f"only the key {key}")
    if table.num_columns or table.num_rows:
        _require_key_columns(table, key, what)
    return conform_given(table, key_schema(meta), what)


def key_schema(meta) -> pa.Schema:
    return pa.schema([meta.schema.field(k) for k in meta.primary_key])


def _require_primary_key(meta, name: str, op: str) -> list[str]:
    if not meta.primary_key:
        raise InvalidInputError(f"table {name} is a log table (no primary key): {op}() needs a "
                                f"primary-key table; use append()")
    return list(meta.primary_key)


def _require_key_columns(table: pa.Table, key: list[str], what: str) -> None:
    for k in key:
        if k not in table.column_names:
            raise InvalidInputError(f"{what}: key column {k!r} is missing")


def coalesce(runs: list[Run]) -> list[Run]:
    """Adjacent runs of the same change and columns joined (fewer, larger parts)."""
    out: list[Run] = []
    for run in runs:
        if run.rows.num_rows == 0:
            continue
        if out and out[-1].change == run.change and out[-1].columns == run.columns:
            out[-1] = Run(run.change, pa.concat_tables([out[-1].rows, run.rows]))
        else:
            out.append(run)
    return out
