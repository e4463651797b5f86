"""Printers for `scan` and `tail`: an aligned text table, CSV and JSON lines.

Invariants: every printer is built as Printer(schema, out), has write(batch) and close(), and
streams; only the text table holds batches back, until it has TABLE_BLOCK_ROWS rows to size its
columns on (later, longer cells are cut). JSON lines write timestamps as ISO 8601, binary base64.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json

import pyarrow as pa

TABLE_BLOCK_ROWS = 1000                # `scan --format table` sizes its columns on this many rows
CELL_WIDTH_MAX_CHARS = 40


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
