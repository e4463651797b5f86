"""The benchmark suite: flussfs side by side with deltalake, pyiceberg and Lance on the same
stores, a local directory and moto's S3 server behind a proxy that adds S3 Express One Zone or
S3 Standard latency (benchmarks/README.md explains the workloads, the model and the targets).

    .venv/bin/python -m benchmarks.suite [--quick] [--stores local,s3-express,s3-standard]
                                         [--systems flussfs,deltalake,...] [--workloads ...]

Prints a table per workload and store, then the targets; writes every number to
benchmarks/results/suite.json and the plots to benchmarks/results/*.png.

Invariants: moto's server and the proxies run in their own processes on 127.0.0.1 and are
stopped when the run ends; tables are created afresh under a run directory, never reused.
"""
from __future__ import annotations

from . import _harness as h  # first: it sets fake AWS credentials before boto3/s3fs load

import contextlib
import os
import shutil
import tempfile
import time
import traceback
import uuid

from . import report, streaming, workloads as w
from .peers import Store

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")
BUCKET = "flussfs-bench"
STORES = ("local", "s3-express", "s3-standard")
WORKLOADS = {
    "appends": w.small_appends,
    "writers": w.concurrent_writers,
    "upserts": w.upserts_and_reads,
    "streaming": streaming.streaming,
    "idle": streaming.idle_requests,
    "projection": w.projection,
}
S3_ONLY = {"idle"}                 # needs the proxy's request counts
# --quick: what runs where, to stay under five minutes on two cores.
QUICK_PLAN = {
    "local": ("appends", "upserts", "projection"),
    "s3-express": ("appends", "writers", "upserts", "streaming", "idle", "projection"),
    "s3-standard": ("appends", "streaming"),
}


@contextlib.contextmanager
def opened(store_name: str, scratch: str, moto_url: str | None):
    """A Run for one store; for S3 a latency proxy in front of moto's server."""
    from .workloads import Run
    if store_name == "local":
        root = tempfile.mkdtemp(prefix="flussfs-suite-", dir=scratch)
        yield Run("local", Store("local", root, scratch=scratch), None)
        return
    from .latency import S3_EXPRESS, S3_STANDARD, latency_proxy
    model = {"s3-express": S3_EXPRESS, "s3-standard": S3_STANDARD}[store_name]
    with latency_proxy(moto_url, model) as proxy:
        root = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"
        yield Run(store_name, Store("s3", root, proxy.url, scratch=scratch), proxy, model.name)


def plan(args) -> dict:
    """store -> the workloads to run there."""
    chosen = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    out = {}
    for store in args.stores.split(","):
        names = QUICK_PLAN[store] if args.quick and not args.workloads else chosen
        out[store] = [n for n in names if n in chosen and (store != "local" or n not in S3_ONLY)]
    return out


def _run(workload, run, counts) -> dict:
    """The workload's results with its time, or {"error": ...}: one failure loses no others."""
    t0 = time.perf_counter()
    try:
        result = workload(run, counts)
    except Exception as e:  # reported as a failed target; the run goes on
        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}"}
    result["elapsed_s"] = time.perf_counter() - t0
    return result


def main(argv=None) -> int:
    parser = h.arguments(__doc__, os.path.join(RESULTS_DIR, "suite.json"),
                         "smaller counts and fewer store/workload pairs (under 5 minutes)")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--systems", default=",".join(w.SYSTEMS))
    parser.add_argument("--workloads", default=None, help=f"comma-separated of {list(WORKLOADS)}")
    args = parser.parse_args(argv)
    counts = w.QUICK if args.quick else w.FULL
    info = h.machine()
    info.update({p: h._version(p) for p in ("deltalake", "pylance", "pyiceberg")})
    mode, started = h.start("benchmark suite", args.quick, info,
                            ("pyarrow", "deltalake", "pylance", "pyiceberg", "moto"))
    systems = tuple(args.systems.split(","))
    if "flussfs" not in systems:
        parser.error("--systems must include flussfs: every workload compares against it")
    results = {}
    scratch = tempfile.mkdtemp(prefix="flussfs-suite-")
    try:
        with contextlib.ExitStack() as stack:
            moto_url = None
            todo = plan(args)
            if any(s != "local" for s in todo):
                from .latency import moto_process
                moto_url = stack.enter_context(moto_process(buckets=(BUCKET,)))
            for store_name, names in todo.items():
                with opened(store_name, scratch, moto_url) as run:
                    run.systems = systems
                    results[store_name] = {}
                    print(f"\n=== {store_name}: {report.store_label(run)} ===")
                    for name in names:
                        results[store_name][name] = _run(WORKLOADS[name], run, counts)
                        report.show(name, results[store_name][name])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checks = report.targets(results)
    figures = report.plots(results, os.path.dirname(os.path.abspath(args.json)))
    h.finish(args.json, started, {"mode": mode, "machine": info, "counts": counts.__dict__,
                                  "figures": figures}, results, checks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
