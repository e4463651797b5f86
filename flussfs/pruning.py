"""Filter pushdown: which columns a filter reads, and whether a part's statistics rule it out
(format_spec/spec-v1.md, "Column chunks: statistics").

Arrow's own expression simplification decides, so every expression Arrow can evaluate is
handled soundly: each part becomes dataset fragments whose partition expressions state what
the statistics guarantee, and a part is skipped only if none of its fragments can match. A
column holding both nulls and values guarantees "in [min, max] or null", which Arrow cannot
use as one disjunction, so such columns are enumerated (null / in range), at most
NULL_CASES_COLUMNS_MAX of them; beyond that their ranges are left out (less pruning, never wrong).
"""
from __future__ import annotations

import itertools

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from .errors import InvalidInputError
from .format.columns import stat_scalar

NULL_CASES_COLUMNS_MAX = 3
_FORMAT = ds.IpcFileFormat()
_FS = pafs._MockFileSystem()


def referenced_columns(expr: pc.Expression, schema: pa.Schema) -> list[str]:
    """The schema columns `expr` reads, found by binding it against schema subsets."""
    def binds(names) -> bool:
        empty = pa.table({n: pa.array([], schema.field(n).type) for n in names})
        try:
            empty.filter(expr)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, KeyError):
            return False

    names = list(schema.names)
    if not binds(names):
        try:
            pa.table({n: pa.array([], schema.field(n).type) for n in names}).filter(expr)
        except Exception as e:  # noqa: BLE001 - reported to the caller with the table's columns
            raise InvalidInputError(f"filter {expr} does not apply to columns {names}: {e}") from None
    for name in list(names):
        rest = [n for n in names if n != name]
        if binds(rest):
            names = rest
    return names


class PartPruner:
    """Decides from a part's column statistics whether `expr` may match any of its rows."""

    def __init__(self, expr: pc.Expression, schema: pa.Schema, field_ids, columns: list[str]):
        self.expr, self.schema = expr, schema
        self.columns = [(field_ids[schema.get_field_index(c)], schema.field(c)) for c in columns]

    def may_match(self, part: dict) -> bool:
        stats = {d["field_id"]: d for d in part["columns"]}
        fixed, mixed = [], []
        for fid, field in self.columns:
            d = stats.get(fid)
            if d is None:
                continue
            cases = _cases(field, d, part["rows"])
            if len(cases) == 1:
                fixed.append(cases[0])
            elif cases:
                mixed.append(cases)
        mixed = mixed[:NULL_CASES_COLUMNS_MAX]  # columns beyond these give no guarantee
        fragments = []
        for combo in itertools.product(*mixed) if mixed else [()]:
            guarantee = [g for g in (*fixed, *combo) if g is not None]
            if not guarantee:
                return True
            expression = guarantee[0]
            for g in guarantee[1:]:
                expression = expression & g
            fragments.append(_FORMAT.make_fragment(f"f{len(fragments)}", filesystem=_FS,
                                                   partition_expression=expression))
        dataset = ds.FileSystemDataset(fragments, self.schema, _FORMAT, _FS)
        return any(True for _ in dataset.get_fragments(filter=self.expr))


def _cases(field: pa.Field, d: dict, rows: int) -> list:
    """Guarantees of one column: one expression, or alternatives (null rows / valued rows)."""
    ref, nulls = pc.field(field.name), d.get("nulls", 0)
    if nulls == rows:
        return [ref.is_null()]
    in_range = None
    if "min" in d and "max" in d:
        in_range = (ref >= stat_scalar(d["min"], field.type)) & (ref <= stat_scalar(d["max"], field.type))
    if nulls == 0:
        return [in_range if in_range is not None else ref.is_valid()]
    return [ref.is_null(), in_range if in_range is not None else ref.is_valid()]
