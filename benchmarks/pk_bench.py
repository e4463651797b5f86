"""Primary-key table benchmark: upsert commit latency against pyiceberg's table.upsert, the
latest-state scan of a table carrying uncompacted changes against one plain Parquet file, and
lookups against pyiceberg's filtered scan, on a local directory and on moto's S3 server
(benchmarks/README.md explains each workload and its baseline).

    .venv/bin/python -m benchmarks.pk_bench [--quick] [--json PATH]

A benchmark, not a test: each flussfs time is measured next to its comparison, rounds
interleaved with the order alternating, and the target is a ratio of the two.

Invariants: flussfs and pyiceberg get the same batches in the same order; generating data and
checking results are never timed; every flussfs scan and lookup result is compared with the
expected state, computed in memory, so a fast wrong answer cannot pass.
"""
from __future__ import annotations

from . import _harness as h  # first: it sets fake AWS credentials before boto3/s3fs load

import importlib.metadata
import gc
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import flussfs

RESULTS_PATH_DEFAULT = os.path.join(os.path.dirname(__file__), "results", "pk_bench.json")
UPSERT_RATIO_MIN = 20.0          # target: pyiceberg upsert p50 / flussfs upsert p50
UPSERT_ROWS = 10_000
CHANGE_SHARE = 0.10              # changes carried by the scanned table, as a share of its rows
LOOKUP_BATCH = 100
BUCKETS = 4
PRELOAD_ROWS_PER_CALL = 200_000


@dataclass(frozen=True)
class Counts:
    """How much work each workload does; --quick picks the small set."""
    table_rows: int
    flussfs_upserts_local: int   # timed 10,000-row upserts, all of them into the same table
    flussfs_upserts_s3: int
    iceberg_upserts: int         # interleaved with the first flussfs upserts
    scan_repeats: int
    lookups_1: int               # single-key rounds, each flussfs and pyiceberg once
    lookups_batch: int           # 100-key rounds

    @property
    def change_commits(self) -> int:
        """10,000-row upserts made before the scan: CHANGE_SHARE of the table."""
        return max(1, round(self.table_rows * CHANGE_SHARE / UPSERT_ROWS))


FULL = Counts(table_rows=1_000_000, flussfs_upserts_local=100, flussfs_upserts_s3=100,
              iceberg_upserts=10, scan_repeats=5, lookups_1=100, lookups_batch=40)
QUICK = Counts(table_rows=200_000, flussfs_upserts_local=20, flussfs_upserts_s3=20,
               iceberg_upserts=3, scan_repeats=3, lookups_1=30, lookups_batch=10)


# ---- data ---------------------------------------------------------------------------------
SCHEMA = pa.schema([
    pa.field("k", pa.int64(), nullable=False),
    pa.field("user_id", pa.int64()),
    pa.field("amount", pa.float64()),
    pa.field("status", pa.string()),
    pa.field("city", pa.string()),
    pa.field("quantity", pa.int32()),
    pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    pa.field("gift", pa.bool_()),
])
STATUSES = ["new", "paid", "packed", "shipped", "delivered", "returned"]
CITIES = [f"city-{i:04d}" for i in range(3000)]


def _pick(rng, vocabulary: list[str], n: int) -> pa.Array:
    indices = pa.array(rng.integers(0, len(vocabulary), n), pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(vocabulary)).cast(pa.string())


def order_rows(keys: np.ndarray, rng, version: int) -> pa.Table:
    """Rows for `keys`: an order per key with 7 value columns of mixed types; `version`
    moves updated_at on, so every upsert changes every row it touches."""
    n = len(keys)
    base_us = 1_767_225_600_000_000 + version * 60_000_000  # 2026-01-01, a minute per version
    return pa.table({
        "k": pa.array(keys, pa.int64()),
        "user_id": pa.array(rng.integers(1, 5_000_000, n), pa.int64()),
        "amount": pa.array(np.round(rng.lognormal(3, 1, n), 2), pa.float64()),
        "status": _pick(rng, STATUSES, n),
        "city": _pick(rng, CITIES, n),
        "quantity": pa.array(rng.integers(1, 20, n), pa.int32()),
        "updated_at": pa.array(base_us + rng.integers(0, 60_000_000, n), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "gift": pa.array(rng.random(n) < 0.1),
    }, schema=SCHEMA)


@dataclass
class Data:
    base: pa.Table             # keys 0..table_rows-1 in order
    upserts: list[pa.Table]    # UPSERT_ROWS distinct existing keys each, in commit order


def make_data(counts: Counts, upserts: int, seed: int) -> Data:
    rng = np.random.default_rng(seed)
    base = order_rows(np.arange(counts.table_rows), rng, 0)
    batches = [order_rows(rng.choice(counts.table_rows, UPSERT_ROWS, replace=False), rng, v + 1)
               for v in range(upserts)]
    return Data(base, batches)


def expected_state(data: Data, applied: int) -> pa.Table:
    """The latest state after the first `applied` upserts, sorted by key: for each key the row
    of the last upsert that wrote it (every upsert key exists in the base)."""
    tables = [data.base] + data.upserts[:applied]
    where = np.arange(data.base.num_rows)
    offset = data.base.num_rows
    for batch in data.upserts[:applied]:
        where[batch.column("k").to_numpy()] = offset + np.arange(batch.num_rows)
        offset += batch.num_rows
    return pa.concat_tables(tables).take(pa.array(where)).combine_chunks()


def same_rows(result: pa.Table, expected: pa.Table) -> bool:
    return result.select(SCHEMA.names).sort_by("k").equals(expected)


# ---- the stores under test ----------------------------------------------------------------
def load_flussfs(backend: h.Backend, base: pa.Table):
    """A primary-key table holding `base`, written by upserts of PRELOAD_ROWS_PER_CALL rows."""
    table = flussfs.create_table(backend.new_uri(), SCHEMA, primary_key=["k"], buckets=BUCKETS,
                                 storage_options=backend.storage_options)
    t0 = time.perf_counter()
    for start in range(0, base.num_rows, PRELOAD_ROWS_PER_CALL):
        table.upsert(base.slice(start, PRELOAD_ROWS_PER_CALL))
    return table, time.perf_counter() - t0


def iceberg_catalog(backend: h.Backend, workdir: str):
    """pyiceberg's SqlCatalog on sqlite in `workdir`, its warehouse on the backend's store."""
    from pyiceberg.catalog.sql import SqlCatalog
    if backend.name == "local":
        return SqlCatalog("bench", uri=f"sqlite:///{workdir}/catalog.db",
                          warehouse=f"file://{backend.root}/iceberg")
    options = backend.storage_options
    s3 = {"s3.endpoint": options["endpoint_url"], "s3.access-key-id": options["key"],
          "s3.secret-access-key": options["secret"], "s3.region": h.S3_REGION}
    return SqlCatalog("bench", uri=f"sqlite:///{workdir}/catalog.db",
                      warehouse=f"{backend.root}/iceberg-{uuid.uuid4().hex[:8]}", **s3)


def load_iceberg(backend: h.Backend, workdir: str, base: pa.Table):
    """An Iceberg table holding `base`, appended in one call (one data file)."""
    catalog = iceberg_catalog(backend, workdir)
    catalog.create_namespace("bench")
    table = catalog.create_table("bench.orders", schema=SCHEMA)
    t0 = time.perf_counter()
    table.append(base)
    return table, time.perf_counter() - t0


def parquet_baseline(backend: h.Backend, state: pa.Table):
    """`state` as one plain Parquet file on the backend's store: (read function, bytes)."""
    if backend.name == "local":
        fs, path = pafs.LocalFileSystem(), os.path.join(backend.root, "baseline.parquet")
    else:
        options = backend.storage_options
        fs = pafs.S3FileSystem(access_key=options["key"], secret_key=options["secret"],
                               endpoint_override=options["endpoint_url"], region=h.S3_REGION)
        path = f"{h.S3_BUCKET}/baseline-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(state, path, filesystem=fs)
    size = fs.get_file_info(path).size
    return (lambda: pq.read_table(path, filesystem=fs)), size


# ---- 1. upsert commit latency ---------------------------------------------------------------
def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def upsert_rounds(table, iceberg, data: Data, rounds: range, iceberg_upserts: int,
                  times: dict) -> None:
    """Round i upserts data.upserts[i] into flussfs and, for the first `iceberg_upserts`
    rounds, the same rows into pyiceberg, alternating which of the two goes first."""
    for i in range(rounds.start, rounds.stop):
        batch = data.upserts[i]
        calls = [("flussfs", table.upsert, (batch,))]
        if i < iceberg_upserts:
            calls.append(("iceberg", iceberg.upsert, (batch, ["k"])))
        for name, fn, args in (calls if i % 2 == 0 else calls[::-1]):
            gc.collect()
            times[name].append(_timed(fn, *args))


def upsert_summary(times: dict, requests: dict, written: int, change_commits: int) -> dict:
    f, i = times["flussfs"], times["iceberg"]
    n = len(f)
    return {
        "rows": UPSERT_ROWS, "flussfs_commits": n, "iceberg_commits": len(i),
        "flussfs_s": f, "iceberg_s": i,
        "flussfs_s_p50": h.pct(f, 50), "flussfs_s_p99": h.pct(f, 99),
        "iceberg_s_p50": h.pct(i, 50), "iceberg_s_p99": h.pct(i, 99),
        "iceberg_s_min": min(i), "iceberg_s_max": max(i),
        "ratio_p50": h.pct(i, 50) / h.pct(f, 50), "ratio_p99": h.pct(i, 99) / h.pct(f, 99),
        "ratio_iceberg_min_to_flussfs_p50": min(i) / h.pct(f, 50),
        "flussfs_s_p50_first": h.pct(f[:change_commits], 50),
        "flussfs_s_p50_last": h.pct(f[-change_commits:], 50),
        "flussfs_requests_per_upsert": {op: c / n for op, c in sorted(requests.items())},
        "flussfs_bytes_written_per_upsert": written / n,
    }


def print_upsert(r: dict, change_commits: int) -> None:
    print(f"1. Upsert commit: {r['rows']:,} rows with random existing keys; flussfs "
          f"table.upsert() x {r['flussfs_commits']}, pyiceberg table.upsert(join_cols=['k']) "
          f"x {r['iceberg_commits']}, interleaved")
    h.print_table(["", "p50 ms", "p99 ms"], [
        ["flussfs upsert()", h.ms(r["flussfs_s_p50"]), h.ms(r["flussfs_s_p99"])],
        ["pyiceberg upsert()", h.ms(r["iceberg_s_p50"]), h.ms(r["iceberg_s_p99"])],
        ["pyiceberg / flussfs", f"{r['ratio_p50']:.1f}x", f"{r['ratio_p99']:.1f}x"]])
    per = h.requests_text(r["flussfs_requests_per_upsert"], 2)
    print(f"   pyiceberg fastest {h.ms(r['iceberg_s_min'])} ms, slowest "
          f"{h.ms(r['iceberg_s_max'])} ms; fastest / flussfs p50 = "
          f"{r['ratio_iceberg_min_to_flussfs_p50']:.1f}x\n"
          f"   flussfs p50 of the first {change_commits} commits "
          f"{h.ms(r['flussfs_s_p50_first'])} ms, of the last {change_commits} "
          f"{h.ms(r['flussfs_s_p50_last'])} ms\n"
          f"   flussfs per upsert: {per}, {r['flussfs_bytes_written_per_upsert'] / 1024:,.0f} "
          f"KiB written")


# ---- 2. latest-state scan -----------------------------------------------------------------
def first_scan(backend: h.Backend, table, expected: pa.Table) -> dict:
    """What a new reader pays: open_table() and a scan with nothing cached, checked."""
    t0 = time.perf_counter()
    fresh = flussfs.open_table(table.uri, storage_options=backend.storage_options)
    result = fresh.scan().to_arrow()
    elapsed = time.perf_counter() - t0
    fresh.close()
    return {"s": elapsed, "correct": same_rows(result, expected)}


def bench_scan(table, meter, iceberg, read_parquet, expected: pa.Table, repeats: int) -> dict:
    """flussfs scan().to_arrow() (the writer's handle, commits cached), one Parquet file read
    by pyarrow and pyiceberg's full scan, interleaved with the order rotating."""
    calls = {"flussfs": lambda: table.scan().to_arrow(), "parquet": read_parquet,
             "iceberg": lambda: iceberg.scan().to_arrow()}
    names, times, correct = list(calls), {n: [] for n in calls}, True
    for rep in range(repeats):
        for name in names[rep % 3:] + names[:rep % 3]:
            gc.collect()
            meter.reset()
            t0 = time.perf_counter()
            result = calls[name]()
            times[name].append(time.perf_counter() - t0)
            correct &= result.num_rows == expected.num_rows
            if name == "flussfs":
                read = {"bytes": meter.bytes_read, "requests": dict(meter.requests)}
                correct &= rep > 0 or same_rows(result, expected)
    p50 = {n: h.pct(t, 50) for n, t in times.items()}
    return {"repeats": repeats, "rows": expected.num_rows, "correct": bool(correct),
            "times_s": times, **{f"{n}_s_p50": v for n, v in p50.items()},
            **{f"{n}_rows_per_s": expected.num_rows / v for n, v in p50.items()},
            "flussfs_over_parquet": p50["flussfs"] / p50["parquet"],
            "flussfs_read": read}


def print_scan(r: dict, change_rows: int, parquet_bytes: int) -> None:
    print(f"2. Latest-state scan: {r['rows']:,} live keys merged from {change_rows:,} "
          f"uncompacted change rows (no compactor yet: every change is merged); p50 of "
          f"{r['repeats']}, interleaved")
    first = r["first"]
    h.print_table(["", "time ms", "rows/s", "change rows/s"], [
        ["flussfs scan().to_arrow()", h.ms(r["flussfs_s_p50"]),
         f"{r['flussfs_rows_per_s']:,.0f}", f"{change_rows / r['flussfs_s_p50']:,.0f}"],
        ["flussfs new reader: open_table + scan", h.ms(first["s"]),
         f"{r['rows'] / first['s']:,.0f}", f"{change_rows / first['s']:,.0f}"],
        [f"one Parquet file, pyarrow ({parquet_bytes / 2**20:.1f} MiB)",
         h.ms(r["parquet_s_p50"]), f"{r['parquet_rows_per_s']:,.0f}", ""],
        ["pyiceberg scan().to_arrow()", h.ms(r["iceberg_s_p50"]),
         f"{r['iceberg_rows_per_s']:,.0f}", ""]])
    read = r["flussfs_read"]
    print(f"   flussfs takes {r['flussfs_over_parquet']:.1f}x the Parquet read; a flussfs scan "
          f"reads {read['bytes'] / 2**20:.1f} MiB in {h.requests_text(read['requests'], 0)}\n"
          f"   results: both flussfs scans equal the expected state, every other result has "
          f"{r['rows']:,} rows: {'yes' if r['correct'] and first['correct'] else 'NO'}")


# ---- 3. lookups ---------------------------------------------------------------------------
def _lookup_calls(table, iceberg, keys: np.ndarray) -> dict:
    from pyiceberg.expressions import EqualTo, In
    key_table = pa.table({"k": pa.array(keys, pa.int64())})
    row_filter = EqualTo("k", int(keys[0])) if len(keys) == 1 else In("k", keys.tolist())
    return {"flussfs": lambda: table.lookup(key_table),
            "iceberg": lambda: iceberg.scan(row_filter=row_filter).to_arrow()}


def bench_lookup(table, meter, iceberg, expected: pa.Table, size: int, rounds: int,
                 seed: int) -> dict:
    """`rounds` lookups of `size` random existing keys through flussfs lookup() and through
    pyiceberg's filtered scan, interleaved; every flussfs answer is checked."""
    rng = np.random.default_rng(seed)
    times, correct = {"flussfs": [], "iceberg": []}, True
    meter.reset()
    for i in range(rounds):
        keys = rng.choice(expected.num_rows, size, replace=False)
        calls = _lookup_calls(table, iceberg, keys)
        for name in (("flussfs", "iceberg") if i % 2 == 0 else ("iceberg", "flussfs")):
            t0 = time.perf_counter()
            result = calls[name]()
            times[name].append(time.perf_counter() - t0)
            if name == "flussfs":
                correct &= same_rows(result, expected.take(pa.array(np.sort(keys))))
    return {"keys": size, "rounds": rounds, "correct": bool(correct),
            **{f"{n}_s_p50": h.pct(t, 50) for n, t in times.items()},
            **{f"{n}_s_p99": h.pct(t, 99) for n, t in times.items()},
            "flussfs_bytes_read_per_lookup": meter.bytes_read / rounds,
            "flussfs_requests_per_lookup": {op: n / rounds for op, n in
                                            sorted(meter.requests.items())}}


def print_lookup(results: list[dict]) -> None:
    print("3. Lookup of random existing keys on the same table; pyiceberg = "
          "scan(row_filter=EqualTo / In).to_arrow(); interleaved")
    rows = []
    for r in results:
        label = f"{r['keys']} key{'s' if r['keys'] > 1 else ''}"
        ok = "correct" if r["correct"] else "WRONG"
        rows.append([f"flussfs lookup(), {label}", h.ms(r["flussfs_s_p50"]),
                     h.ms(r["flussfs_s_p99"]), r["rounds"], ok])
        rows.append([f"pyiceberg filtered scan, {label}", h.ms(r["iceberg_s_p50"]),
                     h.ms(r["iceberg_s_p99"]), r["rounds"], ""])
    h.print_table(["", "p50 ms", "p99 ms", "rounds", "result"], rows)
    for r in results:
        print(f"   flussfs per lookup of {r['keys']}: "
              f"{r['flussfs_bytes_read_per_lookup'] / 2**20:.2f} MiB read in "
              f"{h.requests_text(r['flussfs_requests_per_lookup'], 1)}")


# ---- the run ------------------------------------------------------------------------------
def bench_reads(backend, table, meter, iceberg, expected: pa.Table, counts: Counts) -> dict:
    """Scan and lookups of the table holding `expected` after counts.change_commits upserts."""
    read_parquet, parquet_bytes = parquet_baseline(backend, expected)
    first = first_scan(backend, table, expected)
    scan = bench_scan(table, meter, iceberg, read_parquet, expected, counts.scan_repeats)
    lookups = [bench_lookup(table, meter, iceberg, expected, 1, counts.lookups_1, 11),
               bench_lookup(table, meter, iceberg, expected, LOOKUP_BATCH,
                            counts.lookups_batch, 12)]
    return {"scan": scan | {"first": first}, "lookups": lookups, "parquet_bytes": parquet_bytes,
            "change_rows": counts.table_rows + counts.change_commits * UPSERT_ROWS}


def bench_upserts_then_reads(backend, table, iceberg, data: Data, counts: Counts,
                             upserts: int) -> dict:
    """The first change_commits upserts, then the scan and lookups on the table they leave
    (table_rows keys, change_commits x 10,000 changes), then the remaining upserts."""
    meter = h.metered(table)
    times, change_commits = {"flussfs": [], "iceberg": []}, counts.change_commits
    upsert_rounds(table, iceberg, data, range(0, change_commits), counts.iceberg_upserts, times)
    requests, written = dict(meter.requests), meter.bytes_written
    out = bench_reads(backend, table, meter, iceberg, expected_state(data, change_commits),
                      counts)
    meter.reset()
    upsert_rounds(table, iceberg, data, range(change_commits, upserts),
                  counts.iceberg_upserts, times)
    for op, n in meter.requests.items():
        requests[op] = requests.get(op, 0) + n
    out["upsert"] = upsert_summary(times, requests, written + meter.bytes_written,
                                   change_commits)
    return out


def run_backend(backend: h.Backend, counts: Counts, data: Data) -> dict:
    print(f"\n=== {backend.label} ===\n")
    upserts = counts.flussfs_upserts_s3 if backend.name == "s3" else counts.flussfs_upserts_local
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flussfs-bench-catalog-") as workdir:
        table, flussfs_load_s = load_flussfs(backend, data.base)
        iceberg, iceberg_load_s = load_iceberg(backend, workdir, data.base)
        print(f"table: {counts.table_rows:,} rows x {len(SCHEMA)} columns (k int64 key + "
              f"{len(SCHEMA) - 1} value columns), {BUCKETS} buckets; loaded by flussfs "
              f"upserts of {PRELOAD_ROWS_PER_CALL:,} rows in {flussfs_load_s:.1f} s, by "
              f"pyiceberg append in {iceberg_load_s:.1f} s\n")
        out = bench_upserts_then_reads(backend, table, iceberg, data, counts, upserts)
        table.close()
    out.update(label=backend.label, flussfs_load_s=flussfs_load_s, iceberg_load_s=iceberg_load_s)
    print_upsert(out["upsert"], counts.change_commits)
    print()
    print_scan(out["scan"], out["change_rows"], out["parquet_bytes"])
    print()
    print_lookup(out["lookups"])
    out["elapsed_s"] = time.perf_counter() - started
    return out


def targets(store: str, r: dict) -> list[dict]:
    u = r["upsert"]
    checks = [{"store": store, "target": f"pyiceberg upsert p50 >= {UPSERT_RATIO_MIN:.0f}x "
               f"flussfs upsert p50", "value": f"{u['ratio_p50']:.1f}x",
               "pass": u["ratio_p50"] >= UPSERT_RATIO_MIN}]
    correct = (r["scan"]["correct"] and r["scan"]["first"]["correct"]
               and all(x["correct"] for x in r["lookups"]))
    checks.append({"store": store, "target": "scan and lookup results equal the expected state",
                   "value": "yes" if correct else "no", "pass": correct})
    return checks


def main(argv=None) -> int:
    args = h.arguments(__doc__, RESULTS_PATH_DEFAULT, "smaller counts (run < 3 min)").parse_args(argv)
    counts = QUICK if args.quick else FULL
    info = h.machine() | {"pyiceberg": importlib.metadata.version("pyiceberg")}
    mode, started = h.start("primary-key benchmark", args.quick, info,
                            ("pyarrow", "pyiceberg", "moto", "s3fs"))
    data = make_data(counts, max(counts.flussfs_upserts_local, counts.flussfs_upserts_s3), 7)
    results, checks = h.on_both_stores(run_backend, targets, counts, data)
    h.finish(args.json, started, {"mode": mode, "counts": asdict(counts), "machine": info},
             results, checks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
