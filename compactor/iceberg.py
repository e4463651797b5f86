"""Publishing flussfs snapshots as Apache Iceberg format-version 2 tables at the table URI, with no
catalog (format_spec/spec-v1.md, section 20): `metadata/v<N>.metadata.json` describes snapshot N,
`metadata/version-hint.text` names the newest version.

Invariants:
- v<N> describes flussfs snapshot N and nothing else: its current Iceberg snapshot has sequence
  number N and the summary `flussfs.snapshot` = N; every file's data sequence number is its
  FileRef.epoch, so a bucket's position-delete file (epoch >= that of every file it names)
  applies to exactly the data files it was written against.
- Everything goes through the store with put-if-absent, manifests and the manifest list before
  v<N>; v<N> is the commit point and is never overwritten (a racing publisher of the same
  snapshot wins or loses as a whole; the loser deletes the manifests it wrote, which nothing
  references).
- Each bucket has at most one data manifest and one delete manifest,
  `metadata/m-<bucket>-<data|deletes>-<uuid>.avro`; a bucket whose files and delete file did not
  change keeps its previous manifests, so publishing costs grow with the buckets that changed.
  Every name under metadata/ but `v<N>.metadata.json` and `version-hint.text` sorts before "v",
  so listing the versions reads past the manifests.
- With a one-column bucket key the spec is `bucket[buckets](column)` and every file of bucket b
  has partition value b (flussfs's bucket function is Iceberg's bucket transform); otherwise the
  table is unpartitioned.
"""
from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.io.pyarrow import (compute_statistics_plan, data_file_statistics_from_parquet_metadata,
                                  parquet_path_to_id_mapping, pyarrow_to_schema)
from pyiceberg.manifest import (DataFile, DataFileContent, FileFormat, ManifestContent, ManifestEntry,
                                ManifestEntryStatus, ManifestFile, ManifestWriterV2, read_manifest_list,
                                write_manifest_list)
from pyiceberg.partitioning import PartitionField, PartitionSpec, UNPARTITIONED_PARTITION_SPEC
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadataUtil, TableMetadataV2
from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
from pyiceberg.table.snapshots import MetadataLogEntry, Operation, Snapshot, SnapshotLogEntry, Summary
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder, UNSORTED_SORT_ORDER
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.typedef import Record
from pyiceberg.types import DoubleType, FloatType

from flussfs import paths
from flussfs.errors import CorruptObjectError, FlussError, InvalidInputError, NotFoundError, StorageError
from flussfs.format.snapshot import BucketState, FileRef
from flussfs.parquet import FIELD_ID, POSITION_DELETE_SCHEMA, location, open_file, snapshot_schema
from flussfs.storage import PutOutcome

from . import gc
from .iceberg_io import StoreFileIO

FORMAT_VERSION = 2
RETENTION_MS_DEFAULT = gc.RETENTION_MS_DEFAULT  # Iceberg snapshots kept as long as the files they name
METADATA_LOG_ENTRIES_MAX = 100                # Iceberg's write.metadata.previous-versions-max
VERSION_HINT_ROUNDS_MAX = 16                  # list/write rounds before the hint gives up racing
BUCKETS_PARALLEL_MAX = 8                      # changed buckets whose manifests are built at once
AVRO_CODEC = "deflate"
SNAPSHOT_PROPERTY = "flussfs.snapshot"
OFFSETS_PROPERTY = "flussfs.offsets"
PARTITION_FIELD_ID = 1000
SORT_ORDER_ID = 1
_MANIFEST = re.compile(r"/m-(\d{5})-(data|deletes)-[0-9a-f]{32}\.avro$")
_VERSION = re.compile(r"v(\d+)\.metadata\.json")


def metadata_location(uri: str, n: int) -> str:
    """Where v<n>.metadata.json of the table at `uri` lives, as Iceberg readers are given it."""
    return location(uri, paths.iceberg_metadata(n))


def published_versions(store) -> list[int]:
    """The numbers N of every metadata/v<N>.metadata.json, ascending (one LIST past the manifests)."""
    found = []
    for info in store.list(paths.ICEBERG_METADATA_DIR, start_after=paths.ICEBERG_METADATA_DIR + "v"):
        m = _VERSION.fullmatch(info.key[len(paths.ICEBERG_METADATA_DIR):])
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def write_version_hint(store, latest_n: int | None = None) -> int:
    """Point version-hint.text at the newest published version (at least `latest_n`, which the
    caller has just published), and keep checking until a LIST and the hint agree, so a racing
    publisher that wrote an older number after us is corrected. Returns the number the hint holds."""
    newest = 0
    for _ in range(VERSION_HINT_ROUNDS_MAX):
        newest = max(published_versions(store), default=0)
        if newest < (latest_n or 1):
            raise NotFoundError(f"Iceberg metadata v{latest_n or 1} or newer is not published in {store.url}")
        if read_hint(store) != newest:
            store.put(paths.VERSION_HINT, str(newest).encode())
            continue  # re-list: a newer version may have landed while we wrote
        return newest
    return newest


def read_hint(store) -> int | None:
    try:
        return int(store.get(paths.VERSION_HINT).decode().strip())
    except NotFoundError:
        return None
    except ValueError:
        return None  # unreadable: an advisory object, rewritten below


# --- what the Iceberg table looks like ---------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The Iceberg schema, partition spec and sort order of a flussfs table."""
    schema: Schema
    spec: PartitionSpec
    sort_order: SortOrder

    def partition(self, bucket: int) -> Record:
        return Record(bucket) if self.spec.fields else Record()


def layout(meta, schema_id: int | None = None) -> Layout:
    """The Iceberg view of table metadata `meta` (schema id `meta.schema_id` unless given)."""
    arrow = snapshot_schema(meta)
    fields = pyarrow_to_schema(arrow, format_version=FORMAT_VERSION).fields
    key_ids = [meta.field_id(c) for c in meta.primary_key or ()]
    if any(isinstance(f.field_type, (FloatType, DoubleType)) for f in fields if f.field_id in key_ids):
        key_ids = []  # Iceberg forbids float identifier fields; the table is still sorted by them
    schema = Schema(*fields, schema_id=meta.schema_id if schema_id is None else schema_id,
                    identifier_field_ids=key_ids)
    spec = UNPARTITIONED_PARTITION_SPEC
    if meta.bucket_key and len(meta.bucket_key) == 1:
        column = meta.bucket_key[0]
        spec = PartitionSpec(PartitionField(source_id=meta.field_id(column), field_id=PARTITION_FIELD_ID,
                                            transform=BucketTransform(meta.buckets),
                                            name=f"{column}_bucket"), spec_id=0)
    order = UNSORTED_SORT_ORDER
    if meta.primary_key:
        order = SortOrder(*[SortField(source_id=meta.field_id(c), transform=IdentityTransform(),
                                      direction=SortDirection.ASC, null_order=NullOrder.NULLS_FIRST)
                            for c in meta.primary_key], order_id=SORT_ORDER_ID)
    return Layout(schema, spec, order)


_DELETE_SCHEMA = pyarrow_to_schema(POSITION_DELETE_SCHEMA, format_version=FORMAT_VERSION)


class _DeleteManifestWriter(ManifestWriterV2):
    """pyiceberg's v2 manifest writer hard-codes data content; this one writes delete manifests."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


# --- publishing ----------------------------------------------------------------------------------

@dataclass
class _Publication:
    """What building the manifests of one snapshot needs."""
    store: object
    uri: str
    fio: StoreFileIO
    layout: Layout
    number: int
    snapshot_id: int
    written: list  # keys of the manifests and manifest list this publication wrote

    def location(self, key: str) -> str:
        return location(self.uri, key)


def publish(store, uri: str, meta, snapshot, previous, *, retention_ms: int = RETENTION_MS_DEFAULT) -> str:
    """Publish flussfs snapshot N = `snapshot.number` as metadata/v<N>.metadata.json and return
    its location. `previous` is snapshot N-1 (None for N == 1), whose v<N-1> must be published.
    Iceberg snapshots older than `retention_ms` (the current one excepted) are dropped.
    If v<N> exists already (a racing publisher), its location is returned and nothing is written."""
    n = snapshot.number
    _check_input(meta, snapshot, previous)
    key = paths.iceberg_metadata(n)
    if store.head(key) is not None:
        return metadata_location(uri, n)
    base = _read_base(store, uri, meta, n)
    lay = _layout_over(meta, base)
    now_ms = int(time.time() * 1000)
    pub = _Publication(store, uri, StoreFileIO(store, uri), lay, n, _new_snapshot_id(base), [])
    manifests = _manifests(pub, snapshot, previous, _previous_manifests(pub, base))
    list_key = f"{paths.ICEBERG_METADATA_DIR}snap-{pub.snapshot_id}-{uuid.uuid4().hex}.avro"
    list_loc = pub.location(list_key)
    pub.written.append(list_key)
    parent = base.current_snapshot_id if base else None
    with _wrapped("writing the manifest list", InvalidInputError):
        with write_manifest_list(FORMAT_VERSION, pub.fio.new_output(list_loc), pub.snapshot_id,
                                 parent, n, AVRO_CODEC) as writer:
            writer.add_manifests(manifests)
    current = Snapshot(snapshot_id=pub.snapshot_id, parent_snapshot_id=parent, sequence_number=n,
                       timestamp_ms=snapshot.timestamp_ms or now_ms, manifest_list=list_loc,
                       summary=_summary(snapshot, previous), schema_id=lay.schema.schema_id)
    table = _table_metadata(uri, meta, base, lay, current, now_ms, now_ms - retention_ms)
    return _commit(pub, table)


def _check_input(meta, snapshot, previous) -> None:
    n = snapshot.number
    if n < 1:
        raise InvalidInputError(f"snapshot number {n}: only snapshots 1, 2, ... are published")
    if len(snapshot.buckets) != meta.buckets:
        raise InvalidInputError(f"snapshot {n} has {len(snapshot.buckets)} buckets, the table {meta.buckets}")
    if previous is not None and (previous.number != n - 1 or len(previous.buckets) != meta.buckets):
        raise InvalidInputError(f"the snapshot before {n} must be {n - 1} with {meta.buckets} buckets, "
                                f"not {previous.number} with {len(previous.buckets)}")
    for state in snapshot.buckets:
        refs = list(state.files) + ([state.deletes] if state.deletes else [])
        if any(not 1 <= r.epoch <= n for r in refs):
            raise InvalidInputError(f"snapshot {n}, bucket {state.bucket}: a file's epoch is not in 1..{n}")


def _read_base(store, uri, meta, n):
    """v<n-1>, which v<n> extends (None for n == 1)."""
    if n == 1:
        return None
    key = paths.iceberg_metadata(n - 1)
    data = store.get(key)  # NotFoundError: snapshot n-1 must be published first
    with _wrapped(key):
        base = TableMetadataUtil.parse_raw(data)
        summary = base.current_snapshot().summary if base.current_snapshot() else None
        number = summary[SNAPSHOT_PROPERTY] if summary else None
    if base.format_version != FORMAT_VERSION or str(base.table_uuid) != str(meta.table_uuid):
        raise CorruptObjectError(f"{key}: not a format-version 2 table with uuid {meta.table_uuid}")
    if number != str(n - 1) or base.last_sequence_number != n - 1:
        raise CorruptObjectError(f"{key}: describes flussfs snapshot {number}, not {n - 1}")
    return base


def _layout_over(meta, base) -> Layout:
    """The layout of `meta`, with the schema id of an equal schema of `base` or a fresh one."""
    lay = layout(meta)
    if base is None:
        return lay
    if base.spec().fields != lay.spec.fields:
        raise InvalidInputError(f"the partitioning of {meta.table_uuid} changed; Iceberg manifests "
                                f"of earlier snapshots would not match")
    for s in base.schemas:
        if s.fields == lay.schema.fields and s.identifier_field_ids == lay.schema.identifier_field_ids:
            return layout(meta, s.schema_id)
    return layout(meta, max(s.schema_id for s in base.schemas) + 1)


def _new_snapshot_id(base) -> int:
    taken = {s.snapshot_id for s in base.snapshots} if base else set()
    while True:
        sid = secrets.randbits(63)
        if sid and sid not in taken:
            return sid


def _previous_manifests(pub: _Publication, base) -> dict[int, list[ManifestFile]]:
    """The manifests of v<N-1>'s current snapshot, by the bucket their name carries."""
    by_bucket: dict[int, list[ManifestFile]] = {}
    if base is None or base.current_snapshot() is None:
        return by_bucket
    list_loc = base.current_snapshot().manifest_list
    with _wrapped(list_loc):
        manifests = list(read_manifest_list(pub.fio.new_input(list_loc)))
    for m in manifests:
        match = _MANIFEST.search(m.manifest_path)
        if match is None:
            raise CorruptObjectError(f"{list_loc}: manifest {m.manifest_path} is not one flussfs wrote")
        by_bucket.setdefault(int(match.group(1)), []).append(m)
    return by_bucket


def _manifests(pub, snapshot, previous, old: dict[int, list[ManifestFile]]) -> list[ManifestFile]:
    """Every manifest of snapshot N: reused for unchanged buckets, written for changed ones."""
    reused, changed = {}, []
    for state in snapshot.buckets:
        b = state.bucket
        before = previous.bucket(b) if previous is not None else None
        if before is not None and _reusable(before, state, old.get(b, [])):
            reused[b] = old.get(b, [])
        else:
            changed.append(state)
    with ThreadPoolExecutor(min(BUCKETS_PARALLEL_MAX, max(1, len(changed)))) as pool:
        written = dict(zip((s.bucket for s in changed),
                           pool.map(lambda s: _write_bucket(pub, s, old.get(s.bucket, [])), changed)))
    return [m for b in range(len(snapshot.buckets)) for m in reused.get(b, written.get(b, []))]


def _reusable(before: BucketState, now: BucketState, manifests: list[ManifestFile]) -> bool:
    """Whether a bucket's previous manifests still describe it exactly."""
    if (before.files, before.deletes) != (now.files, now.deletes):
        return False
    contents = sorted(m.content for m in manifests)
    expected = sorted(([ManifestContent.DATA] if now.files else []) +
                      ([ManifestContent.DELETES] if now.deletes else []))
    return contents == expected


def _write_bucket(pub: _Publication, state: BucketState, old: list[ManifestFile]) -> list[ManifestFile]:
    """New manifests of a changed bucket: live files only, earlier ones as EXISTING."""
    known = {}
    for m in old:
        with _wrapped(m.manifest_path):
            known.update((e.data_file.file_path, e) for e in m.fetch_manifest_entry(pub.fio))
    out = []
    if state.files:
        entries = [_entry(pub, state.bucket, f, known, DataFileContent.DATA) for f in state.files]
        out.append(_write_manifest(pub, state.bucket, ManifestWriterV2, "data", entries))
    if state.deletes:
        entry = _entry(pub, state.bucket, state.deletes, known, DataFileContent.POSITION_DELETES)
        out.append(_write_manifest(pub, state.bucket, _DeleteManifestWriter, "deletes", [entry]))
    return out


def _entry(pub: _Publication, bucket: int, ref: FileRef, known: dict, content) -> ManifestEntry:
    """The manifest entry of a live file: EXISTING as v<N-1> listed it, else ADDED with the stats
    of its footer (data sequence number = its epoch either way)."""
    loc = pub.location(ref.key)
    prior = known.get(loc)
    if prior is not None:
        f = prior.data_file
        if prior.sequence_number != ref.epoch or f.content != content or f.record_count != ref.rows:
            raise CorruptObjectError(f"{loc}: v{pub.number - 1} lists it with sequence number "
                                     f"{prior.sequence_number} and {f.record_count} rows, the "
                                     f"snapshot with epoch {ref.epoch} and {ref.rows} rows")
        return ManifestEntry.from_args(status=ManifestEntryStatus.EXISTING, snapshot_id=prior.snapshot_id,
                                       sequence_number=prior.sequence_number,
                                       file_sequence_number=prior.file_sequence_number, data_file=f)
    return ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=pub.snapshot_id,
                                   sequence_number=None if ref.epoch == pub.number else ref.epoch,
                                   file_sequence_number=None,
                                   data_file=_data_file(pub, bucket, ref, content))


def _data_file(pub: _Publication, bucket: int, ref: FileRef, content) -> DataFile:
    """A DataFile of a new Parquet file, its statistics read from its footer (ranged GETs)."""
    deletes = content == DataFileContent.POSITION_DELETES
    schema = _DELETE_SCHEMA if deletes else pub.layout.schema
    # Full bounds on a delete file's file_path let readers match it to the one data file it
    # targets (pyiceberg and polars take lower == upper as "references exactly this file").
    mode = {"write.metadata.metrics.default": "full"} if deletes else {}
    footer = open_file(pub.store, ref.key, ref.size).metadata
    with _wrapped(ref.key):
        _check_footer(footer, ref, schema)
        stats = data_file_statistics_from_parquet_metadata(
            footer, compute_statistics_plan(schema, mode), parquet_path_to_id_mapping(schema))
    sort_order_id = pub.layout.sort_order.order_id if pub.layout.sort_order.fields and not deletes else None
    return DataFile.from_args(content=content, file_path=pub.location(ref.key),
                              file_format=FileFormat.PARQUET, partition=pub.layout.partition(bucket),
                              file_size_in_bytes=ref.size, sort_order_id=sort_order_id,
                              equality_ids=None, key_metadata=None, **stats.to_serialized_dict())


def _check_footer(footer, ref: FileRef, schema: Schema) -> None:
    """A file's footer agrees with its FileRef and carries the table's field ids."""
    if footer.num_rows != ref.rows:
        raise CorruptObjectError(f"{ref.key}: {footer.num_rows} rows, the snapshot says {ref.rows}")
    arrow: pa.Schema = footer.schema.to_arrow_schema()
    for field in arrow:
        fid = int((field.metadata or {}).get(FIELD_ID, b"-1"))
        if schema.find_field(field.name, case_sensitive=True).field_id != fid:
            raise CorruptObjectError(f"{ref.key}: column {field.name!r} has field id {fid}")


def _write_manifest(pub: _Publication, bucket: int, writer_class, kind: str, entries) -> ManifestFile:
    key = f"{paths.ICEBERG_METADATA_DIR}m-{bucket:05d}-{kind}-{uuid.uuid4().hex}.avro"
    loc = pub.location(key)
    pub.written.append(key)
    with _wrapped(f"writing {loc}", InvalidInputError):
        writer = writer_class(pub.layout.spec, pub.layout.schema, pub.fio.new_output(loc),
                              pub.snapshot_id, AVRO_CODEC)
        with writer:
            for entry in entries:
                writer.add_entry(entry)
        return writer.to_manifest_file()


def _summary(snapshot, previous) -> Summary:
    """The Iceberg snapshot summary: flussfs's snapshot number and offsets, and the totals."""
    n, states = snapshot.number, snapshot.buckets
    data = [f for s in states for f in s.files]
    deletes = [s.deletes for s in states if s.deletes]
    before = {r.key: r for s in (previous.buckets if previous else ()) for r in s.files}
    before_deletes = {s.deletes.key: s.deletes for s in (previous.buckets if previous else ()) if s.deletes}
    removed = [before[k] for k in snapshot.removed if k in before]
    removed_deletes = [before_deletes[k] for k in snapshot.removed if k in before_deletes]
    added = [f for f in data if f.epoch == n]
    added_deletes = [d for d in deletes if d.epoch == n]
    counts = {"added-data-files": len(added), "added-records": sum(f.rows for f in added),
              "added-files-size": sum(f.size for f in added + added_deletes),
              "added-delete-files": len(added_deletes), "added-position-delete-files": len(added_deletes),
              "added-position-deletes": sum(d.rows for d in added_deletes),
              "deleted-data-files": len(removed), "deleted-records": sum(f.rows for f in removed),
              "removed-files-size": sum(f.size for f in removed + removed_deletes),
              "removed-delete-files": len(removed_deletes),
              "removed-position-delete-files": len(removed_deletes),
              "removed-position-deletes": sum(d.rows for d in removed_deletes)}
    props = {k: str(v) for k, v in counts.items() if v}
    props.update({"total-records": str(sum(f.rows for f in data)), "total-data-files": str(len(data)),
                  "total-delete-files": str(len(deletes)),
                  "total-position-deletes": str(sum(d.rows for d in deletes)),
                  "total-equality-deletes": "0",
                  "total-files-size": str(sum(f.size for f in data + deletes)),
                  SNAPSHOT_PROPERTY: str(n),
                  OFFSETS_PROPERTY: json.dumps({str(b): o for b, o in snapshot.offsets().items()})})
    rewrote = removed or removed_deletes or added_deletes
    return Summary(Operation.OVERWRITE if rewrote else Operation.APPEND, **props)


def _table_metadata(uri, meta, base, lay: Layout, current: Snapshot, now_ms: int, cutoff_ms: int):
    """v<N>: `base`'s history (snapshots younger than `cutoff_ms`) plus `current`."""
    kept = [s for s in (base.snapshots if base else []) if s.timestamp_ms >= cutoff_ms]
    ids = {s.snapshot_id for s in kept} | {current.snapshot_id}
    snapshot_log = [e for e in (base.snapshot_log if base else []) if e.snapshot_id in ids]
    snapshot_log.append(SnapshotLogEntry(snapshot_id=current.snapshot_id, timestamp_ms=current.timestamp_ms))
    metadata_log = list(base.metadata_log) if base else []
    if base is not None:
        previous_location = metadata_location(uri, current.sequence_number - 1)
        metadata_log.append(MetadataLogEntry(metadata_file=previous_location,
                                             timestamp_ms=base.last_updated_ms))
    schemas = [s for s in (base.schemas if base else []) if s.schema_id != lay.schema.schema_id]
    with _wrapped(f"building v{current.sequence_number}", InvalidInputError):
        return TableMetadataV2(
            location=location(uri, "").rstrip("/"), table_uuid=uuid.UUID(meta.table_uuid),
            last_updated_ms=max(now_ms, base.last_updated_ms if base else 0),
            last_column_id=max([lay.schema.highest_field_id] + [s.highest_field_id for s in schemas]),
            schemas=schemas + [lay.schema], current_schema_id=lay.schema.schema_id,
            partition_specs=[lay.spec], default_spec_id=lay.spec.spec_id,
            last_partition_id=lay.spec.last_assigned_field_id,
            sort_orders=[lay.sort_order], default_sort_order_id=lay.sort_order.order_id,
            current_snapshot_id=current.snapshot_id, snapshots=kept + [current],
            snapshot_log=snapshot_log, metadata_log=metadata_log[-METADATA_LOG_ENTRIES_MAX:],
            refs={"main": SnapshotRef(snapshot_id=current.snapshot_id,
                                      snapshot_ref_type=SnapshotRefType.BRANCH)},
            last_sequence_number=current.sequence_number, properties={})


def _commit(pub: _Publication, table) -> str:
    """Put v<N> if absent (the commit point). Losing the race to a publisher of the same snapshot
    is fine; our manifests are then referenced by nothing, so they are removed (best effort).
    EXISTS can also be our own put whose response was lost and retried: the object is read back
    and our manifests are kept if it is ours."""
    n, data = pub.number, table.model_dump_json().encode()
    key = paths.iceberg_metadata(n)
    with _wrapped(f"v{n} as written", InvalidInputError):
        assert TableMetadataUtil.parse_raw(data).last_sequence_number == n
    if pub.store.put_if_absent(key, data) is PutOutcome.EXISTS and pub.store.get(key) != data:
        for key in pub.written:
            try:
                pub.store.delete(key)
            except StorageError:
                break  # orphans are harmless; the garbage collector removes them later
    return metadata_location(pub.uri, n)


class _wrapped:
    """Turn a library error inside the block into `error` naming `what` (FlussErrors pass)."""

    def __init__(self, what: str, error=CorruptObjectError):
        self.what, self.error = what, error

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if value is None or isinstance(value, FlussError) or not isinstance(value, Exception):
            return False
        raise self.error(f"{self.what}: {type(value).__name__}: {value}") from value
