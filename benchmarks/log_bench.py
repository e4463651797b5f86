"""Log-table benchmark: commit overhead, tail latency and projection, on a local directory and
on moto's S3 server (benchmarks/README.md explains each workload and its baseline).

    .venv/bin/python -m benchmarks.log_bench [--quick] [--json PATH]

A benchmark, not a test: machines are noisy, so each time is reported next to a baseline
measured side by side (rounds interleaved, order alternating), and targets are ratios of the
two. Byte and request counts come from MeteredStore and do not depend on the machine.
"""
from __future__ import annotations

from . import _harness as h  # first: it sets fake AWS credentials before boto3/s3fs load

import gc
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

import flussfs

RESULTS_PATH_DEFAULT = os.path.join(os.path.dirname(__file__), "results", "log_bench.json")
COMMIT_RATIO_MAX = 1.5               # target: append / raw put-if-absent latency, p50 and p99
PROJECTION_2_OF_20_SHARE_MAX = 0.15  # target: bytes fetched for 2 of 20 columns / a full read
PROJECTION_WIDTHS = (2, 5, 10, 20)
COMMIT_ROWS = 1000
TAIL_ROWS_PER_APPEND = 10
TAIL_IDLE_TIMEOUT_S = 5.0            # the subscriber gives up after this long without rows
SIZE_SAMPLES_MAX = 20                # warm-up appends inspected to learn the commit size


@dataclass(frozen=True)
class Counts:
    """How much work each workload does; --quick picks the small set."""
    commit_warmup: int
    commit_rounds_local: int
    commit_rounds_s3: int
    tail_appends: int
    tail_gap_s: float
    projection_calls: int
    projection_rows_per_call: int
    projection_repeats: int


FULL = Counts(commit_warmup=20, commit_rounds_local=500, commit_rounds_s3=500,
              tail_appends=200, tail_gap_s=0.02, projection_calls=5,
              projection_rows_per_call=200_000, projection_repeats=3)
QUICK = Counts(commit_warmup=10, commit_rounds_local=60, commit_rounds_s3=60,
               tail_appends=50, tail_gap_s=0.02, projection_calls=2,
               projection_rows_per_call=100_000, projection_repeats=1)


# ---- data ---------------------------------------------------------------------------------
EVENT_SCHEMA = pa.schema([
    pa.field("event_id", pa.int64(), nullable=False),
    pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("page", pa.string()),
    pa.field("duration_ms", pa.float64()),
    pa.field("country", pa.string()),
])
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase", "signup", "logout"]
COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "NL", "SE", "ES", "IT", "MX"]
PAGES = [f"/product/{i:06d}" for i in range(0, 50_000, 7)]


def _pick(rng, vocabulary: list[str], n: int) -> pa.Array:
    indices = pa.array(rng.integers(0, len(vocabulary), n), pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(vocabulary)).cast(pa.string())


def event_rows(n: int, first_id: int, rng) -> pa.Table:
    """`n` web events with ids first_id..: ids, a timestamp, small and large vocabularies."""
    now_ms = int(time.time() * 1000)
    return pa.table({
        "event_id": pa.array(np.arange(first_id, first_id + n), pa.int64()),
        "event_time": pa.array(now_ms + np.sort(rng.integers(0, 1000, n)), pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")),
        "user_id": pa.array(rng.integers(1, 2_000_000, n), pa.int64()),
        "event_type": _pick(rng, EVENT_TYPES, n),
        "page": _pick(rng, PAGES, n),
        "duration_ms": pa.array(np.round(rng.lognormal(5, 1.2, n), 1), pa.float64()),
        "country": _pick(rng, COUNTRIES, n),
    }, schema=EVENT_SCHEMA)


WIDE_COLUMNS = 20
WIDE_SCHEMA = pa.schema([
    pa.field(f"{('int', 'float', 'str')[i % 3]}_{i:02d}",
             (pa.int64(), pa.float64(), pa.string())[i % 3]) for i in range(WIDE_COLUMNS)])
WORDS = [f"{w}-{i:05d}" for w in ("alpha", "bravo", "delta", "kilo") for i in range(5000)]


def wide_rows(n: int, rng) -> pa.Table:
    """`n` rows of 20 columns cycling int64, float64, string (7, 7 and 6 of them)."""
    columns = []
    for i, t in enumerate(WIDE_SCHEMA.types):
        if t == pa.int64():
            columns.append(pa.array(rng.integers(0, 10 ** (4 + i % 8), n), pa.int64()))
        elif t == pa.float64():
            columns.append(pa.array(rng.normal(100.0, 25.0, n), pa.float64()))
        else:
            columns.append(_pick(rng, WORDS, n))
    return pa.Table.from_arrays(columns, schema=WIDE_SCHEMA)


def spread_columns(k: int) -> list[str]:
    """`k` of the wide columns spread evenly over the schema (a mix of types, not neighbours)."""
    return [WIDE_SCHEMA.names[i * WIDE_COLUMNS // k] for i in range(k)]


# ---- 1. commit latency ----------------------------------------------------------------------
def _commit_size(table, meter, batches) -> tuple[int, int]:
    """Warm the table up and learn the encoded size of one commit: the median over appends
    that made exactly one request, a PUT (those that also checkpointed are skipped)."""
    sizes = []
    for i in range(SIZE_SAMPLES_MAX):
        meter.reset()
        table.append(batches[i % len(batches)])
        time.sleep(0.02)  # a checkpoint this commit triggered is written in the background
        if dict(meter.requests) == {"put": 1}:
            sizes.append(meter.bytes_written)
    if not sizes:
        raise RuntimeError("no append made exactly one PUT; cannot size the baseline")
    return int(np.median(sizes)), len(sizes)


def bench_commit(backend: h.Backend, warmup: int, rounds: int) -> dict:
    table = flussfs.create_table(backend.new_uri(), EVENT_SCHEMA,
                                 storage_options=backend.storage_options)
    meter = h.metered(table)
    rng = np.random.default_rng(1)
    # Built beforehand and reused, so that generating rows is never timed.
    batches = [event_rows(COMMIT_ROWS, i * COMMIT_ROWS, rng) for i in range(16)]
    size, samples = _commit_size(table, meter, batches)
    payload = os.urandom(size)

    def append(i):
        t0 = time.perf_counter()
        table.append(batches[i % len(batches)])
        return time.perf_counter() - t0

    def raw_put(_):
        key = f"bench-baseline/{uuid.uuid4().hex}"  # outside _flussfs/, fresh every time
        t0 = time.perf_counter()
        table.store.put_if_absent(key, payload)
        return time.perf_counter() - t0

    for i in range(warmup):  # both paths warm: connections, page cache, directory entries
        append(i), raw_put(i)
    gc.collect()
    meter.reset()
    appends, raws = [], []
    for i in range(rounds):  # interleaved, alternating which of the two goes first
        if i % 2 == 0:
            appends.append(append(i)), raws.append(raw_put(i))
        else:
            raws.append(raw_put(i)), appends.append(append(i))
    table.close()
    requests = dict(meter.requests)
    requests["put"] = requests.get("put", 0) - rounds  # leave out the baseline's own PUTs
    return {
        "rows": COMMIT_ROWS, "columns": len(EVENT_SCHEMA), "commit_bytes": size,
        "size_samples": samples, "rounds": rounds, "warmup": warmup,
        "append_s_p50": h.pct(appends, 50), "append_s_p99": h.pct(appends, 99),
        "raw_put_s_p50": h.pct(raws, 50), "raw_put_s_p99": h.pct(raws, 99),
        "ratio_p50": h.pct(appends, 50) / h.pct(raws, 50),
        "ratio_p99": h.pct(appends, 99) / h.pct(raws, 99),
        "requests_per_append": {op: n / rounds for op, n in sorted(requests.items())},
    }


def print_commit(r: dict) -> None:
    print(f"1. Commit latency: append() of {r['rows']:,} rows ({r['columns']} columns, "
          f"{r['commit_bytes']:,} B commit object)\n"
          f"   vs raw store.put_if_absent() of {r['commit_bytes']:,} random bytes to a fresh "
          f"key; {r['rounds']} interleaved rounds after {r['warmup']} warm-up")
    h.print_table(["", "p50 ms", "p99 ms"], [
        ["append()", h.ms(r["append_s_p50"]), h.ms(r["append_s_p99"])],
        ["raw put_if_absent", h.ms(r["raw_put_s_p50"]), h.ms(r["raw_put_s_p99"])],
        ["append / raw", f"{r['ratio_p50']:.2f}x", f"{r['ratio_p99']:.2f}x"],
        ["append - raw (ms)", h.ms(r["append_s_p50"] - r["raw_put_s_p50"]),
         h.ms(r["append_s_p99"] - r["raw_put_s_p99"])]])
    per = h.requests_text(r["requests_per_append"], 2)
    print(f"   requests per append: {per} (checkpoints every 32 commits per bucket included)")


# ---- 2. tail latency ----------------------------------------------------------------------
def _consume(sub, expected: int, seen: dict, errors: list) -> None:
    """Record when each row id was yielded (time.time), until `expected` rows arrived."""
    try:
        for batch in sub:
            now = time.time()
            for rid in batch.column("event_id").to_pylist():
                seen.setdefault(rid, now)
            if len(seen) >= expected:
                return
    except BaseException as e:  # re-raised by the main thread
        errors.append(e)


def bench_tail(backend: h.Backend, appends: int, gap_s: float) -> dict:
    uri = backend.new_uri()
    writer = flussfs.create_table(uri, EVENT_SCHEMA, storage_options=backend.storage_options)
    reader = flussfs.open_table(uri, storage_options=backend.storage_options)
    meter = h.metered(reader)
    rng = np.random.default_rng(2)
    batches = [event_rows(TAIL_ROWS_PER_APPEND, i * TAIL_ROWS_PER_APPEND, rng)
               for i in range(appends)]
    sub = reader.subscribe("latest", columns=["event_id"], idle_timeout=TAIL_IDLE_TIMEOUT_S)
    seen, errors, returned, append_s = {}, [], {}, []
    consumer = threading.Thread(target=_consume, name="bench-subscriber", daemon=True,
                                args=(sub, appends * TAIL_ROWS_PER_APPEND, seen, errors))
    consumer.start()
    start = time.perf_counter()
    for i, batch in enumerate(batches):  # on a fixed schedule: a slow append is not waited for
        time.sleep(max(0.0, start + i * gap_s - time.perf_counter()))
        t0 = time.perf_counter()
        writer.append(batch)
        done = time.time()
        append_s.append(time.perf_counter() - t0)
        for rid in batch.column("event_id").to_pylist():
            returned[rid] = done
    elapsed = time.perf_counter() - start
    consumer.join(TAIL_IDLE_TIMEOUT_S + 30)
    sub.close()
    writer.close()
    if errors:
        raise errors[0]
    lat = [seen[rid] - returned[rid] for rid in returned if rid in seen]
    requests = sorted(meter.requests.items())
    return {
        "appends": appends, "rows_per_append": TAIL_ROWS_PER_APPEND, "gap_s": gap_s,
        "rows_received": len(lat), "rows_expected": len(returned),
        "latency_s_p50": h.pct(lat, 50), "latency_s_p99": h.pct(lat, 99),
        "latency_s_min": min(lat), "latency_s_max": max(lat),
        "append_s_p50": h.pct(append_s, 50), "buckets": reader.buckets,
        "poll_interval_s_min": sub.poll_min, "poll_interval_s_max": sub.poll_max,
        "subscriber_requests_per_s": {op: n / elapsed for op, n in requests},
        "subscriber_requests_per_append": {op: n / appends for op, n in requests},
    }


def print_tail(r: dict) -> None:
    print(f"2. Tail latency: {r['appends']} appends of {r['rows_per_append']} rows, one every "
          f"{r['gap_s'] * 1000:.0f} ms; a subscriber (own handle, from 'latest') in a thread.\n"
          f"   latency = time.time() when the subscriber yielded a row - when append() returned")
    h.print_table(["", "p50 ms", "p99 ms", "min ms", "max ms"], [
        ["end-to-end", h.ms(r["latency_s_p50"]), h.ms(r["latency_s_p99"]),
         h.ms(r["latency_s_min"]), h.ms(r["latency_s_max"])]])
    per_s = h.requests_text(r["subscriber_requests_per_s"], 1)
    per_append = h.requests_text(r["subscriber_requests_per_append"], 2)
    print(f"   rows received {r['rows_received']}/{r['rows_expected']}; writer append() p50 "
          f"{h.ms(r['append_s_p50'])} ms; {r['buckets']} buckets\n"
          f"   subscriber poll interval {r['poll_interval_s_min'] * 1000:.0f} ms, doubling "
          f"when idle up to {r['poll_interval_s_max'] * 1000:.0f} ms\n"
          f"   subscriber requests per second: {per_s}\n"
          f"   subscriber requests per append: {per_append}")


# ---- 3. projection ------------------------------------------------------------------------
def _layout(table) -> dict:
    """Commits, referenced segments and bytes per column chunk, as the commits describe them."""
    commits, segments, inline_parts, column_bytes = 0, 0, 0, {}
    for log in table.logs:
        for number in log.numbers_after(None):
            commit = log.read_commit(number)
            commits += 1
            for part in commit.parts:
                segments += "key" in part
                inline_parts += "key" not in part
                for d in part["columns"]:
                    column_bytes[d["field_id"]] = column_bytes.get(d["field_id"], 0) + d["length"]
    return {"commits": commits, "segments": segments, "inline_parts": inline_parts,
            "column_bytes": column_bytes}


def _scan_runs(table, meter, rows_expected: int, repeats: int) -> dict:
    """k -> one measurement per repeat of scanning k spread columns; widths are interleaved
    and their order rotated, so that noise falls on all of them alike."""
    runs = {k: [] for k in PROJECTION_WIDTHS}
    for rep in range(repeats):
        shift = rep % len(PROJECTION_WIDTHS)
        for k in PROJECTION_WIDTHS[shift:] + PROJECTION_WIDTHS[:shift]:
            columns = spread_columns(k)
            meter.reset()
            t0 = time.perf_counter()
            result = table.scan(columns=columns).to_arrow()
            runs[k].append({"s": time.perf_counter() - t0, "bytes": meter.bytes_read,
                            **meter.requests})
            assert result.num_rows == rows_expected and result.column_names == columns
    return runs


def bench_projection(backend: h.Backend, calls: int, rows_per_call: int, repeats: int) -> dict:
    table = flussfs.create_table(backend.new_uri(), WIDE_SCHEMA,
                                 storage_options=backend.storage_options)
    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    for _ in range(calls):
        table.append(wide_rows(rows_per_call, rng))
    load_s = time.perf_counter() - t0
    meter = h.metered(table)
    layout = _layout(table)
    runs = _scan_runs(table, meter, calls * rows_per_call, repeats)
    table.close()
    ids = dict(zip(WIDE_SCHEMA.names, table.metadata.field_ids))
    chunk_bytes = sum(layout["column_bytes"].values())
    full = runs[WIDE_COLUMNS][0]["bytes"]
    widths = []
    for k in PROJECTION_WIDTHS:
        first, names = runs[k][0], spread_columns(k)
        gets = first.get("get", 0)
        widths.append({
            "columns": k, "names": names, "bytes": first["bytes"], "share": first["bytes"] / full,
            "gets": gets, "lists": first.get("list", 0),
            "gets_per_segment": (gets - layout["commits"]) / max(1, layout["segments"]),
            "chunk_share": sum(layout["column_bytes"][ids[c]] for c in names) / chunk_bytes,
            "time_s_p50": h.pct([r["s"] for r in runs[k]], 50)})
    return {"calls": calls, "rows_per_call": rows_per_call, "rows": calls * rows_per_call,
            "repeats": repeats, "load_s": load_s, "commits": layout["commits"],
            "segments": layout["segments"], "inline_parts": layout["inline_parts"],
            "full_read_bytes": full, "widths": widths}


def print_projection(r: dict) -> None:
    print(f"3. Projection: {r['rows']:,} rows x {WIDE_COLUMNS} columns (int64/float64/string) "
          f"in {r['calls']} appends of {r['rows_per_call']:,} rows -> {r['commits']} commits, "
          f"{r['segments']} segments\n"
          f"   scan(columns=k evenly spread columns).to_arrow(); 'ideal' = the chosen columns' "
          f"share of all column-chunk bytes")
    h.print_table(["columns read", "bytes read", "share of full", "ideal", "GETs",
                   "GETs/segment", "LISTs", f"time p50 ms (of {r['repeats']})"], [
        [f"{w['columns']} of {WIDE_COLUMNS}", f"{w['bytes']:,}", f"{w['share'] * 100:.1f}%",
         f"{w['chunk_share'] * 100:.1f}%", w["gets"], f"{w['gets_per_segment']:.2f}",
         w["lists"], h.ms(w["time_s_p50"])] for w in r["widths"]])
    two = next(w for w in r["widths"] if w["columns"] == 2)
    print(f"   2 of 20 = {', '.join(two['names'])}; GETs/segment = (GETs - 1 per commit) / "
          f"segments; loading took {r['load_s']:.1f} s")


# ---- the run ------------------------------------------------------------------------------
def targets(store: str, r: dict) -> list[dict]:
    c = r["commit"]
    two = next(w for w in r["projection"]["widths"] if w["columns"] == 2)
    return [
        {"store": store, "target": f"append p50 <= {COMMIT_RATIO_MAX}x raw put p50",
         "value": f"{c['ratio_p50']:.2f}x", "pass": c["ratio_p50"] <= COMMIT_RATIO_MAX},
        {"store": store, "target": f"append p99 <= {COMMIT_RATIO_MAX}x raw put p99",
         "value": f"{c['ratio_p99']:.2f}x", "pass": c["ratio_p99"] <= COMMIT_RATIO_MAX},
        {"store": store,
         "target": f"bytes for 2 of 20 columns <= {PROJECTION_2_OF_20_SHARE_MAX:.0%} of full",
         "value": f"{two['share'] * 100:.1f}%",
         "pass": two["share"] <= PROJECTION_2_OF_20_SHARE_MAX},
    ]


def run_backend(backend: h.Backend, counts: Counts) -> dict:
    print(f"\n=== {backend.label} ===\n")
    rounds = counts.commit_rounds_s3 if backend.name == "s3" else counts.commit_rounds_local
    t0 = time.perf_counter()
    out = {"label": backend.label}
    out["commit"] = bench_commit(backend, counts.commit_warmup, rounds)
    print_commit(out["commit"])
    print()
    out["tail"] = bench_tail(backend, counts.tail_appends, counts.tail_gap_s)
    print_tail(out["tail"])
    print()
    out["projection"] = bench_projection(backend, counts.projection_calls,
                                         counts.projection_rows_per_call,
                                         counts.projection_repeats)
    print_projection(out["projection"])
    out["elapsed_s"] = time.perf_counter() - t0
    print(f"\n   targets on {backend.name}:")
    for t in targets(backend.name, out):
        print(f"   {h.verdict(t['pass'])}  {t['target']}: {t['value']}")
    return out


def main(argv=None) -> int:
    args = h.arguments(__doc__, RESULTS_PATH_DEFAULT, "smaller counts (run < 2 min)").parse_args(argv)
    counts = QUICK if args.quick else FULL
    info = h.machine()
    mode, started = h.start("log benchmark", args.quick, info)
    results, checks = h.on_both_stores(run_backend, targets, counts)
    h.finish(args.json, started, {"mode": mode, "counts": asdict(counts), "machine": info},
             results, checks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
