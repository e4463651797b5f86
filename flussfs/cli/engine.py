"""`--merge-engine` text <-> the library's merge engines, and `--primary-key` for `create`.

Invariants: the text form round-trips: format_merge_engine(parse_merge_engine(s)) == s for every
well-formed s ('last_row', 'first_row', 'versioned:COL', 'aggregate:COL=FN[,COL=FN...]'), and
`describe` prints that same form. Malformed text is a UsageError naming the flag; whether the
columns and functions exist is the library's to check (it names them), not this module's.
"""
from __future__ import annotations

import pyarrow as pa

from ..engines import AGGREGATE_FUNCTIONS, Aggregate, Versioned, describe
from .arguments import UsageError, parse_columns

ENGINE_FORMS = (f"last_row, first_row, versioned:COL or aggregate:COL=FN[,COL=FN...] "
                f"(FN: {', '.join(AGGREGATE_FUNCTIONS)})")


def parse_merge_engine(text: str):
    """'last_row' | 'first_row' | 'versioned:ver' | 'aggregate:n=sum,m=max' -> a merge engine."""
    name, sep, rest = text.strip().partition(":")
    name, rest = name.strip().lower(), rest.strip()
    if name in ("last_row", "first_row") and not sep:
        return name
    if name == "versioned" and rest and "," not in rest and "=" not in rest:
        return Versioned(rest)
    if name == "aggregate" and rest:
        functions = {}
        for item in rest.split(","):
            column, eq, fn = (part.strip() for part in item.partition("="))
            if not eq or not column or not fn or column in functions:
                raise UsageError(f"--merge-engine {text!r}: {item.strip()!r} must look like "
                                 f"COL=FN, each column once (FN: {', '.join(AGGREGATE_FUNCTIONS)})")
            functions[column] = fn
        return Aggregate(functions)
    raise UsageError(f"--merge-engine {text!r}: use {ENGINE_FORMS}")


def format_merge_engine(engine) -> str | None:
    """A table's merge engine in --merge-engine's syntax; None for a log table."""
    return None if engine is None else describe(engine)


def primary_key_options(schema: pa.Schema, key_text: str | None, engine_text: str | None):
    """(schema, {primary_key, merge_engine} keyword arguments) for create_table.

    Key columns are made non-nullable here, so `--schema 'id:int64' --primary-key id` works
    without a '!' (a key can never be null); a key column missing from the schema is left for
    the library to reject by name."""
    key = parse_columns(key_text)
    if key_text is not None and not key:
        raise UsageError("--primary-key names no columns")
    if engine_text is not None and not key:
        raise UsageError("--merge-engine applies to primary-key tables only: add --primary-key "
                         "(a table without one is an append-only log)")
    if not key:
        return schema, {}
    schema = pa.schema([f.with_nullable(False) if f.name in key else f for f in schema],
                       metadata=schema.metadata)
    kwargs = {"primary_key": key}
    if engine_text is not None:
        kwargs["merge_engine"] = parse_merge_engine(engine_text)
    return schema, kwargs
