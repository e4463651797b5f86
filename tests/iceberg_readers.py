"""Reading a published Iceberg table (by its metadata location) with real readers, no catalog:
pyiceberg's StaticTable, DuckDB's iceberg_scan and polars' scan_iceberg. Each returns a pyarrow
Table of the user columns.

polars 2.1 takes the metadata file's location as `source` and pyiceberg FileIO properties
(`s3.endpoint`, `s3.access-key-id`, `s3.secret-access-key`, `s3.region`) as `storage_options`.
Its default reader plans the scan with pyiceberg (without the optional `polars_iceberg` planner
plugin it emits a PerformanceWarning, ignored here; POLARS_ICEBERG_PLANNER=pyiceberg silences it
too) and reads the Parquet files natively. The native reader applies a position-delete file
itself only when the file is limited to one data file (its file_path lower and upper bounds are
equal, as the compactor writes them); for any other delete file polars falls back, on its own,
to pyiceberg's reader, which applies it too. So the default (reader_override=None) is correct
for both; reader_override="native" raises ComputeError on the second kind, and
reader_override="pyiceberg" is correct but never reads natively.
"""
from __future__ import annotations

import importlib
import os
import tempfile
import warnings

import pyarrow as pa

REGION_DEFAULT = "us-east-1"


def iceberg_properties(storage_options: dict | None) -> dict:
    """pyiceberg (and polars) FileIO properties equivalent to s3fs `storage_options`."""
    if not storage_options:
        return {}
    so = storage_options
    region = (so.get("client_kwargs") or {}).get("region_name") or so.get("region") or REGION_DEFAULT
    props = {"s3.region": region}
    if so.get("endpoint_url"):
        props["s3.endpoint"] = so["endpoint_url"]
    if so.get("key"):
        props["s3.access-key-id"] = so["key"]
    if so.get("secret"):
        props["s3.secret-access-key"] = so["secret"]
    if so.get("token"):
        props["s3.session-token"] = so["token"]
    return props


def pyiceberg_rows(location: str, properties: dict | None = None, row_filter=None) -> pa.Table:
    """The table's rows through pyiceberg's StaticTable (optionally a filtered scan)."""
    from pyiceberg.table import StaticTable

    table = StaticTable.from_metadata(location, properties=properties or {})
    scan = table.scan() if row_filter is None else table.scan(row_filter=row_filter)
    return scan.to_arrow()


def duckdb_connect(duckdb_home, s3_endpoint: str | None = None):
    """A DuckDB connection with avro, iceberg and httpfs loaded offline from the pip wheels (avro
    first), its extension/secret/home directories under `duckdb_home`, and for S3 a secret for
    the moto endpoint (as ../shared/acceptance/conftest.py Location.duckdb() does)."""
    import duckdb

    home = str(duckdb_home)
    con = duckdb.connect(config={"autoinstall_known_extensions": "false",
                                 "autoload_known_extensions": "false",
                                 "extension_directory": os.path.join(home, "extensions"),
                                 "secret_directory": os.path.join(home, "secrets"),
                                 "home_directory": home})
    for name in ("avro", "iceberg", "httpfs"):  # avro must be loaded before iceberg
        mod = importlib.import_module(f"duckdb_extension_{name}")
        path = os.path.join(os.path.dirname(mod.__file__), "extensions", f"v{duckdb.__version__}",
                            f"{name}.duckdb_extension")
        con.execute(f"LOAD '{path}'")
    if s3_endpoint:
        host = s3_endpoint.split("://", 1)[1]
        con.execute(f"CREATE SECRET moto (TYPE s3, KEY_ID 'testing', SECRET 'testing', "
                    f"REGION '{REGION_DEFAULT}', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)")
    return con


def duckdb_rows(location: str, duckdb_home=None, s3_endpoint: str | None = None) -> pa.Table:
    """The table's rows through DuckDB's iceberg_scan (a metadata file or the table directory)."""
    with tempfile.TemporaryDirectory() as scratch:
        con = duckdb_connect(duckdb_home or scratch, s3_endpoint)
        try:
            return con.execute(f"SELECT * FROM iceberg_scan('{location}')").to_arrow_table()
        finally:
            con.close()


def polars_rows(location: str, storage_options: dict | None = None) -> pa.Table:
    """The table's rows through polars.scan_iceberg (default reader; see the module docstring).
    `storage_options` are s3fs-style, as flussfs takes them."""
    import polars as pl
    from polars.exceptions import PerformanceWarning

    with warnings.catch_warnings():
        # Without the optional polars_iceberg planner plugin polars plans with pyiceberg and
        # says so with a PerformanceWarning; the rows are the same.
        warnings.simplefilter("ignore", PerformanceWarning)
        frame = pl.scan_iceberg(location, storage_options=iceberg_properties(storage_options) or None)
        return frame.collect().to_arrow()
