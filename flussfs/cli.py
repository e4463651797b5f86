"""The `flussfs` command line: create, append, scan, tail and describe tables.

Invariants: a FlussError prints `error: <message>` on stderr and exits 1, bad usage exits 2
(argparse's convention), a broken stdout pipe or Ctrl-C during `tail --follow` exits quietly
with 0. Data goes to stdout, progress and diagnostics to stderr. `append` checks every input
file's columns against the table before it commits anything, then streams the files through
one batching writer in chunks of APPEND_CHUNK_ROWS rows, each checked in full before any of it
is handed over: an input of at most one chunk is all-or-nothing, a longer one commits whole
chunks and an error says how many rows were committed. Memory holds at most two chunks.
"""
from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import decimal
import io
import json
import os
import re
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc

from . import paths
from .conform import conform
from .errors import FlussError, InvalidInputError
from .io import parallel
from .progress import Progress, format_bytes, format_duration
from .table import create_table, open_table

READ_BATCH_ROWS = 64 * 1024            # Parquet rows read per batch
READ_BLOCK_BYTES = 4 * 2**20           # CSV / JSON bytes parsed per batch
APPEND_CHUNK_ROWS = 512 * 1024        # input rows checked in full before any of them is committed
TAIL_IDLE_TIMEOUT_S = 1.0              # `tail` without --follow stops after this long caught up
TABLE_BLOCK_ROWS = 1000                # `scan --format table` sizes its columns on this many rows
CELL_WIDTH_MAX_CHARS = 40

INPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                 ".ndjson": "jsonl", ".json": "json"}
TYPES = {"bool": pa.bool_(), "boolean": pa.bool_(), "int8": pa.int8(), "int16": pa.int16(),
         "int32": pa.int32(), "int64": pa.int64(), "uint8": pa.uint8(), "uint16": pa.uint16(),
         "uint32": pa.uint32(), "uint64": pa.uint64(), "float32": pa.float32(),
         "float64": pa.float64(), "double": pa.float64(), "string": pa.string(),
         "binary": pa.binary(), "date32": pa.date32(), "date64": pa.date64()}
EXAMPLES = """examples:
  flussfs create ./clicks --schema 'user_id:int64!,url:string,ts:timestamp[ms,UTC]' --bucket-key user_id
  flussfs append ./clicks day1.parquet day2.csv more.jsonl
  flussfs scan ./clicks --columns url,ts --filter "user_id = 42" --limit 20
  flussfs tail ./clicks --from latest --follow
  flussfs --storage-option endpoint_url=http://localhost:9000 describe s3://bucket/clicks --json
"""
_PARAM_TYPE = re.compile(r"^(timestamp|decimal|decimal128)\s*[\[(]\s*([^\])]*)[\])]$")


class UsageError(Exception):
    """Bad command-line usage (exit 2), found after argparse accepted the arguments."""


# ---- argument parsing --------------------------------------------------------------------------
def parse_type(text: str, column: str) -> pa.DataType:
    """'int64', 'timestamp[us]', 'timestamp[us,UTC]', 'decimal[10,2]' -> the Arrow type."""
    t = text.strip()
    if t.lower() in TYPES:
        return TYPES[t.lower()]
    m = _PARAM_TYPE.match(t)
    args = [a.strip() for a in m.group(2).split(",")] if m else []
    try:
        if m and m.group(1) == "timestamp" and 1 <= len(args) <= 2 and args[0] in ("s", "ms", "us", "ns"):
            tz = args[1].removeprefix("tz=").strip() if len(args) == 2 else None
            return pa.timestamp(args[0], tz=tz or None)
        if m and m.group(1).startswith("decimal") and len(args) == 2:
            return pa.decimal128(int(args[0]), int(args[1]))
    except (ValueError, pa.ArrowException) as e:
        raise UsageError(f"column {column!r}: bad type {text!r}: {e}") from None
    raise UsageError(f"column {column!r}: unknown type {text!r}; use one of "
                     f"{', '.join(TYPES)}, timestamp[unit] or timestamp[unit,TZ], decimal[p,s]")


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets: 'a:int64,t:timestamp[us,UTC]' -> 2 parts."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_schema(spec: str) -> pa.Schema:
    """'id:int64!,name:string' -> a schema; a trailing '!' makes a column non-nullable."""
    fields = []
    for item in split_top_level(spec):
        name, sep, type_text = item.partition(":")
        name, type_text = name.strip(), type_text.strip()
        if not sep or not name or not type_text:
            raise UsageError(f"schema item {item!r} must look like name:type or name:type!")
        nullable = not type_text.endswith("!")
        fields.append(pa.field(name, parse_type(type_text.rstrip("!"), name), nullable=nullable))
    if not fields:
        raise UsageError("--schema names no columns")
    return pa.schema(fields)


def parse_storage_options(items) -> dict | None:
    """['endpoint_url=http://h', 'client_kwargs.region_name=r'] -> a nested dict (None if empty).

    'true' and 'false' become booleans; every other value stays a string."""
    options: dict = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--storage-option {item!r} must look like KEY=VALUE")
        parsed = {"true": True, "false": False}.get(value.strip().lower(), value)
        *parents, leaf = key.strip().split(".")
        node = options
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(f"--storage-option {item!r}: {p!r} is already set to a value")
        if isinstance(node.get(leaf), dict):
            raise UsageError(f"--storage-option {item!r}: {leaf!r} already holds nested options")
        node[leaf] = parsed
    return options or None


def parse_start(text: str):
    """'earliest', 'latest' or 'bucket:offset,bucket:offset' -> a subscribe start."""
    if text in ("earliest", "latest"):
        return text
    start = {}
    for item in text.split(","):
        b, sep, o = item.partition(":")
        if not sep or not b.strip().isdigit() or not o.strip().isdigit():
            raise UsageError(f"--from {text!r}: use earliest, latest or bucket:offset[,bucket:offset...]")
        start[int(b)] = int(o)
    return start


def parse_columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<str>'[^']*'|"[^"]*")
                    |(?P<op>==|!=|<=|>=|=|<|>)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)
_OPS = {"=": "equal", "==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal",
        ">": "greater", ">=": "greater_equal"}


def parse_filter(text: str, schema: pa.Schema) -> pc.Expression:
    """A tiny filter language, no eval: `col OP literal` or `col is [not] null`, joined by `and`.

    OP is one of = == != < <= > >=; a literal is a number, a quoted string, true or false, and
    is cast to the column's type (so '2024-05-01T00:00:00Z' compares with a timestamp)."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"--filter: cannot read {text[pos:].strip()!r}")
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    conditions, i = [], 0
    while True:
        cond, i = _condition(tokens, i, schema, text)
        conditions.append(cond)
        if i == len(tokens):
            break
        if tokens[i] != ("word", "and"):
            raise UsageError(f"--filter {text!r}: expected 'and' before {tokens[i][1]!r}")
        i += 1
    expr = conditions[0]
    for c in conditions[1:]:
        expr = expr & c
    return expr


def _condition(tokens, i, schema, text):
    def at(k):
        return tokens[k] if k < len(tokens) else (None, None)

    kind, name = at(i)
    if kind != "word" or schema.get_field_index(name) < 0:
        raise UsageError(f"--filter {text!r}: {name!r} is not a column; the table has {schema.names}")
    field = schema.field(name)
    if at(i + 1) == ("word", "is"):
        negate = at(i + 2) == ("word", "not")
        if at(i + 2 + negate) != ("word", "null"):
            raise UsageError(f"--filter {text!r}: expected 'is null' or 'is not null' after {name!r}")
        test = pc.field(name).is_null()
        return (~test if negate else test), i + 3 + negate
    op_kind, op = at(i + 1)
    lit_kind, lit = at(i + 2)
    if op_kind != "op" or lit_kind not in ("num", "str", "word"):
        raise UsageError(f"--filter {text!r}: expected `{name} OP literal`")
    if lit_kind == "str":
        value = lit[1:-1]
    elif lit_kind == "num":
        value = float(lit) if any(c in lit for c in ".eE") else int(lit)
    elif lit in ("true", "false"):
        value = lit == "true"
    else:
        raise UsageError(f"--filter {text!r}: {lit!r} is not a literal (quote strings)")
    if isinstance(value, str) != (pa.types.is_string(field.type) or pa.types.is_temporal(field.type)
                                  or pa.types.is_decimal(field.type)):
        raise UsageError(f"--filter {text!r}: literal {lit} does not suit column {name!r} ({field.type})")
    try:
        scalar = pc.cast(pa.scalar(value), field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise UsageError(f"--filter {text!r}: literal {lit} does not fit column {name!r} "
                         f"({field.type}): {e}") from None
    return getattr(pc, _OPS[op])(pc.field(name), scalar), i + 3


# ---- output ------------------------------------------------------------------------------------
def _json_default(v):
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, (decimal.Decimal, dt.timedelta)):
        return str(v)
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def write_jsonl(batch: pa.RecordBatch, out) -> None:
    """One JSON object per row; timestamps ISO 8601, binary base64."""
    for row in batch.to_pylist():
        out.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")


def _cell(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    s = str(v).replace("\n", "\\n")
    return s if len(s) <= CELL_WIDTH_MAX_CHARS else s[:CELL_WIDTH_MAX_CHARS - 1] + "…"


class TextTable:
    """Streams rows as an aligned text table; column widths come from the first
    TABLE_BLOCK_ROWS rows (later, longer cells are cut)."""

    def __init__(self, schema: pa.Schema, out):
        self.schema, self.out, self.widths, self.rows = schema, out, None, 0
        self._pending: list[pa.RecordBatch] = []
        self._right = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                       or pa.types.is_decimal(f.type) for f in schema]

    def write(self, batch: pa.RecordBatch) -> None:
        if self.widths is None:
            self._pending.append(batch)
            if sum(b.num_rows for b in self._pending) >= TABLE_BLOCK_ROWS:
                self._start()
            return
        self._rows(batch)

    def close(self) -> None:
        if self.widths is None:
            self._start()
        self.out.write(f"({self.rows:,} row{'s' * (self.rows != 1)})\n")

    def _start(self) -> None:
        cells = [self._cells(b) for b in self._pending]
        self.widths = [len(n) for n in self.schema.names]
        for block in cells:
            self.widths = [max([w] + [len(c) for c in col]) for w, col in zip(self.widths, block)]
        self._line(self.schema.names)
        self._line(["-" * w for w in self.widths])
        for block in cells:
            self._emit(block)
        self._pending = []

    def _rows(self, batch: pa.RecordBatch) -> None:
        for start in range(0, batch.num_rows, TABLE_BLOCK_ROWS):
            self._emit(self._cells(batch.slice(start, TABLE_BLOCK_ROWS)))

    @staticmethod
    def _cells(batch: pa.RecordBatch) -> list[list[str]]:
        return [[_cell(v) for v in col.to_pylist()] for col in batch.columns]

    def _emit(self, cells) -> None:
        rows = list(zip(*cells))
        for row in rows:
            self._line(row)
        self.rows += len(rows)

    def _line(self, values) -> None:
        out = []
        for v, w, right in zip(values, self.widths, self._right):
            v = v if len(v) <= w else v[:w - 1] + "…"
            out.append(v.rjust(w) if right else v.ljust(w))
        self.out.write("  ".join(out).rstrip() + "\n")


class CsvOut:
    def __init__(self, schema: pa.Schema, out):
        self.out, self.header = out, True

    def write(self, batch: pa.RecordBatch) -> None:
        import pyarrow.csv as pacsv
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=self.header))
        self.header = False
        self.out.write(buf.getvalue().decode("utf-8"))

    def close(self) -> None:
        pass


class JsonlOut:
    def __init__(self, schema: pa.Schema, out):
        self.out = out

    def write(self, batch: pa.RecordBatch) -> None:
        write_jsonl(batch, self.out)

    def close(self) -> None:
        pass


OUTPUTS = {"table": TextTable, "csv": CsvOut, "jsonl": JsonlOut}


# ---- input files -------------------------------------------------------------------------------
def input_format(path: str, forced: str | None) -> str:
    if forced:
        return forced
    kind = INPUT_FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise UsageError(f"cannot tell the format of {path} from its extension; pass --format "
                         f"({', '.join(sorted(set(INPUT_FORMATS.values())))})")
    return kind


def input_columns(path: str, kind: str, schema: pa.Schema) -> list[str]:
    """The column names `path` holds (JSON: those of its first block), read cheaply."""
    if kind == "parquet":
        import pyarrow.parquet as pq
        return pq.read_schema(path).names
    if kind == "csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    with _json_stream(path, kind) as f:
        return _json_reader(f, schema).schema.names


def input_batches(path: str, kind: str, schema: pa.Schema):
    """Yield (record batch, bytes of `path` consumed so far) in file order."""
    if kind == "parquet":
        import pyarrow.parquet as pq
        pf, size, done = pq.ParquetFile(path), os.path.getsize(path), 0
        total = max(1, pf.metadata.num_rows)
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS):
            done += batch.num_rows
            yield batch, size * done / total
        return
    if kind == "csv":
        import pyarrow.csv as pacsv
        header = input_columns(path, kind, schema)
        types = {n: schema.field(n).type for n in header if schema.get_field_index(n) >= 0}
        with open(path, "rb") as f:
            reader = _arrow_call(path, header, pacsv.open_csv, f,
                                 read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES),
                                 convert_options=pacsv.ConvertOptions(column_types=types))
            yield from _drain(path, header, reader, f)
        return
    with _json_stream(path, kind) as f:
        reader = _arrow_call(path, schema.names, _json_reader, f, schema)
        yield from _drain(path, schema.names, reader, f, os.path.getsize(path) / max(1, _size(f)))


def _size(f) -> int:
    return f.getbuffer().nbytes if isinstance(f, io.BytesIO) else os.fstat(f.fileno()).st_size


def _drain(path, names, reader, f, scale=1.0):
    # Each batch is parsed from one block of about READ_BLOCK_BYTES; the file position itself is
    # useless for progress, since Arrow reads ahead of the batches it hands out.
    size, blocks = _size(f), 0
    while True:
        try:
            batch = _arrow_call(path, names, reader.read_next_batch)
        except StopIteration:
            return
        blocks += 1
        yield batch, min(size, blocks * READ_BLOCK_BYTES) * scale


def _json_stream(path: str, kind: str):
    """A binary stream of JSON lines; a .json file holding one array is turned into lines."""
    f = open(path, "rb")
    if kind == "json":
        head = f.read(64).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            with f:
                rows = json.load(f)
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InvalidInputError(f"{path}: a JSON array must hold objects only")
            return io.BytesIO("\n".join(json.dumps(r) for r in rows).encode("utf-8"))
    return f


def _json_reader(f, schema: pa.Schema):
    import pyarrow.json as pajson
    # Known columns are parsed to the table's types (so ISO strings become timestamps); all are
    # nullable here so that conform() reports a missing column by name. Unknown fields are kept
    # so the check before committing can name them.
    explicit = pa.schema([field.with_nullable(True) for field in schema])
    read = pajson.ReadOptions(block_size=READ_BLOCK_BYTES)
    parse = pajson.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer")
    if not hasattr(pajson, "open_json"):  # pyarrow < 20 has no streaming JSON reader
        return pajson.read_json(f, read_options=read, parse_options=parse).to_reader(
            max_chunksize=READ_BATCH_ROWS)
    return pajson.open_json(f, read_options=read, parse_options=parse)


def _arrow_call(path, names, fn, *args, **kwargs):
    """fn(...), with Arrow's parse errors turned into InvalidInputError naming file and column."""
    try:
        return fn(*args, **kwargs)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        msg = re.sub(r"In CSV column #(\d+)", lambda m: f"in column {names[int(m.group(1))]!r}"
                     if int(m.group(1)) < len(names) else m.group(0), str(e))
        if "unexpected field" in msg:  # Arrow does not say which; the table's columns help
            msg += f" (a field that is not one of the table's columns {list(names)})"
        raise InvalidInputError(f"{path}: {msg}") from None


# ---- commands ----------------------------------------------------------------------------------
def cmd_create(args, options) -> int:
    schema = parse_schema(args.schema)
    table = create_table(args.uri, schema, buckets=args.buckets,
                         bucket_key=parse_columns(args.bucket_key), storage_options=options)
    meta = table.metadata
    key = f" on ({', '.join(meta.bucket_key)})" if meta.bucket_key else ""
    print(f"created table {table.name} at {args.uri}: {len(schema)} columns, "
          f"{meta.buckets} buckets ({meta.bucket_function}{key})")
    table.close()
    return 0


def cmd_append(args, options) -> int:
    table = open_table(args.uri, storage_options=options)
    try:
        return _append(table, args)
    finally:
        table.close()


def _append(table, args) -> int:
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


def describe_table(table) -> dict:
    """Everything `describe` shows, as plain JSON-able values."""
    meta, store = table.metadata, table.store
    heads = table.heads()
    sizes = parallel(lambda b: sum(i.size for i in store.list(paths.bucket_dir(b))),
                     range(meta.buckets))
    metadata_bytes = sum(i.size for i in store.list(paths.TABLE_METADATA_DIR))
    per_bucket = [{"bucket": b, "end_offset": h.end_offset if h else 0,
                   "commits": h.number + 1 if h else 0,
                   "last_commit_ms": h.timestamp_ms if h else None,
                   "last_commit": _iso(h.timestamp_ms) if h else None, "bytes": size}
                  for b, (h, size) in enumerate(zip(heads, sizes))]
    return {
        "name": table.name, "uri": table.uri, "table_uuid": meta.table_uuid,
        "created_ms": meta.created_ms, "created": _iso(meta.created_ms),
        "schema": [{"id": fid, "name": f.name, "type": str(f.type), "nullable": f.nullable}
                   for fid, f in zip(meta.field_ids, meta.schema)],
        "primary_key": list(meta.primary_key) if meta.primary_key else None,
        "buckets": meta.buckets, "bucket_function": meta.bucket_function,
        "bucket_key": list(meta.bucket_key) if meta.bucket_key else None,
        "checkpoint_interval": meta.checkpoint_interval, "per_bucket": per_bucket,
        "totals": {"rows": sum(p["end_offset"] for p in per_bucket),
                   "commits": sum(p["commits"] for p in per_bucket),
                   "log_bytes": sum(sizes), "metadata_bytes": metadata_bytes,
                   "bytes": sum(sizes) + metadata_bytes}}


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")


def format_description(d: dict) -> str:
    """describe_table()'s dict as aligned text."""
    key = f" on ({', '.join(d['bucket_key'])})" if d["bucket_key"] else ""
    lines = [f"table        {d['name']}  ({d['uri']})", f"uuid         {d['table_uuid']}",
             f"created      {d['created']}",
             f"primary key  {', '.join(d['primary_key']) if d['primary_key'] else 'none (log table)'}",
             f"buckets      {d['buckets']}, {d['bucket_function']}{key}",
             f"checkpoints  every {d['checkpoint_interval']} commits", "", "schema"]
    w = max(len("name"), *(len(f["name"]) for f in d["schema"]))
    lines.append(f"  {'id':>3}  {'name':<{w}}  {'type':<24}  nullable")
    for f in d["schema"]:
        lines.append(f"  {f['id']:>3}  {f['name']:<{w}}  {f['type']:<24}  {'yes' if f['nullable'] else 'no'}")
    lines += ["", "buckets", f"  {'bucket':>6}  {'end offset':>12}  {'commits':>8}  "
              f"{'last commit (UTC)':<29}  {'bytes':>10}"]
    for p in d["per_bucket"]:
        lines.append(f"  {p['bucket']:>6}  {p['end_offset']:>12,}  {p['commits']:>8,}  "
                     f"{p['last_commit'] or '-':<29}  {format_bytes(p['bytes']):>10}")
    t = d["totals"]
    lines.append(f"  {'total':>6}  {t['rows']:>12,}  {t['commits']:>8,}  {'':<29}  "
                 f"{format_bytes(t['log_bytes']):>10}  (+ {format_bytes(t['metadata_bytes'])} metadata)")
    return "\n".join(lines)


def cmd_describe(args, options) -> int:
    table = open_table(args.uri, storage_options=options)
    try:
        d = describe_table(table)
    finally:
        table.close()
    print(json.dumps(d, indent=2) if args.json else format_description(d))
    return 0


# ---- main --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    so_help = ("object-store option KEY=VALUE, repeatable (endpoint_url=..., key=..., secret=...; "
               "dotted keys nest: client_kwargs.region_name=us-east-1)")
    parser = argparse.ArgumentParser(prog="flussfs", description=__doc__.splitlines()[0],
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
    p.add_argument("--bucket-key", help="column(s) hashed to pick a bucket (default round robin)")
    p.set_defaults(run=cmd_create)

    p = sub.add_parser("append", parents=[common], help="append Parquet, CSV or JSON-lines files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=sorted(set(INPUT_FORMATS.values())),
                   help="input format (default: from each file's extension)")
    p.set_defaults(run=cmd_append)

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


if __name__ == "__main__":
    sys.exit(main())
