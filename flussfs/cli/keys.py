"""`delete` and `lookup`: keys given as `--key COL=VALUE[,COL=VALUE...]` or in files.

Invariants: each --key names every key column exactly once and nothing else; its values are
parsed from text to the key column's type by Arrow's safe cast (so '4.5' is no int64 key), and a
bad one is a UsageError naming the flag and the column before anything is read or written. A
keys file holds exactly the key columns (load.check_inputs). `lookup` prints only the rows found,
in scan's formats, exits 0 when keys are missing, and says on stderr how many were.
"""
from __future__ import annotations

import re
import sys

import pyarrow as pa

from ..table import open_table
from .arguments import UsageError
from .load import check_inputs, check_table_kind, commits_since, conformed_batches, load_files
from .outputs import OUTPUTS


def cmd_delete(args, options) -> int:
    if bool(args.files) == bool(args.key):
        raise UsageError("give the keys to delete either as FILE... or as --key COL=VALUE "
                         "(repeatable), not both")
    table = open_table(args.uri, storage_options=options)
    try:
        if args.files:
            return load_files(table, args.files, args.format, "delete")
        check_table_kind(table, "delete")
        keys = parse_keys(args.key, table)
        before = table.heads()
        table.delete(keys)
        _, commits, buckets = commits_since(table, before)
    finally:
        table.close()
    n = keys.num_rows
    print(f"deleted {n:,} key{'s' * (n != 1)} from {table.name} (a key that did not exist is a "
          f"no-op): {commits} commit{'s' * (commits != 1)} across {buckets} "
          f"bucket{'s' * (buckets != 1)}")
    return 0


def cmd_lookup(args, options) -> int:
    if bool(args.key) == (args.keys_file is not None):
        raise UsageError("give the keys to look up either as --key COL=VALUE (repeatable) or as "
                         "--keys-file FILE, not both")
    table = open_table(args.uri, storage_options=options)
    asked = found = 0
    try:
        check_table_kind(table, "lookup")
        if args.key:
            chunks = [parse_keys(args.key, table)]
        else:
            file = check_inputs(table, [args.keys_file], args.keys_format, "lookup")[0]
            chunks = (keys for keys, _ in conformed_batches(table, file, "lookup"))
        out = OUTPUTS[args.format](table.schema, sys.stdout)
        for keys in chunks:
            keys = keys.group_by(table.primary_key).aggregate([])  # each key counts once
            rows = table.lookup(keys) if keys.num_rows else table.schema.empty_table()
            asked, found = asked + keys.num_rows, found + rows.num_rows
            for batch in rows.to_batches():
                out.write(batch)
        out.close()
    finally:
        table.close()
    print(f"looked up {asked:,} key{'s' * (asked != 1)}: {found:,} found, "
          f"{asked - found:,} not found", file=sys.stderr)
    return 0


def parse_keys(texts, table) -> pa.Table:
    """['id=1', 'id=2'] (or 'region=eu,id=7' for a two-column key) -> a table of key columns."""
    key = table.primary_key
    # Split only before `<key column>=`, so a string value may itself hold commas.
    separator = re.compile(r",\s*(?=(?:%s)\s*=)" % "|".join(map(re.escape, key)))
    values: dict = {k: [] for k in key}
    for text in texts:
        given: dict = {}
        for item in separator.split(text) if len(key) > 1 else [text]:
            column, eq, value = item.partition("=")
            column = column.strip()
            if not eq:
                raise UsageError(f"--key {text!r}: must look like {_form(key)}")
            if column not in values:
                raise UsageError(f"--key {text!r}: {column!r} is not a key column; the key of "
                                 f"table {table.name} is {key} (give {_form(key)})")
            if column in given:
                raise UsageError(f"--key {text!r}: names key column {column!r} twice")
            given[column] = value
        missing = [k for k in key if k not in given]
        if missing:
            raise UsageError(f"--key {text!r}: lacks key column(s) {', '.join(map(repr, missing))} "
                             f"(give {_form(key)})")
        for k in key:
            values[k].append(given[k])
    fields = [table.schema.field(k) for k in key]
    return pa.Table.from_arrays([_typed(values[f.name], f) for f in fields], schema=pa.schema(fields))


def _form(key) -> str:
    return ",".join(f"{k}=VALUE" for k in key)


def _typed(texts: list[str], field: pa.Field) -> pa.Array:
    try:
        return pa.array(texts, pa.string()).cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for text in texts:  # name the first value that does not parse
        try:
            pa.array([text], pa.string()).cast(field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise UsageError(f"--key: {text!r} is not a value of key column {field.name!r} "
                             f"({field.type}): {e}") from None
    raise UsageError(f"--key: the values of key column {field.name!r} do not parse as {field.type}")
