"""`append`, `upsert` and `delete FILE...`: stream input files into a table in checked chunks.

Invariants: every input file's columns are checked against the table before anything is
committed (append: no unknown column; upsert: no unknown column, every non-nullable one, and all
of them unless the merge engine takes partial updates; delete: exactly the key columns). The
files then stream in chunks of APPEND_CHUNK_ROWS rows (see flussfs.cli), each conformed in full
before any of it is committed, and chunks commit in input order. Appends go through one batching
writer; upserts and deletes are one library call per run of files with the same columns, since
an upsert passes each file's columns as given (a file lacking nullable columns is a partial
update). An input of at most one chunk (and, for upsert, one set of columns) is all-or-nothing;
otherwise an error says how many rows were committed. Memory holds at most two chunks.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass

import pyarrow as pa

from ..conform import conform
from ..engines import allows_partial_updates
from ..errors import FlussError, InvalidInputError
from ..progress import Progress, format_bytes, format_duration
from ..table import open_table
from .engine import format_merge_engine
from .inputs import input_batches, input_columns, input_format, json_columns

_PAST = {"append": "appended", "upsert": "upserted", "delete": "deleted"}


@dataclass(frozen=True)
class InputFile:
    """One input file, checked: the table columns it gives, in table order, and the schema its
    values are parsed with (those columns' fields)."""
    path: str
    kind: str
    size_bytes: int
    columns: tuple
    read_schema: pa.Schema


def cmd_append(args, options) -> int:
    return _run(args, options, "append")


def cmd_upsert(args, options) -> int:
    return _run(args, options, "upsert")


def _run(args, options, verb: str) -> int:
    table = open_table(args.uri, storage_options=options)
    try:
        return load_files(table, args.files, args.format, verb)
    finally:
        table.close()


def check_inputs(table, paths, forced_format: str | None, verb: str) -> list[InputFile]:
    """Every file's format and columns, checked for `verb` (append, upsert, delete, lookup)."""
    kinds = [(str(p), input_format(str(p), forced_format)) for p in paths]
    check_table_kind(table, verb)
    try:
        files = []
        for path, kind in kinds:
            exact = verb != "append" and kind in ("json", "jsonl")
            names = json_columns(path, kind) if exact else input_columns(path, kind, table.schema)
            columns = _check_columns(table, path, names, verb)
            files.append(InputFile(path, kind, os.path.getsize(path), columns,
                                   pa.schema([table.schema.field(c) for c in columns])))
        return files
    except OSError as e:
        raise InvalidInputError(f"cannot read {e.filename or 'input'}: {e.strerror or e}") from None


def conformed_batches(table, file: InputFile, verb: str):
    """Yield (rows of file.columns, conformed to the table's types, bytes read so far)."""
    what = f"{file.path} ({verb} to {table.name})"
    target = table.schema if verb in ("append", "upsert") else file.read_schema
    for batch, pos in input_batches(file.path, file.kind, file.read_schema):
        rows = conform(batch, target, what)
        yield (rows.select(list(file.columns)) if verb == "upsert" else rows), pos


def load_files(table, paths, forced_format: str | None, verb: str) -> int:
    # Read through the package when the command runs, so that flussfs.cli.APPEND_CHUNK_ROWS is
    # the one setting (the tests lower it to exercise errors after a committed chunk).
    from . import APPEND_CHUNK_ROWS
    files = check_inputs(table, paths, forced_format, verb)
    before, started, rows = table.heads(), time.monotonic(), 0
    progress = Progress(sum(f.size_bytes for f in files), unit="bytes", label=f"{verb} {table.name}")
    sink = _WriterSink(table) if verb == "append" else _CallSink(table, verb)
    try:
        chunk, chunk_rows, done_bytes = [], 0, 0
        for file in files:
            for batch, pos in conformed_batches(table, file, verb):
                chunk.append((file.columns, batch))
                chunk_rows += batch.num_rows
                progress.set(done_bytes + pos)
                if chunk_rows >= APPEND_CHUNK_ROWS:
                    sink.give(chunk)
                    rows, chunk, chunk_rows = rows + chunk_rows, [], 0
            done_bytes += file.size_bytes
        sink.give(chunk)
        rows += chunk_rows
        sink.finish()
    except (FlussError, OSError) as e:
        progress.close()
        if isinstance(e, OSError):
            e = InvalidInputError(f"cannot read {e.filename or 'input'}: {e.strerror or e}")
        raise type(e)(f"{e} ({sink.partial(before, e)})") from None
    except BaseException:
        progress.close()
        print(f"note: {sink.partial(before, None)}", file=sys.stderr)
        raise
    progress.close()
    elapsed = time.monotonic() - started
    _, commits, buckets = commits_since(table, before)
    noun = ("key" if verb == "delete" else "row") + "s" * (rows != 1)
    source = (f"{len(files)} file{'s' * (len(files) != 1)} "
              f"({format_bytes(sum(f.size_bytes for f in files))})")
    where = f"listed in {source} from" if verb == "delete" else f"from {source} to"
    print(f"{_PAST[verb]} {rows:,} {noun} {where} {table.name} in {format_duration(elapsed)} "
          f"({rows / max(elapsed, 1e-9):,.0f} {noun.rstrip('s')}s/s): {commits} commit{'s' * (commits != 1)} "
          f"across {buckets} bucket{'s' * (buckets != 1)}")
    return 0


def check_table_kind(table, verb: str) -> None:
    if verb == "append" and table.primary_key:
        raise InvalidInputError(f"table {table.name} has a primary key "
                                f"({', '.join(table.primary_key)}): use upsert, not append")
    if verb != "append" and not table.primary_key:
        hint = " (use append)" if verb == "upsert" else ""
        raise InvalidInputError(f"table {table.name} is a log table (append-only): {verb} needs "
                                f"a primary-key table{hint}")


def _check_columns(table, path: str, names, verb: str) -> tuple:
    """The table columns `path` gives `verb`, in table order, or InvalidInputError naming them."""
    schema, key = table.schema, table.primary_key
    if verb in ("delete", "lookup"):
        extra = [c for c in names if c not in key]
        missing = [c for c in key if c not in names]
        if extra or missing:
            raise InvalidInputError(
                f"{path}: {verb} takes the key column(s) {key} and nothing else; the file "
                + (f"has extra column(s) {', '.join(map(repr, extra))}" if extra else "")
                + (" and " if extra and missing else "")
                + (f"lacks {', '.join(map(repr, missing))}" if missing else ""))
        return tuple(key)
    unknown = [c for c in names if schema.get_field_index(c) < 0]
    if unknown:
        raise InvalidInputError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
                                f"table {table.name} has {schema.names}")
    if verb == "append":
        return tuple(schema.names)
    missing = [f.name for f in schema if not f.nullable and f.name not in names]
    if missing:
        raise InvalidInputError(f"{path}: lacks non-nullable column(s) {', '.join(map(repr, missing))}"
                                f", which every upsert must give (the key columns among them)")
    given = tuple(n for n in schema.names if n in names)
    if len(given) < len(schema) and not allows_partial_updates(table.merge_engine):
        lacking = [n for n in schema.names if n not in given]
        raise InvalidInputError(f"{path}: lacks column(s) {', '.join(map(repr, lacking))}, which "
                                f"makes a partial update; table {table.name} merges by "
                                f"{format_merge_engine(table.merge_engine)}, which takes whole "
                                f"rows only (partial updates need last_row or aggregate)")
    return given


class _WriterSink:
    """append: one batching writer commits a chunk in the background while the next is read."""

    def __init__(self, table):
        self.table, self.writer = table, table.writer()

    def give(self, chunk) -> None:
        self.writer.flush()  # the previous chunk first: the writer has no back-pressure of its own
        for _, rows in chunk:
            self.writer.append(rows)

    def finish(self) -> None:
        self.writer.close()

    def partial(self, before, error) -> str:
        """After a failure: commit the clean prefix already given (the writer's thread would
        commit it anyway, at an unknown moment) and say how much of the input that was."""
        try:
            self.writer.close()
            committed = commits_since(self.table, before)[0]
        except FlussError as e:
            return f"could not tell what was committed before the error: {e}"
        return _committed(self.table, committed, "rows")


class _CallSink:
    """upsert and delete: one library call per run of rows with the same columns, in order."""

    def __init__(self, table, verb: str):
        self.table, self.call, self.verb = table, getattr(table, verb), verb
        self.committed = self.in_flight = 0

    def give(self, chunk) -> None:
        for _, run in itertools.groupby(chunk, key=lambda item: item[0]):
            rows = pa.concat_tables([t for _, t in run])
            self.in_flight = rows.num_rows
            self.call(rows)
            self.committed, self.in_flight = self.committed + rows.num_rows, 0

    def finish(self) -> None:
        pass

    def partial(self, before, error) -> str:
        noun = "keys" if self.verb == "delete" else "rows"
        said = _committed(self.table, self.committed, noun)
        # A rejected call commits nothing (API.md); any other failure may have committed some
        # buckets of the call before it failed, since each bucket commits on its own.
        if self.in_flight and not isinstance(error, InvalidInputError):
            said += (f"; of the {self.in_flight:,} {noun} being committed when it failed, some "
                     f"buckets may have been committed")
        return said


def _committed(table, count: int, noun: str) -> str:
    return (f"{count:,} {noun} of this input were committed to {table.name} before the error"
            if count else "nothing was committed")


def commits_since(table, before) -> tuple[int, int, int]:
    """(log records, commits, buckets touched) between the heads `before` and now."""
    rows = commits = buckets = 0
    for old, new in zip(before, table.heads()):
        if new is not None and (old is None or new.number != old.number):
            rows += new.end_offset - (old.end_offset if old else 0)
            commits += new.number - (old.number if old else -1)
            buckets += 1
    return rows, commits, buckets
