"""Build the AWS Lambda deployment zip of the compactor, writer and reader handlers.

Invariants:
- Every third-party file comes from a wheel pinned in `requirements.txt` beside this file (`==`
  and `--hash=sha256:`), built for CPython 3.12 on x86_64 glibc <= 2.34: the Lambda runtime
  python3.12 runs on Amazon Linux 2023 (glibc 2.34). pip installs them with `--no-deps`, from the
  wheel cache `build/lambda/wheels` only, so a rerun needs no network.
- The zip is a pure function of the lock, the wheels, the trimming rules and the source of
  `flussfs/` and `compactor/`: entries sorted by name, every timestamp 1980-01-01 00:00, mode 0644
  for files, 0755 for directories and executables, deflate level 6, no `__pycache__`.
- Nothing is trimmed that a kept module loads: every DT_NEEDED of every shared object in the zip
  is in the zip or in the manylinux system-library allowlist, and the checked top-level modules are
  there. Otherwise the build fails.
- The unzipped size stays under Lambda's 250 MB (262,144,000 bytes, layers included); otherwise
  the script exits 1. Over 50 MB zipped, the zip goes to Lambda through S3, not a direct upload.

Usage: `python terraform/lambda/package.py [--lock]`; `--lock` re-resolves requirements.txt from
the `[project] dependencies` of pyproject.toml (see README.md beside this file).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path(__file__).with_name("requirements.txt")
OUT = ROOT / "build" / "lambda"
WHEELS = OUT / "wheels"
STAGE = OUT / "stage"
ZIP_PATH = OUT / "flussfs-lambda.zip"
PROJECT_PACKAGES = ("flussfs", "compactor")
PROJECT = "flussfs + compactor (this project)"

# Resolved with pyproject's dependencies: pyiceberg.catalog.glue (compactor.handler's Glue
# registration) imports boto3, and the runtime's own boto3 expects the runtime's botocore, not the
# one aiobotocore pins that this zip ships ahead of it on sys.path.
LOCK_EXTRAS = ("boto3",)
PYTHON_VERSION = "3.12"
GLIBC_MINOR_MAX = 34  # Amazon Linux 2023, the OS of the python3.12 runtime.
# pip does not expand a perennial manylinux tag to the older ones, so list every glibc up to 2.34;
# `manylinux2014` (glibc 2.17) expands to manylinux2010 and manylinux1.
PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR_MAX, 16, -1)]
PLATFORMS.append("manylinux2014_x86_64")

MIB = 1024 * 1024
UNZIPPED_BYTES_MAX = 262_144_000  # "250 MB": the exact number Lambda's error message quotes.
DIRECT_UPLOAD_BYTES_MAX = 50 * MIB
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_LEVEL = 6  # zlib's default; level 9 took 3x as long here (28 s vs 8 s) to save 0.4 MiB.

# The botocore service models the handlers reach: S3 (s3fs), Lambda (fan-out), Glue (catalog),
# and the ones botocore's credential and token providers create clients for.
BOTOCORE_SERVICES = {"s3", "lambda", "glue", "sts", "sso", "sso-oidc", "signin"}
# pyarrow modules nothing here imports and pyarrow imports only on request (`pyarrow.flight`),
# or that exist only for pyarrow's own test suite.
PYARROW_UNUSED_MODULES = {"flight", "_flight", "_pyarrow_cpp_tests"}
SOURCE_SUFFIXES = {".h", ".hpp", ".c", ".cc", ".cpp", ".pxd", ".pyx", ".pxi"}
REQUIRED_MODULES = ("flussfs", "compactor", "pyarrow", "pyiceberg", "s3fs", "cloudpickle")
# Libraries a manylinux wheel may take from the OS (PEP 599 / PEP 600), so not in the zip.
SYSTEM_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libnsl.so.1", "libresolv.so.2", "libgcc_s.so.1", "libstdc++.so.6", "libcrypt.so.1",
    "ld-linux-x86-64.so.2", "libz.so.1",
}
# What the import check runs on the unzipped artifact under a CPython 3.12, when there is one.
IMPORT_CHECK = """
import io, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import numpy, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc, pyarrow.dataset
import pyarrow.fs, pyarrow.ipc, pyarrow.csv, pyarrow.json
import pyiceberg, pyiceberg.io.pyarrow, pyiceberg.table, pyiceberg.catalog.glue, s3fs, cloudpickle
import mmh3, zstandard, boto3, botocore.session
from pyarrow.fs import S3FileSystem  # pyiceberg's default FileIO for s3:// (compactor.handler)
buf = io.BytesIO(); pq.write_table(pa.table({"k": [3, 1, 2]}), buf)
assert pc.sum(pq.read_table(io.BytesIO(buf.getvalue()))["k"]).as_py() == 6
for service in ("s3", "lambda", "glue", "sts", "sso", "sso-oidc", "signin"):
    botocore.session.get_session().create_client(service, region_name="us-east-1")
failed = []
for pkg in ("flussfs", "compactor"):
    for m in pkgutil.walk_packages(__import__(pkg).__path__, pkg + "."):
        if m.name.endswith(".__main__"):  # runs a command line when imported
            continue
        try:
            __import__(m.name)
        except Exception as e:
            failed.append(f"{m.name}: {type(e).__name__}: {e}")
print("\\n".join(failed) or f"imported everything under Python {sys.version.split()[0]}")
sys.exit(1 if failed else 0)
"""


def main(argv: list[str]) -> int:
    start = time.monotonic()
    if "--lock" in argv or not LOCK.exists():
        write_lock()
    fetch_wheels()
    installed = install_stage()
    removed = trim(STAGE)
    write_zip(STAGE, ZIP_PATH)
    check_zip(ZIP_PATH)
    import_check(ZIP_PATH)
    print_table(installed, ZIP_PATH)
    print_removed(removed)
    fits = print_summary(ZIP_PATH)
    print(f"took {time.monotonic() - start:.0f} s")
    return 0 if fits else 1


# --- the lock ---------------------------------------------------------------------------------

def target_args() -> list[str]:
    args = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
                   check=True)


def write_lock() -> None:
    """Resolve pyproject's dependencies for the target and pin each wheel by version and hash."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    deps = [*deps, *LOCK_EXTRAS]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--dry-run", "--ignore-installed", "--target", tmp, "--report",
            str(report), *target_args(), *deps)
        items = json.loads(report.read_text())["install"]
    pins = sorted((normalized(i["metadata"]["name"]), i["metadata"]["version"],
                   i["download_info"]["archive_info"]["hashes"]["sha256"]) for i in items)
    lines = [f"{name}=={version} \\\n    --hash=sha256:{digest}" for name, version, digest in pins]
    header = ("# The Lambda artifact's wheels (CPython 3.12, manylinux x86_64, glibc <= 2.34).\n"
              "# `package.py --lock` writes this from pyproject.toml plus "
              f"{', '.join(LOCK_EXTRAS)}; do not edit.\n")
    LOCK.write_text(header + "\n".join(lines) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)} ({len(lines)} pins)")


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 spells it: lower case, runs of `-_.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_hashes() -> set[str]:
    return {word.split(":", 1)[1] for word in LOCK.read_text().split()
            if word.startswith("--hash=sha256:")}


# --- wheels and the staging tree ----------------------------------------------------------------

def fetch_wheels() -> None:
    """Download into the cache only when a pinned wheel is missing from it."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    cached = {sha256_file(p) for p in WHEELS.glob("*.whl")}
    if locked_hashes() <= cached:
        print(f"all {len(locked_hashes())} pinned wheels are in {WHEELS.relative_to(ROOT)}")
        return
    pip("download", "--no-deps", "--require-hashes", "-r", str(LOCK), "-d", str(WHEELS),
        *target_args())


def install_stage() -> Counter:
    """Install the pinned wheels and copy the project's packages; return bytes per distribution."""
    shutil.rmtree(STAGE, ignore_errors=True)
    # --isolated: no pip config or PIP_* variable can add an index or change what gets installed.
    pip("install", "--isolated", "--no-index", "--find-links", str(WHEELS), "--no-deps",
        "--require-hashes", "--no-compile", "-r", str(LOCK), "--target", str(STAGE),
        *target_args())
    for package in PROJECT_PACKAGES:
        shutil.copytree(ROOT / package, STAGE / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    owners = distribution_owners(STAGE)
    sizes: Counter = Counter()
    for rel in files_under(STAGE):
        sizes[owners.get(rel, PROJECT)] += (STAGE / rel).stat().st_size
    return sizes


def distribution_owners(root: Path) -> dict[str, str]:
    """Map each installed file to its distribution `name version`, from the dist-info RECORDs."""
    owners = {}
    for record in sorted(root.glob("*.dist-info/RECORD")):
        name, version = record.parent.name.removesuffix(".dist-info").split("-")[:2]
        dist = f"{name.lower().replace('_', '-')} {version}"
        for line in record.read_text().splitlines():
            owners[line.rsplit(",", 2)[0]] = dist
        for meta in record.parent.iterdir():
            owners[f"{record.parent.name}/{meta.name}"] = dist
    return owners


def files_under(root: Path) -> list[str]:
    return sorted(str(PurePosixPath(p.relative_to(root))) for p in root.rglob("*") if p.is_file())


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- trimming -----------------------------------------------------------------------------------

def trim_rules() -> list[tuple[str, object]]:
    """(description, predicate over a relative path's parts) in the order they apply."""
    project = set(PROJECT_PACKAGES)
    return [
        ("__pycache__ and *.pyc", lambda p: "__pycache__" in p or p[-1].endswith(".pyc")),
        ("console scripts (bin/, shebangs name the build machine's python)",
         lambda p: p[0] == "bin"),
        ("tests/ directories of dependencies", lambda p: p[0] not in project and "tests" in p),
        ("type stubs (*.pyi, *-stubs/)",
         lambda p: p[-1].endswith(".pyi") or p[0].endswith("-stubs")),
        ("C/C++/Cython headers and sources, include/ directories",
         lambda p: p[0] not in project
         and ("include" in p or PurePosixPath(p[-1]).suffix in SOURCE_SUFFIXES)),
        ("static libraries (*.a)", lambda p: p[-1].endswith(".a")),
        ("botocore service models not used (kept: " + ", ".join(sorted(BOTOCORE_SERVICES)) + ")",
         lambda p: p[:2] == ("botocore", "data") and len(p) > 3 and p[2] not in BOTOCORE_SERVICES),
        ("pyarrow Flight and C++ test modules (imported only on request)",
         lambda p: p[:1] == ("pyarrow",) and len(p) == 2
         and p[1].split(".")[0] in PYARROW_UNUSED_MODULES),
        ("zstandard's cffi backend (cffi is not shipped, so it cannot load; the C backend is used)",
         lambda p: p[0] == "zstandard" and p[-1].startswith("_cffi.")),
    ]


def trim(root: Path) -> list[tuple[str, int, int]]:
    """Delete what the rules match, then pyarrow's unlinked libraries: [(rule, files, bytes)]."""
    assert not re.search(r"^cffi==", LOCK.read_text(), re.M), "cffi is pinned: keep zstandard/_cffi"
    removed = []
    for description, matches in trim_rules():
        # Metadata stays whole: the dist-info holds each wheel's licence files.
        doomed = [rel for rel in files_under(root) if ".dist-info/" not in rel
                  and matches(PurePosixPath(rel).parts)]
        removed.append((description, len(doomed), delete(root, doomed)))
    doomed = unlinked_libraries(root, "pyarrow")
    removed.append(("pyarrow shared libraries no kept module links to (Flight, duplicate sonames)",
                    len(doomed), delete(root, doomed)))
    for directory in sorted(root.rglob("*"), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return removed


def delete(root: Path, rels: list[str]) -> int:
    size = 0
    for rel in rels:
        size += (root / rel).stat().st_size
        (root / rel).unlink()
    return size


def unlinked_libraries(root: Path, package: str) -> list[str]:
    """The package's non-module shared libraries outside the DT_NEEDED closure of its modules."""
    libs = {p.name: p for p in (root / package).glob("*.so*") if not is_extension(p.name)}
    needed: set[str] = set()
    frontier = [p for p in (root / package).glob("*.so") if is_extension(p.name)]
    while frontier:
        for name in elf_needed(frontier.pop().read_bytes()):
            if name in libs and name not in needed:
                needed.add(name)
                frontier.append(libs[name])
    return sorted(f"{package}/{name}" for name in libs if name not in needed)


def is_extension(name: str) -> bool:
    return name.endswith(".so") and (".cpython-" in name or ".abi3." in name)


def elf_needed(data: bytes) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared object; [] for any other file."""
    if data[:4] != b"\x7fELF":
        return []
    assert data[4:6] == b"\x02\x01", "only ELF64 little-endian (x86_64) is expected"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQI", data, shoff + i * shentsize)
                for i in range(shnum)]  # name, type, flags, addr, offset, size, link
    names = []
    for _, kind, _, _, offset, size, link in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for tag, value in struct.iter_unpack("<qQ", data[offset:offset + size]):
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab + value)
                names.append(data[strtab + value:end].decode())
    return names


# --- the zip ------------------------------------------------------------------------------------

def write_zip(root: Path, path: Path) -> None:
    """Write every file and directory under root, sorted, with fixed times, modes and level."""
    entries = sorted(str(PurePosixPath(p.relative_to(root))) + ("/" if p.is_dir() else "")
                     for p in root.rglob("*"))
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in entries:
            source = root / name
            if name.endswith("/"):
                zf.writestr(zip_info(name, 0o40755, zipfile.ZIP_STORED), b"")
            else:
                mode = 0o100755 if source.stat().st_mode & 0o111 else 0o100644
                zf.writestr(zip_info(name, mode, zipfile.ZIP_DEFLATED), source.read_bytes(),
                            compresslevel=ZIP_LEVEL)
    tmp.replace(path)


def zip_info(name: str, mode: int, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.create_system = 3  # Unix, so that Lambda honours external_attr's mode bits.
    info.external_attr = mode << 16
    info.compress_type = compression
    return info


def check_zip(path: Path) -> None:
    """Assert the required modules are top-level in the zip and every DT_NEEDED resolves."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        modules = top_level_modules(names)
        missing = [m for m in REQUIRED_MODULES if m not in modules]
        assert not missing, f"missing top-level modules: {missing}"
        present = {PurePosixPath(n).name for n in names}
        unresolved = sorted({f"{n} needs {lib}" for n in names if ".so" in n
                             for lib in elf_needed(zf.read(n))
                             if lib not in present and lib not in SYSTEM_LIBS})
        assert not unresolved, "unresolved shared libraries:\n" + "\n".join(unresolved)
        parquet = next(n for n in names if n.startswith("pyarrow/_parquet.cpython-"))
        parquet_libs = elf_needed(zf.read(parquet))
    print(f"{len(modules)} top-level modules: {', '.join(sorted(modules))}")
    print(f"pyarrow.parquet's libraries are all present: {', '.join(sorted(parquet_libs))}")


def top_level_modules(names: list[str]) -> set[str]:
    """Packages (directories holding .py files) and modules (.py, extension .so) at the root."""
    modules = set()
    for name in names:
        parts = PurePosixPath(name).parts
        if len(parts) > 1 and parts[-1].endswith(".py") and "." not in parts[0]:
            modules.add(parts[0])
        elif len(parts) == 1 and (name.endswith(".py") or is_extension(name)):
            modules.add(name.split(".")[0])
    return modules


def import_check(path: Path) -> None:
    """Import everything from the unzipped artifact under a CPython 3.12, when one is installed."""
    python = find_python312()
    if python is None:
        print("import check skipped: no CPython 3.12 here (set LAMBDA_PYTHON to one)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        # -I -S: only the standard library and the artifact, like /var/task on Lambda.
        result = subprocess.run([python, "-I", "-S", "-c", IMPORT_CHECK, tmp],
                                capture_output=True, text=True)
    print(f"import check ({python}): {(result.stdout + result.stderr).strip()}")
    if result.returncode != 0:
        raise SystemExit("the artifact does not import under Python 3.12")


def find_python312() -> str | None:
    candidates = [os.environ.get("LAMBDA_PYTHON"), shutil.which("python3.12")]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 12)":
            return candidate
    return None


# --- the report ---------------------------------------------------------------------------------

def print_table(installed: Counter, path: Path) -> None:
    """Per distribution: bytes as installed, as shipped after trimming, and zipped."""
    owners = distribution_owners(STAGE)
    shipped: Counter = Counter()
    zipped: Counter = Counter()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            owner = owners.get(info.filename, PROJECT)
            shipped[owner] += info.file_size
            zipped[owner] += info.compress_size
    print(f"\n{'distribution':34} {'installed':>10} {'shipped':>10} {'zipped':>10}   (MiB)")
    for dist, size in installed.most_common():
        print(f"{dist:34} {size / MIB:10.1f} {shipped[dist] / MIB:10.1f} "
              f"{zipped[dist] / MIB:10.1f}")
    print(f"{'total':34} {sum(installed.values()) / MIB:10.1f} "
          f"{sum(shipped.values()) / MIB:10.1f} {sum(zipped.values()) / MIB:10.1f}")


def print_removed(removed: list[tuple[str, int, int]]) -> None:
    print("\ntrimmed:")
    for description, files, size in removed:
        print(f"  {size / MIB:7.1f} MiB  {files:5} files  {description}")


def print_summary(path: Path) -> bool:
    """Print sizes against the limits and the sha256; return whether the unzipped size fits."""
    with zipfile.ZipFile(path) as zf:
        unzipped = sum(info.file_size for info in zf.infolist())
    zipped = path.stat().st_size
    digest = sha256_file(path)
    previous_file = path.with_name(path.name + ".sha256")
    previous = previous_file.read_text().split()[0] if previous_file.exists() else None
    previous_file.write_text(f"{digest}  {path.name}\n")
    fits = unzipped < UNZIPPED_BYTES_MAX
    upload = "direct upload" if zipped <= DIRECT_UPLOAD_BYTES_MAX else "upload through S3"
    print(f"\nartifact  {path.relative_to(ROOT)}")
    print(f"zipped    {zipped / MIB:7.1f} MiB   limit {DIRECT_UPLOAD_BYTES_MAX / MIB:.0f} MiB for "
          f"a direct upload: {upload}")
    print(f"unzipped  {unzipped / MIB:7.1f} MiB   limit {UNZIPPED_BYTES_MAX / MIB:.0f} MiB: "
          f"{'margin' if fits else 'OVER by'} {abs(UNZIPPED_BYTES_MAX - unzipped) / MIB:.1f} MiB "
          f"({abs(UNZIPPED_BYTES_MAX - unzipped) / UNZIPPED_BYTES_MAX:.0%})")
    print(f"sha256    {digest}")
    if previous:
        print(f"          {'same as' if previous == digest else 'differs from'} the previous build"
              f"{'' if previous == digest else ' (' + previous[:16] + '...)'}")
    return fits


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
