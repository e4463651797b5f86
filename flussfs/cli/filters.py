"""`--filter` text -> a pyarrow.compute expression, by a tiny parser (never eval).

Invariants: the language is `col OP literal` or `col is [not] null`, joined by `and`; every
column must be in the schema and every literal is cast safely to its column's type, so a bad
filter is a UsageError before any data is read.
"""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from .arguments import UsageError

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<str>'[^']*'|"[^"]*")
                    |(?P<op>==|!=|<=|>=|=|<|>)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)
_OPS = {"=": "equal", "==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal",
        ">": "greater", ">=": "greater_equal"}


def parse_filter(text: str, schema: pa.Schema) -> pc.Expression:
    """A tiny filter language, no eval: `col OP literal` or `col is [not] null`, joined by `and`.

    OP is one of = == != < <= > >=; a literal is a number, a quoted string, true or false, and
    is cast to the column's type (so '2024-05-01T00:00:00Z' compares with a timestamp)."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"--filter: cannot read {text[pos:].strip()!r}")
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    conditions, i = [], 0
    while True:
        cond, i = _condition(tokens, i, schema, text)
        conditions.append(cond)
        if i == len(tokens):
            break
        if tokens[i] != ("word", "and"):
            raise UsageError(f"--filter {text!r}: expected 'and' before {tokens[i][1]!r}")
        i += 1
    expr = conditions[0]
    for c in conditions[1:]:
        expr = expr & c
    return expr


def _condition(tokens, i, schema, text):
    def at(k):
        return tokens[k] if k < len(tokens) else (None, None)

    kind, name = at(i)
    if kind != "word" or schema.get_field_index(name) < 0:
        raise UsageError(f"--filter {text!r}: {name!r} is not a column; the table has {schema.names}")
    field = schema.field(name)
    if at(i + 1) == ("word", "is"):
        negate = at(i + 2) == ("word", "not")
        if at(i + 2 + negate) != ("word", "null"):
            raise UsageError(f"--filter {text!r}: expected 'is null' or 'is not null' after {name!r}")
        test = pc.field(name).is_null()
        return (~test if negate else test), i + 3 + negate
    op_kind, op = at(i + 1)
    lit_kind, lit = at(i + 2)
    if op_kind != "op" or lit_kind not in ("num", "str", "word"):
        raise UsageError(f"--filter {text!r}: expected `{name} OP literal`")
    if lit_kind == "str":
        value = lit[1:-1]
    elif lit_kind == "num":
        value = float(lit) if any(c in lit for c in ".eE") else int(lit)
    elif lit in ("true", "false"):
        value = lit == "true"
    else:
        raise UsageError(f"--filter {text!r}: {lit!r} is not a literal (quote strings)")
    if isinstance(value, str) != (pa.types.is_string(field.type) or pa.types.is_temporal(field.type)
                                  or pa.types.is_decimal(field.type)):
        raise UsageError(f"--filter {text!r}: literal {lit} does not suit column {name!r} ({field.type})")
    try:
        scalar = pc.cast(pa.scalar(value), field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise UsageError(f"--filter {text!r}: literal {lit} does not fit column {name!r} "
                         f"({field.type}): {e}") from None
    return getattr(pc, _OPS[op])(pc.field(name), scalar), i + 3
