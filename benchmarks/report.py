"""Printing the suite's results, checking its targets and drawing its plots.

Request counts are the proxy's, flattened by workloads._requests into
{"GET": n, "GET_404": n, "PUT": n, "PUT_412": n, "LIST": n, "HEAD": n, "DELETE": n, "POST": n,
"total": n, "bytes_down": n, "bytes_up": n}.
"""
from __future__ import annotations

import os

from . import _harness as h

APPEND_RATIO_MAX = 1.5          # flussfs append p50 / one raw conditional PUT p50
APPEND_LEAD_MIN = 5.0           # flussfs commits/s / deltalake's and pyiceberg's
PROJECTION_SHARE_MAX = 0.15     # bytes for 2 of 20 columns / for all 20
PROJECTION_GETS_PER_SEGMENT_MAX = 2.0
SCAN_RATIO_MIN = 0.7            # plain Parquet time / flussfs latest-state scan time
LOOKUP_LEAD_MIN = 10.0          # best peer's filtered scan p50 / flussfs lookup p50
IDLE_PER_BUCKET_MAX = 120.0     # requests per minute per bucket, default schedule


def store_label(run) -> str:
    if run.proxy is None:
        return f"a local directory ({run.store.root})"
    return f"moto's S3 server behind a proxy adding {run.model} latency ({run.proxy.url})"


def _ms(s) -> str:
    return "-" if s is None else f"{s * 1000:.1f}"


def _requests_text(r: dict) -> str:
    parts = [f"{r[k]:.0f} {k}" for k in ("GET", "LIST", "HEAD", "PUT", "POST", "DELETE")
             if r.get(k)]
    return ", ".join(parts) or "-"


# ---- printing -----------------------------------------------------------------------------
def show(name: str, r: dict) -> None:
    if "error" in r:
        print(f"\n{name}: FAILED: {r['error']}")
        return
    globals()[f"_show_{name}"](r)
    print(f"   ({r['elapsed_s']:.0f} s)")


def _show_appends(r: dict) -> None:
    print(f"\n1. Small appends: {r['rows']}-row commits, one writer; raw PUT = put-if-absent of "
          f"{r['commit_bytes']:,} B (flussfs's commit size) through the same client")
    raw = r["systems"]["raw PUT"]
    h.print_table(["system", "p50 ms", "p99 ms", "commits/s", "p50 / raw PUT"], [
        [s, _ms(x["p50_s"]), _ms(x["p99_s"]), f"{x['commits_per_s']:.1f}",
         f"{x['p50_s'] / raw['p50_s']:.2f}x"] for s, x in r["systems"].items()])


def _show_writers(r: dict) -> None:
    print(f"\n2. Concurrent writers: processes x {r['appends_per_writer']} commits of "
          f"{r['rows_per_commit']} rows on one table")
    rows = []
    for s, rounds in r["systems"].items():
        for x in rounds:
            rate = "-" if x["commits_per_s"] is None else f"{x['commits_per_s']:.1f}"
            rows.append([s, x["processes"], rate, x["conflicts_retried"],
                         f"{x['rows_found']:,}/{x['rows_expected']:,}",
                         "yes" if x["exactly_once"] else "NO", "; ".join(x["errors"])[:60]])
    h.print_table(["system", "processes", "commits/s", "conflicts retried", "rows",
                   "exactly once", "errors"], rows)


def _show_upserts(r: dict) -> None:
    print(f"\n3. Upserts: {r['rounds']} x {r['upsert_rows']:,} existing keys into "
          f"{r['table_rows']:,} rows; flussfs's compaction ({_ms(r['flussfs_compaction_s'])} ms) "
          f"amortised over them")
    h.print_table(["system", "upsert p50 ms", "amortised ms", "latest state correct"], [
        [s, _ms(x["p50_s"]), _ms(x["amortised_s"]), "yes" if r["same_state"][s] else "NO"]
        for s, x in r["upserts"].items()])
    scan = r["scan"]
    print(f"\n   Latest-state full scan ({scan['rows']:,} rows) vs plain Parquet "
          f"({scan['parquet_bytes']:,} B, pq.read_table)")
    base = scan["systems"]["plain Parquet"]["p50_s"]
    h.print_table(["system", "p50 ms", "Parquet / system"], [
        [s, _ms(x["p50_s"]), f"{base / x['p50_s']:.2f}x"] for s, x in scan["systems"].items()])
    look = r["lookup"]
    print(f"\n   Point lookups ({look['lookups']} random keys; peers: their filtered scan)")
    flussfs = look["systems"]["flussfs"]["p50_s"]
    h.print_table(["system", "p50 ms", "p99 ms", "correct", "p50 / flussfs"], [
        [s, _ms(x["p50_s"]), _ms(x["p99_s"]), x["correct"], f"{x['p50_s'] / flussfs:.1f}x"]
        for s, x in look["systems"].items()])


def _show_streaming(r: dict) -> None:
    rtt = r["rtt"]
    print(f"\n4. Streaming: {r['appends']} appends of 10 rows ~{r['gap_s'] * 1000:.0f} ms apart; "
          f"readers poll every {r['poll_s'] * 1000:.0f} ms; one GET round trip p50 "
          f"{_ms(rtt['p50_s'])} ms, p99 {_ms(rtt['p99_s'])} ms")
    h.print_table(["system", "p50 ms", "p99 ms", "received"], [
        [s, _ms(x["p50_s"]), _ms(x["p99_s"]), f"{x['received']}/{x['expected']}"]
        for s, x in r["systems"].items()])


def _show_idle(r: dict) -> None:
    print(f"\n5. Idle reader, default schedule (20 ms doubling to 500 ms), {r['seconds']:.0f} s")
    h.print_table(["system", "requests/min", "buckets", "per bucket"], [
        [s, _requests_text(x["requests_per_min"]), x["buckets"], f"{x['per_min_per_bucket']:.0f}"]
        for s, x in r["systems"].items()])


def _show_projection(r: dict) -> None:
    print(f"\n6. Projection: {r['rows']:,} rows x 20 columns; cold reads of k spread columns "
          f"(flussfs: {r['flussfs_commits']} commits, {r['flussfs_segments']} segments)")
    rows = []
    for s, widths in r["systems"].items():
        full = widths[20]["requests"].get("bytes_down")
        for k, x in widths.items():
            q = x["requests"]
            share = f"{q['bytes_down'] / full * 100:.1f}%" if full else "-"
            rows.append([s, f"{k} of 20", f"{q.get('bytes_down', 0):,}" if q else "-", share,
                         _requests_text(q), _ms(x["s"])])
    h.print_table(["system", "columns", "bytes read", "share", "requests", "ms"], rows)


# ---- targets ------------------------------------------------------------------------------
def targets(results: dict) -> list[dict]:
    checks = []
    for store, r in results.items():
        for name, result in r.items():
            if "error" in result:
                checks.append({"store": store, "target": f"{name} workload ran",
                               "value": result["error"][:60], "pass": False})
            elif name in _TARGETS:
                checks += [{"store": store, **c} for c in _TARGETS[name](result)]
    return checks


def _check(target: str, value: float, ok: bool, fmt: str = "{:.2f}x") -> dict:
    return {"target": target, "value": fmt.format(value), "number": value, "pass": bool(ok)}


def _append_targets(r: dict) -> list[dict]:
    s = r["systems"]
    ratio = s["flussfs"]["p50_s"] / s["raw PUT"]["p50_s"]
    out = [_check("append p50 <= 1.5x raw conditional PUT", ratio, ratio <= APPEND_RATIO_MAX)]
    for peer in ("deltalake", "pyiceberg"):
        if peer in s:
            lead = s["flussfs"]["commits_per_s"] / s[peer]["commits_per_s"]
            out.append(_check(f"append commits/s >= 5x {peer}", lead, lead >= APPEND_LEAD_MIN))
    return out


def _writer_targets(r: dict) -> list[dict]:
    bad = [f"{s} x{x['processes']}" for s, rounds in r["systems"].items() for x in rounds
           if s == "flussfs" and not x["exactly_once"]]
    return [{"target": "concurrent writers: every flussfs row exactly once",
             "value": "all" if not bad else ", ".join(bad), "pass": not bad}]


def _upsert_targets(r: dict) -> list[dict]:
    """A target passes only if flussfs's rows were right; only peers that were right count."""
    right = r["same_state"]
    scan = r["scan"]["systems"]
    ratio = scan["plain Parquet"]["p50_s"] / scan["flussfs"]["p50_s"]
    look = r["lookup"]["systems"]
    exact = {s: right[s] and x["correct"] == r["lookup"]["lookups"] for s, x in look.items()}
    peers = [x["p50_s"] for s, x in look.items() if s != "flussfs" and exact[s]]
    out = [_check("latest-state scan >= 0.7x plain Parquet", ratio,
                  right["flussfs"] and ratio >= SCAN_RATIO_MIN)]
    if peers:
        lead = min(peers) / look["flussfs"]["p50_s"]
        out.append(_check("lookup >= 10x faster than best peer's filtered scan", lead,
                          exact["flussfs"] and lead >= LOOKUP_LEAD_MIN))
    return out


def _streaming_targets(r: dict) -> list[dict]:
    x = r["systems"]["flussfs"]
    bound = r["poll_s"] + 2 * r["rtt"]["p99_s"]
    target = f"streaming p99 <= poll + 2 round trips ({_ms(bound)} ms), every batch received"
    if x["received"] < x["expected"] or x["p99_s"] is None:
        return [{"target": target, "value": f"{x['received']}/{x['expected']} received",
                 "pass": False}]
    return [_check(target, x["p99_s"] * 1000, x["p99_s"] <= bound, "{:.1f} ms")]


def _idle_targets(r: dict) -> list[dict]:
    x = r["systems"]["flussfs"]["per_min_per_bucket"]
    return [_check("idle subscriber <= 120 requests/min/bucket", x, x <= IDLE_PER_BUCKET_MAX,
                   "{:.0f}")]


def _projection_targets(r: dict) -> list[dict]:
    widths = r["systems"]["flussfs"]
    full, two = widths[20]["requests"], widths[2]["requests"]
    if not full:
        return []
    share = two["bytes_down"] / full["bytes_down"]
    gets = widths[2]["segment_gets"] / max(1, r["flussfs_segments"])
    return [_check("2 of 20 columns <= 15% of the bytes", share * 100, share <= PROJECTION_SHARE_MAX,
                   "{:.1f}%"),
            _check("2 of 20 columns <= 2 GETs per segment", gets,
                   gets <= PROJECTION_GETS_PER_SEGMENT_MAX, "{:.2f}")]


_TARGETS = {"appends": _append_targets, "writers": _writer_targets, "upserts": _upsert_targets,
            "streaming": _streaming_targets, "idle": _idle_targets,
            "projection": _projection_targets}


# ---- plots --------------------------------------------------------------------------------
def plots(results: dict, directory: str) -> list[str]:
    """One PNG per workload, a panel per store; returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, (workload, title, series) in _PLOTS.items():
        panels = {store: series(r[workload]) for store, r in results.items()
                  if workload in r and "error" not in r[workload]}
        panels = {store: p for store, p in panels.items()
                  if any(v for g in p[1].values() for v in g.values())}
        if panels:
            path = os.path.join(directory, f"{name}.png")
            _bars(title, panels, path)
            written.append(path)
    return written


def _bars(title: str, panels: dict, path: str) -> None:
    """Grouped bars: per store a panel, per system a bar for each series label."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (store, (ylabel, groups)) in zip(axes[0], panels.items()):
        labels = list(groups)
        series = list(next(iter(groups.values())))
        width = 0.8 / len(series)
        for i, s in enumerate(series):
            ax.bar([x + i * width for x in range(len(labels))],
                   [groups[g].get(s) or 0 for g in labels], width, label=s)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))])
        ax.set_xticklabels(labels, rotation=20, fontsize=8)
        ax.set_title(store)
        ax.set_ylabel(ylabel)
        if ylabel.endswith("(log)"):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _p(x: dict) -> dict:
    return {"p50": x["p50_s"] * 1000, "p99": x["p99_s"] * 1000}


_PLOTS = {
    "appends": ("appends", "1,000-row append latency", lambda r: (
        "ms (log)", {s: _p(x) for s, x in r["systems"].items()})),
    "writers": ("writers", "Concurrent writers: total commits/s", lambda r: (
        "commits/s (log)", {s: {f"{x['processes']} proc": x["commits_per_s"] for x in rounds}
                            for s, rounds in r["systems"].items()})),
    "upserts": ("upserts", "10,000-row upsert (flussfs: compaction amortised)", lambda r: (
        "ms (log)", {s: {"amortised": x["amortised_s"] * 1000} for s, x in r["upserts"].items()})),
    "scan": ("upserts", "Latest-state full scan", lambda r: (
        "ms (log)", {s: _p(x) for s, x in r["scan"]["systems"].items()})),
    "lookup": ("upserts", "Point lookup (peers: filtered scan)", lambda r: (
        "ms (log)", {s: _p(x) for s, x in r["lookup"]["systems"].items()})),
    "streaming": ("streaming", "End-to-end streaming latency", lambda r: (
        "ms", {s: _p(x) for s, x in r["systems"].items()})),
    "projection": ("projection", "Bytes read for k of 20 columns", lambda r: (
        "MB", {s: {f"{k} cols": (x["requests"].get("bytes_down") or 0) / 1e6
                   for k, x in w.items()} for s, w in r["systems"].items()})),
}
