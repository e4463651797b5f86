"""Input files for `append`, `upsert`, `delete` and `lookup --keys-file`: Parquet, CSV, JSON
lines and JSON arrays, read as record batches.

Invariants: files are streamed in batches of about READ_BATCH_ROWS rows or READ_BLOCK_BYTES
bytes (a .json array is the one exception: it is loaded whole); known columns are parsed to the
types of the schema given; Arrow's parse errors become InvalidInputError naming the file and
column; an unknown extension without --format is a UsageError. A JSON batch holds every column
of the schema given (Arrow cannot tell an absent field from a null), so a caller that needs the
columns a JSON file really holds asks json_columns() and reads with a schema of just those.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re

import pyarrow as pa

from ..errors import InvalidInputError
from .arguments import UsageError

READ_BATCH_ROWS = 64 * 1024            # Parquet rows read per batch
READ_BLOCK_BYTES = 4 * 2**20           # CSV / JSON bytes parsed per batch

INPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                 ".ndjson": "jsonl", ".json": "json"}


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


def json_columns(path: str, kind: str) -> list[str]:
    """Every field that some row of a JSON file holds, in order of first appearance.

    A full pass in Python: `upsert` needs the exact columns, since a column a file lacks is
    left unchanged while a column it holds overwrites (with null where a row lacks it)."""
    names: dict = {}
    with _json_stream(path, kind) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise InvalidInputError(f"{path}: line {number} is not JSON: {e}") from None
            if not isinstance(row, dict):
                raise InvalidInputError(f"{path}: line {number} is not a JSON object")
            names.update(dict.fromkeys(row))
    return list(names)


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
