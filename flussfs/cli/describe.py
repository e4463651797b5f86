"""What `describe` shows: a table's metadata, per-bucket offsets and sizes, and its text form.

Invariants: describe_table() returns plain JSON-able values only (the `--json` output and the
demo both use it) and only reads: one listing per bucket, in parallel, plus one of the table
metadata directory. format_description() is pure.
"""
from __future__ import annotations

import datetime as dt

from .. import paths
from ..io import parallel
from ..progress import format_bytes
from .engine import format_merge_engine

LOG_TABLE = "log table (append-only)"
PK_TABLE = "primary-key table"


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
        "kind": PK_TABLE if meta.primary_key else LOG_TABLE,
        "primary_key": list(meta.primary_key) if meta.primary_key else None,
        "merge_engine": format_merge_engine(table.merge_engine),
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
             f"created      {d['created']}", f"kind         {d['kind']}"]
    if d["primary_key"]:
        lines += [f"primary key  {', '.join(d['primary_key'])}",
                  f"merge engine {d['merge_engine']}"]
    lines += [f"buckets      {d['buckets']}, {d['bucket_function']}{key}",
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
