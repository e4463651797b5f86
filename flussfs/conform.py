"""Turning caller data into rows of the table's schema, or a clear InvalidInputError.

Invariants: columns are matched by name; an omitted nullable column becomes nulls; casts are
safe (no loss, no overflow) and stay within a type family (strings are never parsed into
numbers, numbers never formatted into strings); non-nullable columns hold no nulls. Either the
whole input conforms or nothing is returned.
"""
from __future__ import annotations

import pyarrow as pa

from .errors import InvalidInputError


def to_table(data, what: str = "data") -> pa.Table:
    """A pa.Table from a pa.Table, a pa.RecordBatch, or a list of dicts."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return _from_dicts(data, what)
    raise InvalidInputError(f"{what} must be a pyarrow Table, RecordBatch or a list of dicts, "
                            f"got {type(data).__name__}")


def _from_dicts(rows: list[dict], what: str) -> pa.Table:
    """Columns are the union of every row's keys (pyarrow's from_pylist takes the first row's)."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {}
    for name in names:
        try:
            columns[name] = pa.array([r.get(name) for r in rows])
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise InvalidInputError(f"{what}: column {name!r}: values of mixed types: {e}") from None
    return pa.table(columns) if names else pa.table({})


def conform(data, schema: pa.Schema, what: str = "data") -> pa.Table:
    """`data` with exactly `schema`'s columns, in order, cast safely."""
    table = to_table(data, what)
    if table.num_rows == 0 and table.num_columns == 0:  # e.g. an empty list of rows
        return schema.empty_table()
    _check_names(table.column_names, schema, what)
    columns = [_column(table, field, what) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def conform_given(data, schema: pa.Schema, what: str = "data") -> pa.Table:
    """`data`'s own columns (every non-nullable one of `schema` among them), in schema order,
    cast safely: a partial row set, whose missing columns mean "not given"."""
    table = to_table(data, what)
    if table.num_rows == 0 and table.num_columns == 0:
        return schema.empty_table()
    _check_names(table.column_names, schema, what)
    given = [f for f in schema if f.name in table.column_names or not f.nullable]
    return pa.Table.from_arrays([_column(table, f, what) for f in given], schema=pa.schema(given))


def _check_names(names: list[str], schema: pa.Schema, what: str) -> None:
    unknown = [n for n in names if schema.get_field_index(n) < 0]
    if unknown:
        raise InvalidInputError(f"{what}: unknown column(s) {', '.join(map(repr, unknown))}; "
                                f"the table has {schema.names}")
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise InvalidInputError(f"{what}: column(s) {sorted(duplicated)} given more than once")


def _column(table: pa.Table, field: pa.Field, what: str) -> pa.ChunkedArray:
    if field.name not in table.column_names:
        if not field.nullable:
            raise InvalidInputError(f"{what}: non-nullable column {field.name!r} is missing")
        return pa.chunked_array([pa.nulls(table.num_rows, field.type)], field.type)
    column = table.column(field.name)
    if column.type != field.type:
        column = _cast(column, field, what)
    if not field.nullable and column.null_count:
        raise InvalidInputError(f"{what}: non-nullable column {field.name!r} holds "
                                f"{column.null_count} null(s)")
    return column


def _family(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "datetime"
    if pa.types.is_dictionary(t):
        return _family(t.value_type)
    return str(t)


def _cast(column: pa.ChunkedArray, field: pa.Field, what: str) -> pa.ChunkedArray:
    src, dst = _family(column.type), _family(field.type)
    if src not in ("null", dst):
        raise InvalidInputError(f"{what}: column {field.name!r} has type {column.type}, "
                                f"which does not convert to {field.type}")
    if pa.types.is_timestamp(column.type) and pa.types.is_timestamp(field.type) \
            and (column.type.tz is None) != (field.type.tz is None):
        raise InvalidInputError(f"{what}: column {field.name!r} has type {column.type}; "
                                f"the table's is {field.type} (time zone awareness differs)")
    try:
        return column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InvalidInputError(f"{what}: column {field.name!r} cannot be cast from {column.type} "
                                f"to {field.type} without loss: {e}") from None
