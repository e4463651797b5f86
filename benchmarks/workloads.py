"""The suite's workloads (benchmarks/README.md, "Suite"): each runs flussfs and every peer that
can do the job on one store, side by side, and returns a JSON-able dict of what it measured.

Invariants: timed calls of the systems alternate round by round with the order rotated, so
that noise falls on all alike; every result is checked (rows present exactly once, the same
latest state for every system) before it is reported; request and byte counts come from the
latency proxy, which sees every system's requests alike.
"""
from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from flussfs.storage import open_store
from flussfs.storage.wrappers import _Delegate

from . import _harness as h
from .log_bench import EVENT_SCHEMA, WIDE_SCHEMA, _layout, event_rows, spread_columns, wide_rows
from .peers import Peer, Store, peer_class
from .pk_bench import SCHEMA as ORDER_SCHEMA
from .pk_bench import Data, expected_state, order_rows

SYSTEMS = ("flussfs", "deltalake", "pyiceberg", "lance")
APPEND_ROWS = 1000
UPSERT_ROWS = 10_000
TAIL_ROWS = 10
PROJECTION_WIDTHS = (2, 5, 10, 20)
WRITER_ID_SPAN = 1_000_000_000   # event ids of concurrent writer w start at w * this


@dataclass(frozen=True)
class Counts:
    """How much work each workload does; --quick picks the small set."""
    append_rounds: int
    writer_processes: tuple
    appends_per_writer: int
    table_rows: int
    upsert_rounds: int
    tail_appends: int
    tail_gap_s: float
    idle_s: float
    projection_rows: int
    projection_call_rows: int
    lookups: int
    scan_repeats: int


FULL = Counts(append_rounds=100, writer_processes=(1, 4, 16), appends_per_writer=10,
              table_rows=1_000_000, upsert_rounds=5, tail_appends=100, tail_gap_s=0.1,
              idle_s=30.0, projection_rows=1_000_000, projection_call_rows=200_000, lookups=100,
              scan_repeats=5)
QUICK = Counts(append_rounds=15, writer_processes=(1, 4, 16), appends_per_writer=3,
               table_rows=200_000, upsert_rounds=2, tail_appends=25, tail_gap_s=0.1,
               idle_s=8.0, projection_rows=400_000, projection_call_rows=200_000, lookups=20,
               scan_repeats=2)


@dataclass
class Run:
    """One store of the run: where tables go, and the proxy metering it (None for local)."""
    name: str               # "local", "s3-express", "s3-standard"
    store: Store
    proxy: object | None    # benchmarks.latency proxy handle: .stats(), .reset()
    model: str = "none"     # the latency model's name
    systems: tuple = SYSTEMS

    def peer(self, system: str, table: str) -> Peer:
        return peer_class(system)(self.store, table)

    def new_name(self, what: str) -> str:
        return f"{what}-{uuid.uuid4().hex[:8]}"


# ---- timing -------------------------------------------------------------------------------
def interleaved(rounds: int, calls: dict) -> dict:
    """name -> seconds of each round's call; the calls alternate, the order rotating."""
    names, times = list(calls), {name: [] for name in calls}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def latency(seconds: list) -> dict:
    if not seconds:
        return {"p50_s": None, "p99_s": None, "mean_s": None, "n": 0}
    return {"p50_s": h.pct(seconds, 50), "p99_s": h.pct(seconds, 99),
            "mean_s": float(np.mean(seconds)), "n": len(seconds)}


def _requests(run: Run) -> dict:
    """The proxy's counts so far, flat: requests per operation, GET 404s, PUT 412s, totals."""
    if run.proxy is None:
        return {}
    stats = run.proxy.stats()
    out = {op: v["requests"] for op, v in stats.items()}
    out.update(GET_404=stats["GET"]["404"], PUT_412=stats["PUT"]["412"],
               total=sum(v["requests"] for v in stats.values()),
               bytes_down=sum(v["bytes_down"] for v in stats.values()),
               bytes_up=sum(v["bytes_up"] for v in stats.values()))
    return out


# ---- 1. small appends ---------------------------------------------------------------------
def small_appends(run: Run, counts: Counts) -> dict:
    """1,000-row commits from one writer per system, and a raw conditional PUT of the size of
    flussfs's commit object through the same client (the physical limit)."""
    rng = np.random.default_rng(1)
    peers = {s: run.peer(s, run.new_name(f"append-{s}")) for s in run.systems}
    for peer in peers.values():
        peer.create(EVENT_SCHEMA)
    batch = event_rows(APPEND_ROWS, 0, rng)
    for peer in peers.values():          # warm-up: connections, caches, first commits
        for _ in range(3):
            peer.append(batch)
    raw = _raw_put(run, _commit_bytes(peers["flussfs"]))
    calls = {s: (lambda p=p: p.append(batch)) for s, p in peers.items()}
    calls["raw PUT"] = raw
    times = interleaved(counts.append_rounds, calls)
    out = {name: {**latency(t), "commits_per_s": len(t) / sum(t)} for name, t in times.items()}
    for peer in peers.values():
        peer.close()
    return {"rows": APPEND_ROWS, "commit_bytes": raw.size, "systems": out}


def _commit_bytes(peer) -> int:
    """The size of flussfs's newest commit object (one small append = one inline commit)."""
    table = peer.handle
    sizes = [len(log.read_commit(log.head().number).raw) for log in table.logs if log.head()]
    return max(sizes)


class _RawPut:
    """One put-if-absent of `size` random bytes to a fresh key, via flussfs's own store client."""

    def __init__(self, run: Run, size: int):
        self.store = open_store(run.store.location(run.new_name("raw")), run.store.fsspec_options())
        self.payload, self.size = np.random.default_rng(2).bytes(size), size

    def __call__(self):
        self.store.put_if_absent(f"raw/{uuid.uuid4().hex}", self.payload)


def _raw_put(run: Run, size: int) -> _RawPut:
    raw = _RawPut(run, size)
    for _ in range(3):
        raw()
    return raw


# ---- 2. concurrent writers ----------------------------------------------------------------
def concurrent_writers(run: Run, counts: Counts) -> dict:
    """1, 4 and 16 processes appending 1,000-row commits to one table per system; total
    commits/s over the wall time, conflicts retried, and every row present exactly once."""
    context = multiprocessing.get_context("spawn")
    out = {}
    for system in run.systems:
        out[system] = [_writers_round(run, context, system, n, counts.appends_per_writer)
                       for n in counts.writer_processes]
    return {"rows_per_commit": APPEND_ROWS, "appends_per_writer": counts.appends_per_writer,
            "systems": out}


def _writers_round(run: Run, context, system: str, processes: int, appends: int) -> dict:
    table = run.new_name(f"writers-{system}-{processes}")
    peer = run.peer(system, table)
    peer.create(EVENT_SCHEMA)
    barrier, results = context.Barrier(processes + 1), context.Queue()
    workers = [context.Process(target=_writer, args=(system, run.store, table, w, appends,
                                                        barrier, results))
               for w in range(processes)]
    for w in workers:
        w.start()
    try:
        barrier.wait(timeout=300)
        done = [results.get(timeout=600) for _ in workers]
    except (threading.BrokenBarrierError, queue.Empty) as e:
        done = [{"start": 0.0, "end": 0.0, "error": f"a writer process did not report: {e!r}"}]
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    errors = [d["error"] for d in done if "error" in d]
    wall = max(d["end"] for d in done) - min(d["start"] for d in done) if not errors else None
    ids = peer.scan(columns=["event_id"])["event_id"].to_numpy()
    peer.close()
    expected = np.concatenate([np.arange(w * WRITER_ID_SPAN, w * WRITER_ID_SPAN
                                         + appends * APPEND_ROWS) for w in range(processes)])
    exact = len(ids) == len(expected) and np.array_equal(np.sort(ids), np.sort(expected))
    return {"processes": processes, "commits": processes * appends, "wall_s": wall,
            "commits_per_s": processes * appends / wall if wall else None,
            "conflicts_retried": sum(d.get("retries", 0) for d in done),
            "rows_expected": len(expected), "rows_found": len(ids), "exactly_once": exact,
            "errors": errors[:3]}


def _writer(system, store, table, writer, appends, barrier, results) -> None:
    """One writer process: prepares its batches, opens the table, waits for all, appends,
    reports."""
    rng = np.random.default_rng(writer)
    batches = [event_rows(APPEND_ROWS, writer * WRITER_ID_SPAN + s * APPEND_ROWS, rng)
               for s in range(appends)]
    peer = peer_class(system)(store, table)
    peer.tail_start()  # warm: the table opened, connections made, before the clock starts
    barrier.wait(timeout=300)
    start, retries = time.time(), 0
    try:
        for batch in batches:
            retries += peer.append(batch)
    except Exception as e:  # reported, and the round is marked as failed
        results.put({"start": start, "end": time.time(), "error": f"{type(e).__name__}: {e}"})
        return
    results.put({"start": start, "end": time.time(), "retries": retries})
    peer.close()


# ---- 3. upserts, then the latest state: scan and lookups ----------------------------------
def upserts_and_reads(run: Run, counts: Counts) -> dict:
    """Each system loads the same table of `table_rows` orders, takes `upsert_rounds` upserts
    of 10,000 existing keys (flussfs then compacts, its time spread over the upserts), and one
    more upsert after that. Then every system's latest state must equal the model's; its full
    scan is timed against plain Parquet of the same rows read by pyarrow, and point lookups
    against each peer's filtered scan."""
    rng = np.random.default_rng(3)
    base = order_rows(np.arange(counts.table_rows), rng, 0)
    batches = [order_rows(rng.choice(counts.table_rows, UPSERT_ROWS, replace=False), rng, v + 1)
               for v in range(counts.upsert_rounds + 1)]
    expected = expected_state(Data(base, batches), len(batches))
    systems = [s for s in run.systems if s == "flussfs" or peer_class(s).can_upsert]
    peers = {s: _loaded(run, s, base) for s in systems}
    times = interleaved(counts.upsert_rounds, _upsert_calls(peers, batches))
    compaction_s = _timed(peers["flussfs"].compact)
    for s, peer in peers.items():
        peer.upsert(batches[-1])  # left uncompacted: reads merge it over the snapshot
    result = {"table_rows": counts.table_rows, "upsert_rows": UPSERT_ROWS,
              "rounds": counts.upsert_rounds, "flussfs_compaction_s": compaction_s,
              "upserts": _upsert_summary(times, compaction_s)}
    result["same_state"] = {s: _same(p.scan(), expected) for s, p in peers.items()}
    result["scan"] = full_scans(run, peers, expected, counts.scan_repeats)
    result["lookup"] = lookups(run, peers, expected, counts.lookups)
    for peer in peers.values():
        peer.close()
    return result


def _same(rows: pa.Table, expected: pa.Table) -> bool:
    rows = rows.select(expected.column_names).sort_by("k")
    return rows.num_rows == expected.num_rows and rows.cast(expected.schema).equals(expected)


def _loaded(run: Run, system: str, base: pa.Table) -> Peer:
    peer = run.peer(system, run.new_name(f"orders-{system}"))
    peer.create(ORDER_SCHEMA, key="k")
    if system == "flussfs":
        peer.upsert(base)
        peer.compact()
    else:
        peer.append(base)
    return peer


def _upsert_calls(peers: dict, batches: list) -> dict:
    """name -> a call upserting the next batch each time it is called."""
    def caller(peer):
        pending = iter(batches[:-1])
        return lambda: peer.upsert(next(pending))
    return {s: caller(p) for s, p in peers.items()}


def _upsert_summary(times: dict, compaction_s: float) -> dict:
    out = {s: latency(t) for s, t in times.items()}
    flussfs = times["flussfs"]
    out["flussfs"]["amortised_s"] = (sum(flussfs) + compaction_s) / len(flussfs)
    for s, t in times.items():
        out[s].setdefault("amortised_s", float(np.mean(t)))
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def full_scans(run: Run, peers: dict, expected: pa.Table, repeats: int) -> dict:
    """The whole latest state, per system, against pq.read_table of the same rows written as
    one plain Parquet file (pyarrow's defaults) on the same store."""
    parquet = _PlainParquet(run, expected)
    calls = {s: (lambda p=p: p.scan()) for s, p in peers.items()}
    calls["plain Parquet"] = parquet.read
    times = interleaved(repeats, calls)
    return {"rows": expected.num_rows, "parquet_bytes": parquet.size,
            "systems": {s: latency(t) for s, t in times.items()}}


class _PlainParquet:
    """The latest state as one Parquet file; read with pyarrow's own filesystem (local or S3)."""

    def __init__(self, run: Run, rows: pa.Table):
        import pyarrow.parquet as pq
        self.fs, root = _arrow_filesystem(run.store)
        self.path = f"{root}/{run.new_name('plain')}.parquet"
        pq.write_table(rows, self.path, filesystem=self.fs)
        self.size = self.fs.get_file_info(self.path).size

    def read(self) -> pa.Table:
        import pyarrow.parquet as pq
        return pq.read_table(self.path, filesystem=self.fs)


def _arrow_filesystem(store: Store):
    from pyarrow import fs
    if store.kind == "local":
        return fs.LocalFileSystem(), store.root
    from .peers import KEY, REGION, SECRET
    host = store.endpoint_url.split("://", 1)[1]
    s3 = fs.S3FileSystem(endpoint_override=host, scheme="http", access_key=KEY,
                         secret_key=SECRET, region=REGION)
    return s3, store.root.split("://", 1)[1]


def lookups(run: Run, peers: dict, expected: pa.Table, n: int) -> dict:
    """`n` point lookups of random existing keys, the same keys for every system, checked."""
    rng = np.random.default_rng(4)
    keys = rng.choice(expected.num_rows, n, replace=False)
    found = {s: 0 for s in peers}

    def caller(system, peer):
        pending = iter(keys)

        def call():
            k = int(next(pending))
            rows = peer.lookup(k)
            found[system] += rows.num_rows == 1 and _same(rows, expected.slice(k, 1))
        return call
    times = interleaved(n, {s: caller(s, p) for s, p in peers.items()})
    return {"lookups": n, "systems": {s: {**latency(t), "correct": found[s]}
                                      for s, t in times.items()}}


def _delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after
            if isinstance(after[k], (int, float))}


# ---- 5. projection ------------------------------------------------------------------------
def projection(run: Run, counts: Counts) -> dict:
    """A 20-column table per system written in calls of `projection_call_rows` rows; reads of
    2, 5, 10 and 20 spread columns: bytes and requests (proxy) and time."""
    rng = np.random.default_rng(7)
    chunks = [wide_rows(counts.projection_call_rows, rng)
              for _ in range(counts.projection_rows // counts.projection_call_rows)]
    peers = {s: run.peer(s, run.new_name(f"wide-{s}")) for s in run.systems}
    for peer in peers.values():
        peer.create(WIDE_SCHEMA)
        for chunk in chunks:
            peer.append(chunk)
    layout = _layout(peers["flussfs"].handle)
    result = {"rows": counts.projection_rows, "flussfs_commits": layout["commits"],
              "flussfs_segments": layout["segments"], "systems": {}}
    for system, peer in peers.items():
        result["systems"][system] = {k: _projected_read(run, peer, k, counts.projection_rows)
                                     for k in PROJECTION_WIDTHS}
        peer.close()
    return result


def _projected_read(run: Run, peer, k: int, rows: int) -> dict:
    """A cold read (a new handle: metadata and commits read afresh) of k spread columns."""
    columns = spread_columns(k)
    reader = run.peer(peer.name, peer.table)
    segments = _SegmentGets.around(reader) if peer.name == "flussfs" else None
    before = _requests(run)
    t0 = time.perf_counter()
    got = reader.scan(columns=columns)
    seconds = time.perf_counter() - t0
    after = _requests(run)
    reader.close()
    if got.num_rows != rows or sorted(got.column_names) != sorted(columns):
        raise AssertionError(f"{peer.name} read {got.num_rows} rows of {got.column_names}")
    out = {"s": seconds, "requests": _delta(before, after)}
    if segments is not None:
        out["segment_gets"] = segments.count
    return out


class _SegmentGets(_Delegate):
    """Counts GETs of segment objects (format_spec section 6) made through a flussfs table."""

    def __init__(self, inner):
        super().__init__(inner)
        self.count = 0

    @classmethod
    def around(cls, peer) -> "_SegmentGets":
        return h.wrap_store(peer.handle, cls(peer.handle.store))

    def get(self, key, start=None, end=None):
        if "/segments/" in key:
            self.count += 1
        return self.inner.get(key, start, end)

    def get_ranges(self, key, ranges):
        if "/segments/" in key:
            self.count += len(ranges)  # one ranged GET each
        return self.inner.get_ranges(key, ranges)
