"""What every benchmark needs: the two stores (a local directory, moto's S3 server on
127.0.0.1), request metering of a table, percentiles and plain-text tables.

Invariants: importing this module sets fake AWS credentials before boto3 or s3fs can be
imported, so no benchmark can reach a real cloud; each store is removed (directory deleted,
server stopped) when its context ends.
"""
from __future__ import annotations

import os

for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_var, None)
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import flussfs  # noqa: E402
from flussfs.errors import NotFoundError  # noqa: E402
from flussfs.storage.wrappers import MeteredStore  # noqa: E402

S3_BUCKET = "flussfs-bench"
S3_REGION = "us-east-1"


# ---- stores -------------------------------------------------------------------------------
@dataclass
class Backend:
    name: str                       # "local" or "s3"
    label: str                      # for headings
    root: str                       # a directory, or s3://bucket
    storage_options: dict | None

    def new_uri(self) -> str:
        """A fresh table location under the root."""
        return f"{self.root}/{uuid.uuid4().hex}"


@contextlib.contextmanager
def local_backend():
    """A temporary directory on the machine's disk (not tmpfs here), deleted afterwards."""
    root = tempfile.mkdtemp(prefix="flussfs-bench-")
    try:
        yield Backend("local", f"local directory ({root}, fsync on)", root, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def s3_backend():
    """moto's S3 server on 127.0.0.1 (a free port, in this process) with one bucket."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        raise SystemExit(f"the S3 benchmarks need moto[server] and boto3 ({e}); "
                         f"install them with `make test-venv`") from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    # Port 0: the kernel picks a free port at bind time, so nothing can take it first.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION,
                     aws_access_key_id="testing", aws_secret_access_key="testing"
                     ).create_bucket(Bucket=S3_BUCKET)
        options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
                   "client_kwargs": {"region_name": S3_REGION}}
        yield Backend("s3", f"moto S3 server ({endpoint}, same process)", f"s3://{S3_BUCKET}",
                      options)
    finally:
        server.stop()


# ---- metering -----------------------------------------------------------------------------
class Meter(MeteredStore):
    """MeteredStore that also tells GETs answered "not found" apart: "get" counts every GET
    request, "get_404" those that found nothing. A tailing subscriber's probes of the next
    commit key mostly miss, and each miss is a request (billed on S3) all the same."""

    def get(self, key, start=None, end=None):
        # Not via super().get: whether MeteredStore counts a miss as a GET has changed between
        # versions, and this must count it exactly once either way.
        try:
            data = self.inner.get(key, start, end)
        except NotFoundError:
            self._count("get")
            self._count("get_404")
            raise
        self._count("get", read=len(data))
        return data


def requests_text(requests: dict, digits: int) -> str:
    """'1.00 GET (0.20 not found), 1.00 PUT' from {"get": 1, "get_404": 0.2, "put": 1}."""
    parts = []
    for op, n in sorted(requests.items()):
        if op == "get_404":
            continue
        text = f"{n:.{digits}f} {op.upper()}"
        if op == "get" and requests.get("get_404"):
            text += f" ({requests['get_404']:.{digits}f} not found)"
        parts.append(text)
    return ", ".join(parts)


def wrap_store(table, wrapper):
    """Route every request of `table` (its own and its bucket logs') through `wrapper`."""
    table.store = wrapper
    for log in table.logs:
        log.store = wrapper
    return wrapper


def metered(table) -> Meter:
    return wrap_store(table, Meter(table.store))


# ---- statistics and printing --------------------------------------------------------------
def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(headers: list[str], rows: list[list], indent: str = "   ", left: int = 1) -> None:
    """A plain-text table: the first `left` columns left-aligned, the others right-aligned."""
    cells = [[str(c) for c in row] for row in [headers] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        line = "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))
        print(indent + line.rstrip())
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "pyarrow": pa.__version__, "moto": _version("moto"),
            "s3fs": _version("s3fs"), "flussfs": flussfs.__version__, "git": _git_revision()}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    """The checkout's commit, with '+dirty' when files differ from it; None outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, check=True,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def on_both_stores(run_backend, targets, *args) -> tuple[dict, list[dict]]:
    """run_backend(backend, *args) on the local directory, then on moto's S3 server; returns
    store -> results, and the targets of all of them."""
    results = {}
    for backend_context in (local_backend, s3_backend):
        with backend_context() as backend:
            results[backend.name] = run_backend(backend, *args)
    return results, [t for name, r in results.items() for t in targets(name, r)]


def arguments(doc: str, results_path: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --quick and --json PATH (add more to the parser)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", default=results_path, metavar="PATH",
                        help=f"where to write the results (default {results_path})")
    return parser


def start(title: str, quick: bool, info: dict, packages=("pyarrow", "moto", "s3fs")):
    """Print the run's heading; returns (mode, start time)."""
    mode, started = ("quick" if quick else "full"), datetime.datetime.now(datetime.timezone.utc)
    versions = ", ".join(f"{p} {info[p]}" for p in packages)
    print(f"flussfs {title}, {mode} run, {started:%Y-%m-%d %H:%M} UTC, flussfs {info['git']}\n"
          f"{info['platform']}, {info['cpus']} CPUs, Python {info['python']}, {versions}")
    return mode, started


def finish(path: str, started, header: dict, results: dict, checks: list[dict]) -> None:
    """Print the targets and the run's duration, and write everything as JSON to `path`."""
    print("\n=== targets ===")
    print_table(["store", "target", "measured", ""],
                [[t["store"], t["target"], t["value"], verdict(t["pass"])] for t in checks], left=2)
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    print(f"\nwhole run {elapsed:.0f} s")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"date": started.isoformat(timespec="seconds"), **header, "elapsed_s": elapsed,
                   "results": results, "targets": checks}, f, indent=2)
    print(f"results written to {path}")
