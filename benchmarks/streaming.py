"""The suite's streaming workloads (benchmarks/README.md, "Suite"): end-to-end latency from
append() returning to a reader yielding the rows, and the requests an idle reader makes.

Invariants: each reader has its own handle, positioned at the latest version before the first
append; a peer's reader polls on the same schedule as flussfs's subscriber; request counts come
from the latency proxy, which sees every system alike.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow.compute as pc

from flussfs.storage import open_store

from .log_bench import EVENT_SCHEMA, event_rows
from .peers import peer_class
from .workloads import Counts, Run, _delta, _requests, latency

TAIL_ROWS = 10


# ---- 4. streaming -------------------------------------------------------------------------
POLL_S = 0.05                    # the fixed poll interval every system's reader uses
IDLE_POLL_S = (0.02, 0.5)        # flussfs's default schedule: 20 ms, doubling to 500 ms idle


def streaming(run: Run, counts: Counts) -> dict:
    """A writer appends 10-row batches every ~100 ms (jittered); a reader with its own handle
    polls every 50 ms and records when each batch is yielded. Latency = yielded - append
    returned. flussfs also runs with its default schedule (20 ms doubling to 500 ms idle)."""
    out = {}
    for system in run.systems:
        if system == "flussfs" or peer_class(system).can_tail:
            out[system] = _stream(run, system, counts, (POLL_S, POLL_S))
    out["flussfs, default schedule"] = _stream(run, "flussfs", counts, IDLE_POLL_S)
    return {"poll_s": POLL_S, "appends": counts.tail_appends, "gap_s": counts.tail_gap_s,
            "systems": out, "rtt": _round_trip(run)}


def _stream(run: Run, system: str, counts: Counts, schedule: tuple) -> dict:
    table = run.new_name(f"tail-{system}")
    writer = run.peer(system, table)
    writer.create(EVENT_SCHEMA)
    rng = np.random.default_rng(5)
    batches = [event_rows(TAIL_ROWS, i * TAIL_ROWS, rng) for i in range(counts.tail_appends)]
    follower = Follower(run.peer(system, table), schedule)
    returned = {}
    for i, batch in enumerate(batches):
        writer.append(batch)
        returned[i * TAIL_ROWS] = time.time()
        time.sleep(counts.tail_gap_s * rng.uniform(0.5, 1.5))
    deadline = time.time() + 10
    while len(follower.seen) < len(returned) and time.time() < deadline:
        time.sleep(0.05)
    follower.stop()
    writer.close()
    lat = [follower.seen[i] - t for i, t in returned.items() if i in follower.seen]
    return {**latency(lat), "received": len(lat), "expected": len(returned),
            "poll_s": list(schedule)}


class Follower:
    """A streaming reader in a thread, positioned at the latest version when constructed; it
    records time.time() at which each batch's first event id is yielded. flussfs uses its own
    subscribe(); a peer polls tail_poll on the same schedule (back to the minimum on data,
    doubling up to the maximum while idle)."""

    def __init__(self, peer, schedule: tuple):
        self.peer, self.schedule, self.seen = peer, schedule, {}
        self._stop = threading.Event()
        if peer.name == "flussfs":
            self._sub = peer.handle.subscribe(start="latest", poll_interval_s_min=schedule[0],
                                              poll_interval_s_max=schedule[1])
            target = self._subscribe
        else:
            self._position = peer.tail_start()
            target = self._poll_loop
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.peer.name == "flussfs":
            self._sub.close()
        self._thread.join(timeout=30)
        self.peer.close()

    def _note(self, rows) -> None:
        now = time.time()
        for i in pc.unique(rows["event_id"]).to_pylist():
            if i % TAIL_ROWS == 0:
                self.seen.setdefault(i, now)

    def _subscribe(self) -> None:
        for batch in self._sub:
            self._note(batch)

    def _poll_loop(self) -> None:
        low, high = self.schedule
        interval = low
        while not self._stop.is_set():
            rows, self._position = self.peer.tail_poll(self._position)
            if rows is not None and rows.num_rows:
                self._note(rows)
                interval = low
            else:
                interval = min(high, interval * 2)
            self._stop.wait(interval)


def _round_trip(run: Run, n: int = 50) -> dict:
    """One small GET through the same client and proxy: the request round trip of the model."""
    store = open_store(run.store.location(run.new_name("rtt")), run.store.fsspec_options())
    store.put_if_absent("probe", b"x" * 512)
    store.get("probe")
    seconds = []
    for _ in range(n):
        t0 = time.perf_counter()
        store.get("probe")
        seconds.append(time.perf_counter() - t0)
    return latency(seconds)


def idle_requests(run: Run, counts: Counts) -> dict:
    """Requests an idle reader makes per minute on the default schedule, counted by the proxy
    after a 2-second ramp; flussfs's are also given per bucket."""
    out = {}
    for system in run.systems:
        if system != "flussfs" and not peer_class(system).can_tail:
            continue
        peer = run.peer(system, run.new_name(f"idle-{system}"))
        peer.create(EVENT_SCHEMA)
        peer.append(event_rows(TAIL_ROWS, 0, np.random.default_rng(6)))
        follower = Follower(run.peer(system, peer.table), IDLE_POLL_S)
        time.sleep(2.0)
        before, t0 = _requests(run), time.time()
        time.sleep(counts.idle_s)
        after, t1 = _requests(run), time.time()
        follower.stop()
        per_min = _per_minute(_delta(before, after), t1 - t0)
        buckets = peer.handle.buckets if system == "flussfs" else 1
        out[system] = {"requests_per_min": per_min, "buckets": buckets,
                       "per_min_per_bucket": per_min.get("total", 0) / buckets}
        peer.close()
    return {"seconds": counts.idle_s, "systems": out}


def _per_minute(delta: dict, seconds: float) -> dict:
    return {k: v * 60.0 / seconds for k, v in delta.items()}
