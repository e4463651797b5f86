"""Merge engines of primary-key tables (format_spec/spec-v1.md, "Merge engines").

An engine says how the changes of one key fold into its current row. It is fixed at
create_table and stored in the table metadata as JSON: {"type": "last_row"},
{"type": "first_row"}, {"type": "versioned", "column": c} or
{"type": "aggregate", "functions": {column: function}}.

Invariants: an engine is validated against the schema and key once, when the table is created;
`from_json(to_json(e))` equals `e`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from .errors import CorruptObjectError, InvalidInputError

AGGREGATE_FUNCTIONS = ("sum", "min", "max", "last_non_null", "first_non_null")


@dataclass(frozen=True)
class Versioned:
    """The row with the larger `column` value wins; on a tie the later row."""
    column: str

    def __repr__(self) -> str:
        return f"Versioned({self.column!r})"


@dataclass(frozen=True)
class Aggregate:
    """Each named column folds with its function; any other column keeps its latest non-null."""
    functions: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Aggregate({self.functions!r})"

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.functions.items())))

    def function(self, column: str) -> str:
        return self.functions.get(column, "last_non_null")


def describe(engine) -> str:
    """A short form, the one `flussfs create --merge-engine` takes: last_row, first_row,
    versioned:ver, aggregate:total=sum,peak=max."""
    if isinstance(engine, Versioned):
        return f"versioned:{engine.column}"
    if isinstance(engine, Aggregate):
        return "aggregate:" + ",".join(f"{c}={f}" for c, f in engine.functions.items())
    return str(engine)


def to_json(engine) -> dict:
    if isinstance(engine, Versioned):
        return {"type": "versioned", "column": engine.column}
    if isinstance(engine, Aggregate):
        return {"type": "aggregate", "functions": dict(engine.functions)}
    return {"type": engine}


def from_json(j, name: str):
    """The engine of a table metadata object `name` (None for a log table)."""
    if j is None:
        return None
    kind = j.get("type") if isinstance(j, dict) else None
    if kind in ("last_row", "first_row"):
        return kind
    if kind == "versioned" and isinstance(j.get("column"), str):
        return Versioned(j["column"])
    if kind == "aggregate" and isinstance(j.get("functions"), dict) \
            and set(j["functions"].values()) <= set(AGGREGATE_FUNCTIONS):
        return Aggregate(dict(j["functions"]))
    raise CorruptObjectError(f"{name}: unknown merge engine {j!r}; upgrade flussfs")


def validate(engine, schema: pa.Schema, key: list[str]):
    """The engine, checked against the schema and key (raises InvalidInputError)."""
    if engine is None:
        engine = "last_row"
    if engine in ("last_row", "first_row"):
        return engine
    if isinstance(engine, Versioned):
        _check_versioned(engine.column, schema, key)
        return engine
    if isinstance(engine, Aggregate):
        _check_aggregate(engine.functions, schema, key)
        return Aggregate(dict(engine.functions))
    raise InvalidInputError(f"unknown merge engine {engine!r}: use 'last_row', 'first_row', "
                            f"flussfs.Versioned(column) or flussfs.Aggregate({{column: function}})")


def _check_versioned(column, schema, key) -> None:
    if not isinstance(column, str) or schema.get_field_index(column) < 0:
        raise InvalidInputError(f"Versioned: version column {column!r} is not in the schema "
                                f"{schema.names}")
    if column in key:
        raise InvalidInputError(f"Versioned: version column {column!r} is a key column")
    t = schema.field(column).type
    if not (pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t)):
        raise InvalidInputError(f"Versioned: version column {column!r} has type {t}; use an "
                                f"integer, date or timestamp column")


def _check_aggregate(functions, schema, key) -> None:
    if not isinstance(functions, dict):
        raise InvalidInputError(f"Aggregate takes a dict of column -> function, got {functions!r}")
    for column, fn in functions.items():
        if not isinstance(column, str) or schema.get_field_index(column) < 0:
            raise InvalidInputError(f"Aggregate: column {column!r} is not in the schema {schema.names}")
        if column in key:
            raise InvalidInputError(f"Aggregate: key column {column!r} cannot be aggregated")
        if fn not in AGGREGATE_FUNCTIONS:
            raise InvalidInputError(f"Aggregate: column {column!r}: unknown function {fn!r}; "
                                    f"use one of {', '.join(AGGREGATE_FUNCTIONS)}")
        t = schema.field(column).type
        if fn == "sum" and not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise InvalidInputError(f"Aggregate: column {column!r}: sum needs an integer or "
                                    f"floating-point column, not {t}")
        if fn in ("min", "max") and not _orderable(t):
            raise InvalidInputError(f"Aggregate: column {column!r}: {fn} is not defined for type {t}")


def _orderable(t: pa.DataType) -> bool:
    return not (pa.types.is_boolean(t) or pa.types.is_null(t))


def allows_partial_updates(engine) -> bool:
    return engine == "last_row" or isinstance(engine, Aggregate)
