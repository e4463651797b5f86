"""Compaction benchmark: how the cost of `compactor.compact()` grows with the share of a
primary-key table's keys that changed since the last compaction. A table of 10,000,000 rows
(1,000,000 with --quick) is loaded and compacted once; then, each time starting from that
compacted state, 1% of the keys (chosen at random) or all of them are upserted with new values
and one compaction is timed, with and without the changelog producer (benchmarks/README.md,
"Compaction").

    .venv/bin/python -m benchmarks.compaction_bench [--quick] [--store local|moto] [--json PATH]

A benchmark, not a test: the target is a ratio of two compactions measured side by side (the
same table, the same machine, rounds interleaved with the order rotating), never a time.

Invariants: every timed compaction starts from the same compacted state: after the initial
compaction every object of the table is copied aside, and before each run the table's location
is emptied and the copy put back (at the same location: Iceberg metadata names files by absolute
location, so a table copied elsewhere cannot be compacted); row values
are a hash of (key, version), so the expected row of any key is computed, never stored, and a
sample of every variant's result is checked by lookup; generating, loading, copying and checking
are never timed.
"""
from __future__ import annotations

from . import _harness as h  # first: it sets fake AWS credentials before boto3/s3fs load

import gc
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

import flussfs
import compactor

RESULTS_PATH_DEFAULT = os.path.join(os.path.dirname(__file__), "results", "compaction_bench.json")
RATIO_MIN = 10.0                 # target: compaction of 100% changed keys / of 1% changed keys
BUCKETS = 8
LOAD_ROWS_PER_CALL = 1_000_000   # rows per upsert call, loading and changing (bounds memory)
CHECK_KEYS = 1_000               # keys looked up per variant to check its result
SHARES = (0.01, 1.0)             # share of the keys changed before a timed compaction
STRING_CHARS = 16


@dataclass(frozen=True)
class Counts:
    """How much work the run does; --quick picks the small set."""
    table_rows: int
    repeats: int                 # timed compactions per variant, each from the compacted state


FULL = Counts(table_rows=10_000_000, repeats=3)
QUICK = Counts(table_rows=1_000_000, repeats=1)


# ---- data ---------------------------------------------------------------------------------
SCHEMA = pa.schema([
    pa.field("k", pa.int64(), nullable=False),
    pa.field("v", pa.int64()),
    pa.field("x", pa.float64()),
    pa.field("s", pa.string()),
])
_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", np.uint8)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arithmetic wraps, as intended)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rows(keys: np.ndarray, version: int) -> pa.Table:
    """The rows of `keys` at `version`: every value is a hash of (key, version), so a new
    version changes every row and any key's expected row can be recomputed."""
    k = np.asarray(keys, np.int64)
    seed = k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(version * 0x632BE59BD9B4E019 + 1)
    a = _mix(seed)
    b = _mix(a ^ np.uint64(0xD6E8FEB86659FD93))
    # 16 characters from a 32-letter alphabet, 8 from each hash (5 bits each).
    shifts = np.arange(0, 40, 5, dtype=np.uint64)
    chars = np.concatenate([(a[:, None] >> shifts) & np.uint64(31),
                            (b[:, None] >> shifts) & np.uint64(31)], axis=1)
    data = _ALPHABET[chars.astype(np.intp)].tobytes()
    offsets = np.arange(0, (len(k) + 1) * STRING_CHARS, STRING_CHARS, dtype=np.int32)
    s = pa.StringArray.from_buffers(len(k), pa.py_buffer(offsets), pa.py_buffer(data))
    return pa.table({"k": pa.array(k, pa.int64()),
                     "v": pa.array((a >> np.uint64(1)).astype(np.int64)),
                     "x": pa.array((b >> np.uint64(11)).astype(np.float64) / 2.0**53 * 1000.0),
                     "s": s}, schema=SCHEMA)


def changed_keys(table_rows: int, share: float) -> np.ndarray:
    """The keys a case changes: all of them in order, or a fixed random sample."""
    if share >= 1.0:
        return np.arange(table_rows, dtype=np.int64)
    rng = np.random.default_rng(20261124)
    return np.sort(rng.choice(table_rows, int(table_rows * share), replace=False)).astype(np.int64)


def upsert_in_chunks(table, keys: np.ndarray, version: int) -> int:
    """Upsert the rows of `keys` at `version`, LOAD_ROWS_PER_CALL at a time; the calls made."""
    calls = 0
    for start in range(0, len(keys), LOAD_ROWS_PER_CALL):
        table.upsert(rows(keys[start:start + LOAD_ROWS_PER_CALL], version))
        calls += 1
    return calls


# ---- stores: a table's copy ---------------------------------------------------------------
def _s3_client(backend: h.Backend):
    import boto3
    o = backend.storage_options
    return boto3.client("s3", endpoint_url=o["endpoint_url"], region_name=h.S3_REGION,
                        aws_access_key_id=o["key"], aws_secret_access_key=o["secret"])


def _s3_keys(client, prefix: str):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=h.S3_BUCKET, Prefix=prefix):
        for obj in page.get("Contents", ()):
            yield obj["Key"]


def copy_objects(backend: h.Backend, source_uri: str, target_uri: str) -> None:
    """Every object under `source_uri` copied to the same keys under `target_uri`."""
    if backend.name == "local":
        shutil.copytree(source_uri, target_uri)
        return
    client = _s3_client(backend)
    source, dest = source_uri.split("/", 3)[3] + "/", target_uri.split("/", 3)[3] + "/"
    for key in _s3_keys(client, source):
        client.copy_object(Bucket=h.S3_BUCKET, Key=dest + key[len(source):],
                           CopySource={"Bucket": h.S3_BUCKET, "Key": key})


def drop_table(backend: h.Backend, uri: str) -> None:
    if backend.name == "local":
        shutil.rmtree(uri, ignore_errors=True)
        return
    client = _s3_client(backend)
    keys = list(_s3_keys(client, uri.split("/", 3)[3] + "/"))
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=h.S3_BUCKET, Delete={
            "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


def table_bytes(backend: h.Backend, uri: str) -> int:
    if backend.name == "local":
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(uri) for f in fs)
    client, total = _s3_client(backend), 0
    for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=h.S3_BUCKET, Prefix=uri.split("/", 3)[3] + "/"):
        total += sum(o["Size"] for o in page.get("Contents", ()))
    return total


# ---- checks -------------------------------------------------------------------------------
def check_table(backend: h.Backend, uri: str, table_rows: int, changed: np.ndarray) -> bool:
    """After a compaction: the snapshot holds table_rows live rows, and lookups of sampled
    changed (and, if any, unchanged) keys give version 1 and version 0 rows."""
    rng = np.random.default_rng(5)
    table = flussfs.open_table(uri, storage_options=backend.storage_options)
    try:
        ok = sum(b.live_rows for b in table.snapshot().buckets) == table_rows
        samples = [(np.sort(rng.choice(changed, min(CHECK_KEYS, len(changed)), replace=False)), 1)]
        if len(changed) < table_rows:
            unchanged = np.setdiff1d(rng.choice(table_rows, 2 * CHECK_KEYS, replace=False), changed)
            samples.append((np.sort(unchanged[:CHECK_KEYS]), 0))
        for keys, version in samples:
            found = table.lookup(pa.table({"k": pa.array(keys, pa.int64())}))
            ok &= found.select(SCHEMA.names).sort_by("k").equals(rows(keys, version))
    finally:
        table.close()
    return bool(ok)


# ---- the run ------------------------------------------------------------------------------
def _timed_compact(backend: h.Backend, uri: str, changelog: bool):
    gc.collect()
    t0 = time.perf_counter()
    result = compactor.compact(uri, storage_options=backend.storage_options, changelog=changelog)
    return result, time.perf_counter() - t0


def _result_fields(result, seconds: float) -> dict:
    return {"s": seconds, "changes": result.changes, "rows_written": result.rows_written,
            "bytes_written": result.bytes_written, "snapshot": result.snapshot,
            "buckets_compacted": len(result.buckets),
            "buckets_rewritten": sum(bool(b["rewritten"]) for b in result.buckets),
            "buckets": result.buckets}


def load(backend: h.Backend, counts: Counts) -> dict:
    """Create and load the base table, then compact it once (timed: the initial compaction)."""
    uri = backend.new_uri()
    table = flussfs.create_table(uri, SCHEMA, primary_key=["k"], buckets=BUCKETS,
                                 storage_options=backend.storage_options)
    t0 = time.perf_counter()
    calls = upsert_in_chunks(table, np.arange(counts.table_rows, dtype=np.int64), 0)
    load_s = time.perf_counter() - t0
    table.close()
    log_bytes = table_bytes(backend, uri)
    result, seconds = _timed_compact(backend, uri, changelog=True)
    saved = backend.new_uri()
    copy_objects(backend, uri, saved)
    return {"uri": uri, "saved_uri": saved, "load_s": load_s, "load_calls": calls,
            "log_bytes": log_bytes, "table_bytes": table_bytes(backend, uri),
            "initial": _result_fields(result, seconds)}


def variant_name(share: float, changelog: bool) -> str:
    return f"{share:.0%} changed, changelog {'on' if changelog else 'off'}"


def run_variant(backend: h.Backend, uri: str, saved_uri: str, counts: Counts, share: float,
                changelog: bool, check: bool) -> dict:
    """Restore the table at `uri` to its compacted state (the copy at `saved_uri`), upsert
    `share` of its keys, time one compaction."""
    t0 = time.perf_counter()
    drop_table(backend, uri)
    copy_objects(backend, saved_uri, uri)
    copy_s = time.perf_counter() - t0
    keys = changed_keys(counts.table_rows, share)
    table = flussfs.open_table(uri, storage_options=backend.storage_options)
    t0 = time.perf_counter()
    upsert_in_chunks(table, keys, 1)
    upsert_s = time.perf_counter() - t0
    table.close()
    result, seconds = _timed_compact(backend, uri, changelog)
    out = _result_fields(result, seconds) | {"copy_s": copy_s, "upsert_s": upsert_s,
                                             "changed_keys": len(keys)}
    out["correct"] = check_table(backend, uri, counts.table_rows, keys) if check else None
    return out


def summarise(runs: list[dict], table_rows: int) -> dict:
    seconds = [r["s"] for r in runs]
    med = h.pct(seconds, 50)
    last = runs[-1]
    return {"runs": runs, "s": seconds, "s_median": med, "s_min": min(seconds),
            "s_max": max(seconds), "changes": last["changes"],
            "changes_per_s": last["changes"] / med, "table_rows_per_s": table_rows / med,
            "rows_written": last["rows_written"], "bytes_written": last["bytes_written"],
            "buckets_compacted": last["buckets_compacted"],
            "buckets_rewritten": last["buckets_rewritten"],
            "correct": all(r["correct"] is not False for r in runs)}


def run_store(backend: h.Backend, counts: Counts) -> dict:
    print(f"\n=== {backend.label} ===\n")
    started = time.perf_counter()
    base = load(backend, counts)
    n = counts.table_rows
    init = base["initial"]
    print(f"table: {n:,} rows (k int64 key, v int64, x float64, s string of {STRING_CHARS} "
          f"chars), {BUCKETS} buckets; loaded by {base['load_calls']} upserts of "
          f"{LOAD_ROWS_PER_CALL:,} rows in {base['load_s']:.1f} s ({n / base['load_s']:,.0f} "
          f"rows/s), log {base['log_bytes'] / 2**20:,.0f} MiB")
    print(f"initial compaction (changelog on): {init['s']:.2f} s, {n / init['s']:,.0f} rows/s, "
          f"{init['rows_written']:,} rows and {init['bytes_written'] / 2**20:,.0f} MiB written; "
          f"table {base['table_bytes'] / 2**20:,.0f} MiB afterwards\n")
    variants = [(s, c) for c in (True, False) for s in SHARES]
    runs = {variant_name(s, c): [] for s, c in variants}
    for rep in range(counts.repeats):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for share, changelog in order:
            name = variant_name(share, changelog)
            r = run_variant(backend, base["uri"], base["saved_uri"], counts, share, changelog,
                            check=rep == 0)
            runs[name].append(r)
            print(f"   round {rep + 1}/{counts.repeats}  {name:<28} {r['s']:7.2f} s  "
                  f"(copy {r['copy_s']:.1f} s, upsert {r['upsert_s']:.1f} s)", flush=True)
    for uri in (base["uri"], base["saved_uri"]):
        drop_table(backend, uri)
    out = {"label": backend.label, **{k: v for k, v in base.items() if not k.endswith("uri")},
           "variants": {name: summarise(r, n) for name, r in runs.items()}}
    out["ratios"] = {("on" if c else "off"): out["variants"][variant_name(1.0, c)]["s_median"]
                     / out["variants"][variant_name(0.01, c)]["s_median"] for c in (True, False)}
    out["elapsed_s"] = time.perf_counter() - started
    print_store(out, counts)
    return out


def print_store(r: dict, counts: Counts) -> None:
    n = counts.table_rows
    print(f"\ncompact(uri) after an upsert of a share of the {n:,} keys (new values), each run "
          f"from the same compacted state; median of {counts.repeats}")
    rows_out = []
    for name, v in r["variants"].items():
        small = r["variants"][name.replace("100%", "1%")]
        rows_out.append([name, f"{v['s_median']:.2f}", f"{v['changes_per_s']:,.0f}",
                         f"{v['table_rows_per_s']:,.0f}", f"{v['rows_written']:,}",
                         f"{v['bytes_written'] / 2**20:,.1f}",
                         f"{v['buckets_rewritten']}/{v['buckets_compacted']}",
                         f"{v['s_median'] / small['s_median']:.1f}x",
                         {True: "yes", False: "NO", None: ""}[v["correct"]]])
    h.print_table(["", "s", "changes/s", "table rows/s", "rows written", "MiB written",
                   "rewritten", "vs 1%", "checked"], rows_out)
    on, off = r["variants"][variant_name(0.01, True)], r["variants"][variant_name(0.01, False)]
    big_on, big_off = r["variants"][variant_name(1.0, True)], r["variants"][variant_name(1.0, False)]
    print(f"   100% / 1%: {r['ratios']['on']:.1f}x with the changelog, {r['ratios']['off']:.1f}x "
          f"without (target >= {RATIO_MIN:.0f}x)\n"
          f"   changelog on / off: 1% {on['s_median'] / off['s_median']:.2f}x, "
          f"100% {big_on['s_median'] / big_off['s_median']:.2f}x\n"
          f"   spread (min-max): " + ", ".join(
              f"{name.split(',')[0]} {name.split('changelog ')[1]} {v['s_min']:.2f}-{v['s_max']:.2f} s"
              for name, v in r["variants"].items()))


def targets(store: str, r: dict) -> list[dict]:
    checks = [{"store": store, "target": f"compact 100% changed / 1% changed >= {RATIO_MIN:.0f}x "
               f"(changelog {c})", "value": f"{r['ratios'][c]:.1f}x",
               "pass": r["ratios"][c] >= RATIO_MIN} for c in ("on", "off")]
    correct = all(v["correct"] for v in r["variants"].values())
    checks.append({"store": store, "target": "compacted tables hold the expected rows (sampled)",
                   "value": "yes" if correct else "no", "pass": correct})
    return checks


def main(argv=None) -> int:
    parser = h.arguments(__doc__, RESULTS_PATH_DEFAULT, "1,000,000 rows, 1 repeat")
    parser.add_argument("--store", choices=("local", "moto"), default="local",
                        help="a local directory (default) or moto's S3 server on 127.0.0.1")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    info = h.machine()
    mode, started = h.start("compaction benchmark", args.quick, info)
    context = h.local_backend if args.store == "local" else h.s3_backend
    with context() as backend:
        result = run_store(backend, counts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"\npeak memory (max RSS) of the run: {peak:.1f} GiB")
    result["max_rss_gib"] = peak
    h.finish(args.json, started, {"mode": mode, "counts": asdict(counts), "buckets": BUCKETS,
                                  "store": args.store, "machine": info},
             {backend.name: result}, targets(backend.name, result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
