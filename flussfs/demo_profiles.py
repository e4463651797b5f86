"""The demo's second half: the click stream folded into a primary-key table of per-user
profiles (stream-table duality). Every batch of clicks becomes one upsert into an Aggregate
table (clicks summed, the slowest click kept, the last page seen); then a lookup, the latest
state and its check against the clicks themselves.

Invariant: the profiles equal a group-by over the click table (checked; the demo fails if not).
"""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

import flussfs

ENGINE = flussfs.Aggregate({"clicks": "sum", "slowest_ms": "max", "last_url": "last_non_null"})
SCHEMA = pa.schema([pa.field("user_id", pa.int64(), nullable=False), pa.field("clicks", pa.int64()),
                    pa.field("slowest_ms", pa.int32()), pa.field("last_url", pa.string())])
LOOKUP_USERS = [3, 17, 42]


def profiles_of(clicks: pa.Table) -> pa.Table:
    """One upsert row per user of a batch of clicks."""
    per_user = clicks.group_by("user_id", use_threads=False).aggregate(
        [("event_id", "count"), ("latency_ms", "max"), ("url", "last")])
    return pa.table({"user_id": per_user["user_id"], "clicks": per_user["event_id_count"],
                     "slowest_ms": per_user["latency_ms_max"], "last_url": per_user["url_last"]},
                    schema=SCHEMA)


def run(tour, uri: str, clicks: flussfs.Table, text_table) -> bool:
    """Builds the profile table from the click table's stream; True if it matches the clicks."""
    t = time.monotonic()
    profiles = flussfs.create_table(uri, SCHEMA, primary_key=["user_id"], buckets=4, merge_engine=ENGINE)
    upserts = 0
    with profiles.writer() as writer:
        for batch in clicks.scan().to_batches():
            writer.upsert(profiles_of(pa.Table.from_batches([batch])))
            upserts += 1
    tour.done(f"fold the clicks into a primary-key table: {upserts} upserts via writer()",
              time.monotonic() - t)
    tour.detail(f"merge engine {ENGINE!r} on key user_id")

    t = time.monotonic()
    found = profiles.lookup(pa.table({"user_id": pa.array(LOOKUP_USERS, pa.int64())}))
    tour.done(f"lookup users {LOOKUP_USERS}", time.monotonic() - t)
    tour.detail(text_table(found.sort_by("user_id")))

    t = time.monotonic()
    state = profiles.scan().to_arrow()
    tour.done("latest state of the profiles (every change merged)", time.monotonic() - t)
    top = state.sort_by([("clicks", "descending"), ("user_id", "ascending")]).slice(0, 3)
    tour.detail(f"{state.num_rows} users; busiest:\n{text_table(top)}")
    everything = clicks.scan(columns=["user_id", "latency_ms"]).to_arrow()
    expected = everything.group_by("user_id").aggregate([("latency_ms", "count"), ("latency_ms", "max")])
    got = {r["user_id"]: (r["clicks"], r["slowest_ms"]) for r in state.to_pylist()}
    want = {r["user_id"]: (r["latency_ms_count"], r["latency_ms_max"]) for r in expected.to_pylist()}
    tour.detail(f"profiles {'match' if got == want else 'DO NOT match'} a group-by over the "
                f"{everything.num_rows:,} clicks ({int(pc.sum(state['clicks']).as_py()):,} counted)")
    profiles.close()
    return got == want
