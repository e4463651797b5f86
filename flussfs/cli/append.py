"""`flussfs append`: stream input files into a table in checked chunks.

Invariants: every input file's columns are checked against the table before anything is
committed; the files then stream through one batching writer in chunks of APPEND_CHUNK_ROWS
rows (see flussfs.cli), each conformed in full before any of it is handed over. An input of at
most one chunk is all-or-nothing, a longer one commits whole chunks, and an error says how many
rows were committed. Memory holds at most two chunks.
"""
from __future__ import annotations

import os
import sys
import time

import pyarrow as pa

from ..conform import conform
from ..errors import FlussError, InvalidInputError
from ..progress import Progress, format_bytes, format_duration
from ..table import open_table
from .inputs import input_batches, input_columns, input_format


def cmd_append(args, options) -> int:
    table = open_table(args.uri, storage_options=options)
    try:
        return _append(table, args)
    finally:
        table.close()


def _append(table, args) -> int:
    # Read through the package when the command runs, so that flussfs.cli.APPEND_CHUNK_ROWS is
    # the one setting (the tests lower it to exercise errors after a committed chunk).
    from . import APPEND_CHUNK_ROWS
    schema = table.schema
    files = [(p, input_format(p, args.format)) for p in args.files]
    try:
        sizes = [os.path.getsize(p) for p, _ in files]
        for path, kind in files:  # every file's columns are checked before anything is committed
            unknown = [c for c in input_columns(path, kind, schema) if schema.get_field_index(c) < 0]
            if unknown:
                raise InvalidInputError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
                                        f"table {table.name} has {schema.names}")
    except OSError as e:
        raise InvalidInputError(f"cannot read {e.filename or 'input'}: {e.strerror or e}") from None
    before, started, rows = table.heads(), time.monotonic(), 0
    progress = Progress(sum(sizes), unit="bytes", label=f"append {table.name}")
    writer = table.writer()
    try:
        chunk, chunk_rows, done_bytes = [], 0, 0
        for (path, kind), size in zip(files, sizes):
            for batch, pos in input_batches(path, kind, schema):
                chunk.append(conform(batch, schema, f"{path} (append to {table.name})"))
                chunk_rows += batch.num_rows
                progress.set(done_bytes + pos)
                if chunk_rows >= APPEND_CHUNK_ROWS:
                    rows += _hand_over(writer, chunk)
                    chunk, chunk_rows = [], 0
            done_bytes += size
        rows += _hand_over(writer, chunk)
        writer.close()
    except (FlussError, OSError) as e:
        progress.close()
        if isinstance(e, OSError):
            e = InvalidInputError(f"cannot read {e.filename or 'input'}: {e.strerror or e}")
        raise type(e)(f"{e} ({_partial(table, writer, before)})") from None
    except BaseException:
        progress.close()
        print(f"note: {_partial(table, writer, before)}", file=sys.stderr)
        raise
    progress.close()
    elapsed = time.monotonic() - started
    _, commits, buckets = _commits_since(table, before)
    print(f"appended {rows:,} rows from {len(files)} file{'s' * (len(files) != 1)} "
          f"({format_bytes(sum(sizes))}) to {table.name} in {format_duration(elapsed)} "
          f"({rows / max(elapsed, 1e-9):,.0f} rows/s): {commits} commit{'s' * (commits != 1)} "
          f"across {buckets} bucket{'s' * (buckets != 1)}")
    return 0


def _hand_over(writer, chunk: list[pa.Table]) -> int:
    """Give a checked chunk to the writer, once the previous chunk is committed (the writer has
    no back-pressure of its own, and this bounds memory to two chunks)."""
    writer.flush()
    for rows in chunk:
        writer.append(rows)
    return sum(t.num_rows for t in chunk)


def _partial(table, writer, before) -> str:
    """After a failed append: commit the clean prefix already given (the writer's thread would
    commit it anyway, at an unknown moment) and say how much of the input that was."""
    try:
        writer.close()
        committed = _commits_since(table, before)[0]
    except FlussError as e:
        return f"could not tell what was committed before the error: {e}"
    return (f"{committed:,} rows of this input were committed to {table.name} before the error"
            if committed else "nothing was committed")


def _commits_since(table, before) -> tuple[int, int, int]:
    """(rows, commits, buckets touched) between the heads `before` and now."""
    rows = commits = buckets = 0
    for old, new in zip(before, table.heads()):
        if new is not None and (old is None or new.number != old.number):
            rows += new.end_offset - (old.end_offset if old else 0)
            commits += new.number - (old.number if old else -1)
            buckets += 1
    return rows, commits, buckets
