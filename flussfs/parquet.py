"""Parquet files of snapshots (format_spec/spec-v1.md, section 20.3): Iceberg-compatible
column types with field ids, zstd, row-group statistics; and reading them back as the table's
own Arrow types.

Invariants: every column of a data file carries its table field id (`PARQUET:field_id`), so
Iceberg readers resolve columns by id; the casts both ways are lossless (types Iceberg lacks
are widened, and create_table refuses the ones that cannot be widened losslessly).
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .cache import derived
from .errors import CorruptObjectError, InvalidInputError

FIELD_ID = b"PARQUET:field_id"
ROW_GROUP_ROWS = 16 * 1024      # a point lookup fetches and decodes one row group (~300 KB)
ZSTD_LEVEL = 3
# Iceberg's reserved field ids of position-delete files (Iceberg spec, "Position Delete Files").
DELETE_FILE_PATH_ID, DELETE_POS_ID = 2147483546, 2147483545
POSITION_DELETE_SCHEMA = pa.schema([
    pa.field("file_path", pa.string(), nullable=False, metadata={FIELD_ID: str(DELETE_FILE_PATH_ID)}),
    pa.field("pos", pa.int64(), nullable=False, metadata={FIELD_ID: str(DELETE_POS_ID)})])

_WIDENED = {pa.int8(): pa.int32(), pa.int16(): pa.int32(), pa.uint8(): pa.int32(),
            pa.uint16(): pa.int32(), pa.uint32(): pa.int64(), pa.large_string(): pa.string(),
            pa.large_binary(): pa.binary(), pa.date64(): pa.date32()}


def iceberg_type(t: pa.DataType, column: str) -> pa.DataType:
    """The Arrow type a column is stored as in snapshots (one Iceberg has)."""
    if t in _WIDENED:
        return _WIDENED[t]
    if t == pa.uint64():
        raise InvalidInputError(f"column {column!r}: uint64 has no lossless Iceberg type "
                                f"(use int64, or decimal(20, 0))")
    if pa.types.is_timestamp(t):
        if t.unit == "ns":
            raise InvalidInputError(f"column {column!r}: timestamp[ns] has no Iceberg v2 type "
                                    f"(use microseconds)")
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        if t == pa.time64("ns"):
            raise InvalidInputError(f"column {column!r}: time64[ns] has no Iceberg type (use us)")
        return pa.time64("us")
    return t


def check_types(schema: pa.Schema) -> None:
    """Refuse, naming the column, any type a snapshot could not store losslessly."""
    for f in schema:
        iceberg_type(f.type, f.name)


def snapshot_schema(meta, names=None) -> pa.Schema:
    """The Arrow schema of a table's data files (or of the columns `names`), with field ids."""
    names = meta.schema.names if names is None else names
    return pa.schema([pa.field(n, iceberg_type(meta.schema.field(n).type, n),
                               nullable=meta.schema.field(n).nullable,
                               metadata={FIELD_ID: str(meta.field_id(n))}) for n in names])


def to_snapshot(rows: pa.Table, meta) -> pa.Table:
    """Table rows (all columns, table types) as a data file holds them."""
    return rows.select(meta.schema.names).cast(snapshot_schema(meta))


def from_snapshot(rows: pa.Table, meta, names) -> pa.Table:
    """Data-file rows back as the table's own types, columns `names`."""
    schema = pa.schema([meta.schema.field(n) for n in names])
    return rows.select(names).cast(schema)


def location(uri: str, key: str) -> str:
    """The absolute location of a table-relative key, as Iceberg manifests name files."""
    if "://" not in uri:
        return os.path.join(os.path.abspath(os.path.expanduser(uri)), key)
    if uri.startswith("file://"):
        return os.path.join(os.path.abspath(uri[len("file://"):]), key)
    return f"{uri.rstrip('/')}/{key}".replace("s3a://", "s3://", 1)


def encode(rows: pa.Table, sorting_columns=None) -> tuple[bytes, pq.FileMetaData]:
    """A Parquet file of `rows` (zstd, statistics, field ids from the schema metadata; see
    _encodings for the column encodings)."""
    sink = io.BytesIO()
    sorting = [pq.SortingColumn(rows.schema.get_field_index(c)) for c in sorting_columns or ()]
    dictionary, encodings = _encodings(rows, sorting_columns or ())
    with pq.ParquetWriter(sink, rows.schema, compression="zstd", compression_level=ZSTD_LEVEL,
                          write_statistics=True, sorting_columns=sorting or None,
                          use_dictionary=dictionary, column_encoding=encodings or None,
                          write_page_checksum=True, store_schema=False) as writer:
        writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
    data = sink.getvalue()
    return data, pq.read_metadata(io.BytesIO(data))


DICTIONARY_SHARE_MAX = 0.25     # dictionary-encode a column whose sample is at most this distinct
DICTIONARY_SAMPLE_ROWS = 65536


def _encodings(rows: pa.Table, sorting_columns) -> tuple[list[str], dict]:
    """(columns to dictionary-encode, {column: encoding}). A row group holds few enough rows
    that a dictionary of a high-cardinality column never overflows, so Parquet writers would
    keep one as large as the data: slower to decode and larger. Only columns with repeating
    values get one. An integer first sort column is monotonic: DELTA_BINARY_PACKED."""
    first = sorting_columns[0] if sorting_columns else None
    delta = {first: "DELTA_BINARY_PACKED"} if first and pa.types.is_integer(
        rows.schema.field(first).type) else {}
    sample = rows.slice(0, DICTIONARY_SAMPLE_ROWS)
    limit = DICTIONARY_SHARE_MAX * sample.num_rows
    dictionary = [f.name for f in rows.schema
                  if f.name not in delta and _may_repeat(f.type) and sample.num_rows
                  and pc.count_distinct(sample.column(f.name)).as_py() <= limit]
    return dictionary, delta


def _may_repeat(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_date(t)
            or pa.types.is_timestamp(t) or pa.types.is_decimal(t))


class StoreFile(io.RawIOBase):
    """A read-only, seekable file over one object, reading by ranged GETs (for Parquet); reads
    that fall inside a `fetched` range (start -> bytes) are served from memory."""

    def __init__(self, store, key: str, size: int, fetched: dict | None = None):
        self.store, self.key, self.size, self.pos = store, key, size, 0
        self.fetched = fetched or {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def readinto(self, buffer) -> int:
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0
        data = self._fetched(self.pos, end)
        if data is None:
            data = self.store.get(self.key, self.pos, end)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


    def _fetched(self, start: int, end: int) -> bytes | None:
        for at, data in self.fetched.items():
            if at <= start and end <= at + len(data):
                return data[start - at:end - at]
        return None


@contextmanager
def reading(key: str):
    """Turn Parquet decoding failures (a failed page checksum, a bad footer) into
    CorruptObjectError naming the object."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptObjectError(f"{key}: not a readable Parquet file: {e}") from None


def open_file(store, key: str, size: int, whole: bool = False) -> pq.ParquetFile:
    """A ParquetFile over a stored object: with `whole`, fetched by one GET and decoded in
    memory (Arrow's own threads, no Python reads); else footer and column chunks are fetched
    on demand by ranged GETs."""
    try:
        source = pa.BufferReader(store.get(key)) if whole else pa.PythonFile(
            StoreFile(store, key, size), mode="r")
        return pq.ParquetFile(source, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptObjectError(f"{key}: not a readable Parquet file: {e}") from None


# ---- footers and row groups of immutable data files -----------------------------------------
RANGE_GAP_MAX = 256 * 1024        # column chunks closer than this are fetched by one GET...
RANGE_BYTES_MAX = 8 * 1024 * 1024  # ...unless that GET would grow past this


def footer(store, key: str, size: int) -> pq.FileMetaData:
    """The parsed footer of a snapshot data file, read once per process (flussfs.cache)."""
    return derived.get(store, "footer", key, lambda: open_file(store, key, size).metadata,
                       lambda metadata: 4 * metadata.serialized_size)  # parsed: ~4x the bytes


def read_row_groups(store, key: str, size: int, groups: list[int], names: list[str],
                    threads: bool = True, probe=None) -> tuple[list[int], pa.Table]:
    """(row groups read, their columns `names`): the footer from the cache, the column chunks
    by as few ranged GETs as their layout allows (issued concurrently), decoded with page CRCs.
    With `probe` (columns, row-group table -> bool), each group's `columns` are decoded first
    and its other columns only if probe says it holds something wanted: one fetch, less
    decoding."""
    from .io import parallel
    metadata = footer(store, key, size)
    ranges = _chunk_ranges(metadata, groups, set(names))
    fetched = dict(parallel(lambda r: (r[0], store.get(key, r[0], r[1])), ranges))
    source = pa.PythonFile(StoreFile(store, key, size, fetched), mode="r")
    with reading(key):
        pf = pq.ParquetFile(source, metadata=metadata, page_checksum_verification=True)
        probed = [pf.read_row_group(g, columns=probe[0], use_threads=threads)
                  for g in groups] if probe else None
    if probe:  # outside reading(): a failure of `holds` is no corruption of the file
        groups = [g for g, rows in zip(groups, probed) if probe[1](rows)]
    with reading(key):
        return groups, pf.read_row_groups(groups, columns=names, use_threads=threads)


def _chunk_ranges(metadata: pq.FileMetaData, groups: list[int], names: set) -> list[tuple]:
    """[start, end) byte ranges covering the wanted column chunks, merged across small gaps."""
    spans = []
    for g in groups:
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema.split(".")[0] in names:
                start = chunk.data_page_offset
                if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                    start = min(start, chunk.dictionary_page_offset)
                spans.append((start, start + chunk.total_compressed_size))
    merged = []
    for start, end in sorted(spans):
        if (merged and start - merged[-1][1] <= RANGE_GAP_MAX
                and end - merged[-1][0] <= RANGE_BYTES_MAX):
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def read(store, key: str, columns=None) -> pa.Table:
    """A whole (small or wanted-whole) Parquet object, columns `columns`."""
    try:
        return pq.read_table(io.BytesIO(store.get(key)), columns=columns,
                             page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptObjectError(f"{key}: not a readable Parquet file: {e}") from None
