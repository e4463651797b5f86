"""The short commands: create, scan, tail and describe (load and keys have the others).

Invariants: each command is `cmd_x(args, options) -> exit status`, writes data to stdout
only, and leaves error reporting (and exit statuses other than 0) to main(). `tail` without
--follow stops after TAIL_IDLE_TIMEOUT_S caught up; with it, Ctrl-C ends it with status 0.
"""
from __future__ import annotations

import json
import sys

from ..table import create_table, open_table
from .arguments import parse_columns, parse_start
from .describe import LOG_TABLE, describe_table, format_description
from .engine import format_merge_engine, primary_key_options
from .filters import parse_filter
from .outputs import OUTPUTS, write_jsonl
from .schema import parse_schema

TAIL_IDLE_TIMEOUT_S = 1.0              # `tail` without --follow stops after this long caught up


def cmd_create(args, options) -> int:
    schema, pk = primary_key_options(parse_schema(args.schema), args.primary_key, args.merge_engine)
    table = create_table(args.uri, schema, buckets=args.buckets,
                         bucket_key=parse_columns(args.bucket_key), storage_options=options, **pk)
    meta = table.metadata
    key = f" on ({', '.join(meta.bucket_key)})" if meta.bucket_key else ""
    kind = (f"primary key ({', '.join(table.primary_key)}), merge engine "
            f"{format_merge_engine(table.merge_engine)}" if table.primary_key
            else LOG_TABLE)
    print(f"created table {table.name} at {args.uri}: {kind}, {len(schema)} columns, "
          f"{meta.buckets} buckets ({meta.bucket_function}{key})")
    table.close()
    return 0


def cmd_scan(args, options) -> int:
    table = open_table(args.uri, storage_options=options)
    try:
        expr = parse_filter(args.filter, table.schema) if args.filter else None
        scan = table.scan(columns=parse_columns(args.columns), filter=expr)
        out = OUTPUTS[args.format](scan.schema, sys.stdout)
        left = args.limit
        for batch in scan.to_batches():
            if left is not None:
                if left <= 0:
                    break
                batch, left = batch.slice(0, left), left - min(left, batch.num_rows)
            out.write(batch)
        out.close()
    finally:
        table.close()
    return 0


def cmd_tail(args, options) -> int:
    table = open_table(args.uri, storage_options=options)
    sub = table.subscribe(parse_start(args.start), columns=parse_columns(args.columns),
                          idle_timeout=None if args.follow else TAIL_IDLE_TIMEOUT_S)
    try:
        for batch in sub:
            write_jsonl(batch, sys.stdout)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends
    finally:
        sub.close()
        table.close()
    return 0


def cmd_describe(args, options) -> int:
    table = open_table(args.uri, storage_options=options)
    try:
        d = describe_table(table)
    finally:
        table.close()
    print(json.dumps(d, indent=2) if args.json else format_description(d))
    return 0
