"""Argument parsing, command dispatch and exit statuses for the `flussfs` command line.

Invariants: main() never raises for expected failures: a FlussError prints `error: <message>`
on stderr and exits 1, bad usage exits 2 (argparse's convention, and UsageError after it), a
broken stdout pipe exits quietly with 0, Ctrl-C outside `tail --follow` exits 130.
"""
from __future__ import annotations

import argparse
import io
import os
import sys

from ..errors import FlussError
from .arguments import UsageError, parse_storage_options
from .commands import cmd_create, cmd_describe, cmd_scan, cmd_tail
from .engine import ENGINE_FORMS
from .inputs import INPUT_FORMATS
from .keys import cmd_delete, cmd_lookup
from .load import cmd_append, cmd_upsert
from .outputs import OUTPUTS

DESCRIPTION = ("The `flussfs` command line: create, append, scan, tail and describe tables; "
               "upsert, delete and look up rows of primary-key tables.")
EXAMPLES = """examples:
  flussfs create ./clicks --schema 'user_id:int64!,url:string,ts:timestamp[ms,UTC]' --bucket-key user_id
  flussfs append ./clicks day1.parquet day2.csv more.jsonl
  flussfs scan ./clicks --columns url,ts --filter "user_id = 42" --limit 20
  flussfs tail ./clicks --from latest --follow
  flussfs compact ./clicks                          # snapshot + Iceberg table at ./clicks/metadata
  flussfs --storage-option endpoint_url=http://localhost:9000 describe s3://bucket/clicks --json

  primary-key tables (scan shows the latest row of each key; tail shows +I/-U/+U/-D changes):
  flussfs create ./users --schema 'id:int64,name:string,visits:int64' --primary-key id --merge-engine aggregate:visits=sum
  flussfs upsert ./users users.parquet names.csv    # a file lacking columns updates only its own
  flussfs delete ./users --key id=7 --key id=9      # or: flussfs delete ./users gone.csv
  flussfs lookup ./users --key id=1 --key id=2 --format jsonl
  flussfs lookup ./users --keys-file ids.csv        # found rows on stdout, the count missing on stderr
"""


def build_parser() -> argparse.ArgumentParser:
    so_help = ("object-store option KEY=VALUE, repeatable (endpoint_url=..., key=..., secret=...; "
               "dotted keys nest: client_kwargs.region_name=us-east-1)")
    parser = argparse.ArgumentParser(prog="flussfs", description=DESCRIPTION,
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage-option", dest="storage_option_global", action="append",
                        default=[], metavar="KEY=VALUE", help=so_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help=so_help)
    common.add_argument("uri", metavar="URI", help="table location: a local path or s3://bucket/prefix")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("create", parents=[common], help="create a table")
    p.add_argument("--schema", required=True, help="columns, e.g. 'id:int64!,name:string,"
                   "ts:timestamp[us,UTC]' ('!' = non-nullable)")
    p.add_argument("--buckets", type=int, default=4, help="number of buckets (default 4)")
    p.add_argument("--bucket-key", help="column(s) hashed to pick a bucket (default round robin; "
                   "the primary key for primary-key tables)")
    p.add_argument("--primary-key", metavar="COL[,COL...]",
                   help="make a primary-key table (upsert/delete/lookup) keyed on these columns; "
                   "they become non-nullable (default: an append-only log table)")
    p.add_argument("--merge-engine", metavar="ENGINE",
                   help=f"how a key's changes merge, with --primary-key only: {ENGINE_FORMS}; "
                   "default last_row")
    p.set_defaults(run=cmd_create)

    formats = sorted(set(INPUT_FORMATS.values()))
    format_help = "input format (default: from each file's extension)"
    p = sub.add_parser("append", parents=[common], help="append Parquet, CSV or JSON-lines files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=formats, help=format_help)
    p.set_defaults(run=cmd_append)

    p = sub.add_parser("upsert", parents=[common], help="upsert rows from files into a primary-key "
                       "table (a file lacking nullable columns is a partial update)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=formats, help=format_help)
    p.set_defaults(run=cmd_upsert)

    key_help = ("a key, repeatable: COL=VALUE, or COL=VALUE,COL=VALUE for a key of several "
                "columns; values are parsed to the column's type")
    p = sub.add_parser("delete", parents=[common], help="delete keys from a primary-key table, "
                       "given in files of the key columns or as --key")
    p.add_argument("files", nargs="*", metavar="FILE", help="files holding the key columns only")
    p.add_argument("--key", action="append", default=[], metavar="COL=VALUE[,COL=VALUE]",
                   help=key_help)
    p.add_argument("--format", choices=formats, help=format_help)
    p.set_defaults(run=cmd_delete)

    p = sub.add_parser("lookup", parents=[common], help="print the current rows of keys that exist")
    p.add_argument("--key", action="append", default=[], metavar="COL=VALUE[,COL=VALUE]",
                   help=key_help)
    p.add_argument("--keys-file", metavar="FILE", help="a file holding the key columns only")
    p.add_argument("--keys-format", choices=formats, help="format of --keys-file (default: from "
                   "its extension)")
    p.add_argument("--format", choices=sorted(OUTPUTS), default="table")
    p.set_defaults(run=cmd_lookup)

    p = sub.add_parser("scan", parents=[common], help="print the table's rows")
    p.add_argument("--columns", help="comma-separated columns, in the order wanted")
    p.add_argument("--filter", help="e.g. \"score >= 0.5 and name = 'x'\" (OPs: = != < <= > >=, "
                   "'is [not] null')")
    p.add_argument("--limit", type=int, help="print at most this many rows")
    p.add_argument("--format", choices=sorted(OUTPUTS), default="table")
    p.set_defaults(run=cmd_scan)

    p = sub.add_parser("tail", parents=[common], help="print changes as JSON lines")
    p.add_argument("--from", dest="start", default="earliest",
                   help="earliest (default), latest, or bucket:offset[,bucket:offset...]")
    p.add_argument("--columns", help="comma-separated user columns (system columns always come)")
    p.add_argument("--follow", "-f", action="store_true", help="keep tailing until Ctrl-C")
    p.set_defaults(run=cmd_tail)

    p = sub.add_parser("describe", parents=[common], help="schema, buckets, offsets and sizes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_describe)

    from compactor import cli as compact_cli
    p = sub.add_parser("compact", parents=[common], help="merge the log into a Parquet snapshot and "
                       "publish it as an Iceberg table at the table URI")
    compact_cli.add_arguments(p)
    p.set_defaults(run=compact_cli.run)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or bad usage (2), already printed by argparse
        return e.code if isinstance(e.code, int) else 2
    try:
        options = parse_storage_options(args.storage_option_global + args.storage_option)
        if getattr(args, "limit", None) is not None and args.limit < 0:
            raise UsageError("--limit must be >= 0")
        return args.run(args, options)
    except UsageError as e:
        print(f"flussfs {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FlussError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (`| head`): not an error
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    # Python flushes stdout at exit; point it at /dev/null so that flush cannot fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
