"""The `flussfs` command line: create, append, scan, tail and describe tables; upsert, delete
and look up rows of primary-key tables.

Invariants: a FlussError prints `error: <message>` on stderr and exits 1, bad usage exits 2
(argparse's convention), a broken stdout pipe or Ctrl-C during `tail --follow` exits quietly
with 0. Data goes to stdout, progress and diagnostics to stderr. `append`, `upsert` and
`delete FILE...` check every input file's columns against the table before they commit
anything, then stream the files in chunks of APPEND_CHUNK_ROWS rows, each checked in full before
any of it is committed: an input of at most one chunk (for upsert, of one set of columns) is
all-or-nothing, a longer one commits whole chunks and an error says how many rows were
committed. Memory holds at most two chunks. `lookup` exits 0 when keys are missing.

Layout: app (argparse wiring, dispatch, exit codes), arguments (UsageError and small option
values), schema (--schema), engine (--primary-key and --merge-engine), filters (--filter),
inputs (files read by `append`, `upsert`, `delete`, `lookup`), load (their chunked commits),
keys (--key, `delete` and `lookup`), outputs (scan/tail/lookup printers), describe
(`describe`'s facts and text), commands (create, scan, tail, describe).
"""
from __future__ import annotations

from .arguments import UsageError, parse_columns, parse_start, parse_storage_options
from .describe import describe_table, format_description
from .engine import format_merge_engine, parse_merge_engine
from .filters import parse_filter
from .keys import parse_keys
from .app import build_parser, main
from .outputs import OUTPUTS, CsvOut, JsonlOut, TextTable, write_jsonl
from .schema import parse_schema, parse_type

# The one place this limit lives: `append`, `upsert` and `delete` read it from this package when
# they run, so setting flussfs.cli.APPEND_CHUNK_ROWS (as the tests do) changes the chunk size.
APPEND_CHUNK_ROWS = 512 * 1024        # input rows checked in full before any of them is committed

__all__ = ["APPEND_CHUNK_ROWS", "OUTPUTS", "CsvOut", "JsonlOut", "TextTable", "UsageError",
           "build_parser", "describe_table", "format_description", "format_merge_engine", "main",
           "parse_columns", "parse_filter", "parse_keys", "parse_merge_engine", "parse_schema",
           "parse_start", "parse_storage_options", "parse_type", "write_jsonl"]
