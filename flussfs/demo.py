"""A guided tour of flussfs on a local directory: `python -m flussfs.demo [--dir PATH]`.

It creates a table of click events, backfills some history, starts a subscriber thread from
"latest" on its own table handle, streams batches through a batching writer while the
subscriber measures end-to-end latency (append returned -> subscriber yielded), then scans,
reads end offsets and describes the table, and folds the clicks into a primary-key table of
per-user profiles (flussfs.demo_profiles), timing every step.

Invariants: the shape of the output is deterministic (same steps, same row counts, same data
from a fixed seed); only timings vary. The demo exits 1 if the subscriber did not receive
exactly the rows streamed while it was running.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

import flussfs

from . import demo_profiles
from .cli import TextTable, describe_table, format_description
from .progress import format_duration

SEED = 7
BUCKETS = 4
USERS = 200
BACKFILL_ROWS = 1000
BATCHES_DEFAULT = 20
BATCH_ROWS_DEFAULT = 500
BATCH_PAUSE_S = 0.05              # between batches, so the stream looks like traffic, not a bulk load
SUBSCRIBER_IDLE_TIMEOUT_S = 10.0  # the subscriber gives up after this long without rows
SUBSCRIBER_WAIT_S = 30.0          # the demo waits this long for the subscriber to catch up
SLOW_CLICK_MS = 250
URLS = ["/", "/search", "/product", "/product", "/product", "/cart", "/checkout", "/help"]
START_MS = 1_714_521_600_000      # 2024-05-01T00:00:00Z, so the data is the same on every run

SCHEMA = pa.schema([pa.field("event_id", pa.int64(), nullable=False),
                    pa.field("user_id", pa.int64(), nullable=False),
                    pa.field("url", pa.string()),
                    pa.field("ts", pa.timestamp("ms", tz="UTC")),
                    pa.field("latency_ms", pa.int32())])


def clicks(rng: random.Random, first_id: int, n: int) -> pa.Table:
    """`n` click events with event ids first_id, first_id + 1, ..."""
    ids = range(first_id, first_id + n)
    return pa.table({
        "event_id": pa.array(ids, pa.int64()),
        "user_id": pa.array([rng.randint(1, USERS) for _ in ids], pa.int64()),
        "url": pa.array([rng.choice(URLS) for _ in ids], pa.string()),
        "ts": pa.array([START_MS + 37 * i for i in ids], pa.int64()).cast(SCHEMA.field("ts").type),
        "latency_ms": pa.array([int(rng.lognormvariate(4.3, 0.6)) for _ in ids], pa.int32()),
    }, schema=SCHEMA)


class Subscriber(threading.Thread):
    """Tails the table from "latest" on its own handle; records when each batch fully arrived."""

    def __init__(self, uri: str, first_id: int, batch_rows: int, expected_rows: int):
        super().__init__(name="demo-subscriber", daemon=True)
        self.uri, self.first_id, self.batch_rows = uri, first_id, batch_rows
        self.expected_rows = expected_rows
        self.ready = threading.Event()
        self.rows = 0
        self.buckets_seen: set[int] = set()
        self.completed_at: dict[int, float] = {}   # batch index -> monotonic time
        self._per_batch: dict[int, int] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        table = None
        try:
            table = flussfs.open_table(self.uri)
            sub = table.subscribe("latest", columns=["event_id"],
                                  idle_timeout=SUBSCRIBER_IDLE_TIMEOUT_S)
            self.ready.set()
            for batch in sub:
                self._count(batch, time.monotonic())
                if self.rows >= self.expected_rows:
                    break
            sub.close()
        except BaseException as e:  # reported by the main thread
            self.error = e
        finally:
            self.ready.set()
            if table is not None:
                table.close()

    def _count(self, batch: pa.RecordBatch, now: float) -> None:
        self.rows += batch.num_rows
        self.buckets_seen.update(batch.column("_bucket").unique().to_pylist())
        for event_id in batch.column("event_id").to_pylist():
            i = (event_id - self.first_id) // self.batch_rows
            self._per_batch[i] = self._per_batch.get(i, 0) + 1
            if self._per_batch[i] == self.batch_rows:
                self.completed_at[i] = now


class Tour:
    """Prints numbered steps with their durations."""

    def __init__(self, out):
        self.out, self.step, self.started = out, 0, time.monotonic()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def done(self, title: str, seconds: float) -> None:
        self.step += 1
        self.say(f"\n[{self.step}] {title:<66} {format_duration(seconds):>10}")

    def detail(self, text: str) -> None:
        for line in text.splitlines():
            self.say(f"    {line}".rstrip())


def run(uri: str, batches: int, batch_rows: int, out, keep: bool = False) -> int:
    tour, rng = Tour(out), random.Random(SEED)
    tour.say(f"flussfs demo: a click stream on {uri}")
    tour.say("(every step is timed; the table is a plain directory of objects, no server)")

    t = time.monotonic()
    table = flussfs.create_table(uri, SCHEMA, buckets=BUCKETS, bucket_key=["user_id"])
    tour.done(f"create table '{table.name}': {BUCKETS} buckets, bucketed by user_id",
              time.monotonic() - t)
    tour.detail(", ".join(f"{f.name} {f.type}{'' if f.nullable else ' not null'}" for f in SCHEMA))

    t = time.monotonic()
    table.append(clicks(rng, 0, BACKFILL_ROWS))
    tour.done(f"backfill {BACKFILL_ROWS:,} historical events with one append()", time.monotonic() - t)

    streamed = batches * batch_rows
    t = time.monotonic()
    subscriber = Subscriber(uri, BACKFILL_ROWS, batch_rows, streamed)
    subscriber.start()
    subscriber.ready.wait()
    if subscriber.error is not None:
        raise subscriber.error
    tour.done('start a subscriber thread from "latest" (its own open_table handle)',
              time.monotonic() - t)
    tour.detail(f"it should see the {streamed:,} streamed events and none of the backfill")

    flushed_at, flush_s = {}, []
    t = time.monotonic()
    with table.writer() as writer:
        for i in range(batches):
            writer.append(clicks(rng, BACKFILL_ROWS + i * batch_rows, batch_rows))
            f = time.monotonic()
            writer.flush()
            flushed_at[i] = time.monotonic()
            flush_s.append(flushed_at[i] - f)
            time.sleep(BATCH_PAUSE_S)
    write_s = time.monotonic() - t
    subscriber.join(SUBSCRIBER_WAIT_S)
    tour.done(f"stream {batches} batches x {batch_rows} events through table.writer(), "
              f"flush each", write_s)
    tour.detail(f"flush (durable commit in every bucket it touched): p50 "
                f"{format_duration(statistics.median(flush_s))}, max {format_duration(max(flush_s))}")
    if subscriber.error is not None:
        raise subscriber.error
    latencies = [max(0.0, subscriber.completed_at[i] - flushed_at[i])
                 for i in range(batches) if i in subscriber.completed_at]
    tour.detail(f"subscriber received {subscriber.rows:,} of {streamed:,} rows "
                f"from buckets {sorted(subscriber.buckets_seen)}")
    if latencies:
        tour.detail(f"end-to-end latency (flush returned -> subscriber yielded the whole batch): "
                    f"p50 {format_duration(statistics.median(latencies))}, "
                    f"max {format_duration(max(latencies))}")

    t = time.monotonic()
    everything = table.scan().to_arrow()
    tour.done("full scan", time.monotonic() - t)
    tour.detail(f"{everything.num_rows:,} rows x {everything.num_columns} columns "
                f"({BACKFILL_ROWS:,} backfilled + {streamed:,} streamed)")
    per_url = (everything.group_by("url").aggregate([("event_id", "count"), ("latency_ms", "mean")])
               .sort_by([("event_id_count", "descending"), ("url", "ascending")]))
    per_url = per_url.rename_columns(["url", "clicks", "mean_latency_ms"])
    per_url = per_url.set_column(2, "mean_latency_ms", pc.round(per_url["mean_latency_ms"], 1))
    tour.detail(_text_table(per_url))

    expr = (pc.field("url") == "/checkout") & (pc.field("latency_ms") >= SLOW_CLICK_MS)
    t = time.monotonic()
    slow = table.scan(columns=["user_id", "latency_ms", "ts"], filter=expr).to_arrow()
    tour.done("projected + filtered scan", time.monotonic() - t)
    tour.detail(f"columns user_id, latency_ms, ts where url = '/checkout' and "
                f"latency_ms >= {SLOW_CLICK_MS}: {slow.num_rows:,} rows")
    tour.detail(_text_table(slow.sort_by([("latency_ms", "descending"), ("ts", "ascending")])
                            .slice(0, 3)))

    t = time.monotonic()
    offsets = table.end_offsets()
    tour.done("end_offsets()", time.monotonic() - t)
    tour.detail(f"{offsets}  (sum {sum(offsets.values()):,})")

    t = time.monotonic()
    description = format_description(describe_table(table))
    tour.done("describe (what `flussfs describe` prints)", time.monotonic() - t)
    tour.detail(description)

    profiles_ok = demo_profiles.run(tour, f"{uri}-profiles", table, _text_table)
    table.close()

    ok = profiles_ok and subscriber.rows == streamed and sum(offsets.values()) == everything.num_rows
    tour.say(f"\n{'done' if ok else 'FAILED'} in {format_duration(time.monotonic() - tour.started)}: "
             f"subscriber counted {subscriber.rows:,} rows, {streamed:,} appended while it ran")
    if keep:
        tour.say(f"the table stays at {uri}; try:\n  flussfs scan {uri} --limit 5\n"
                 f"  flussfs tail {uri} --from latest --follow")
    else:
        tour.say("the temporary table is removed now; pass --dir PATH to keep it")
    return 0 if ok else 1


def _text_table(t: pa.Table) -> str:
    import io
    buf = io.StringIO()
    out = TextTable(t.schema, buf)
    for batch in t.to_batches():
        out.write(batch)
    out.close()
    return buf.getvalue().rstrip("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flussfs.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="directory to create the table in (kept afterwards); "
                        "default: a temporary directory, removed at the end")
    parser.add_argument("--batches", type=int, default=BATCHES_DEFAULT, help=argparse.SUPPRESS)
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS_DEFAULT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batches < 1 or args.batch_rows < 1:
        parser.error("--batches and --batch-rows must be >= 1")
    try:
        if args.dir:
            os.makedirs(args.dir, exist_ok=True)
            return run(os.path.join(os.path.abspath(args.dir), "clicks"), args.batches,
                       args.batch_rows, sys.stdout, keep=True)
        with tempfile.TemporaryDirectory(prefix="flussfs-demo-") as tmp:
            return run(os.path.join(tmp, "clicks"), args.batches, args.batch_rows, sys.stdout)
    except flussfs.FlussError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
