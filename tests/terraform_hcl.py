"""Reading the Terraform module for tests: every .tf file parsed with python-hcl2, its output
normalised and merged by block kind, and the bucket and IAM policy documents turned into
statements and the key patterns they name (terraform/README.md, "How the tests check it").

Invariants: nothing here calls AWS or the network. hcl2 7.x and 8.x output read the same after
`norm`. A key pattern is resolved against stand-ins, B for the bucket ARN and each of
TABLE_ROOTS for a table root, and matched with IAM's own wildcard rules.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
MODULE = TF / "modules" / "flussfs"
EXAMPLE = TF / "examples" / "basic"

# hcl2 7+ keeps a string literal's quotes and wraps expressions in ${...}; these keys carry
# block markers and comments, not configuration.
HCL2_MARKERS = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}

# Stand-ins when resolving key patterns: B is the bucket ARN, T a table root.
BUCKET = "B"
TABLE_ROOTS = ["tables/orders/", ""]  # a nested table and a table at the bucket root


# ---- Reading HCL ----------------------------------------------------------------------------

def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] == '"':
        try:
            return json.loads(s)
        except ValueError:
            return s[1:-1]
    return s


def norm(x):
    """hcl2's output (7.x or 8.x) with quotes removed from names and string literals."""
    if isinstance(x, dict):
        return {_unquote(k): norm(v) for k, v in x.items() if k not in HCL2_MARKERS}
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, str):
        return _unquote(x)
    return x


def load(directory: Path) -> dict:
    """Every top-level block of the .tf files in `directory`, merged by kind and name."""
    merged = {"resource": {}, "data": {}, "locals": {}, "variable": {}, "module": {},
              "output": {}, "provider": {}}
    for f in sorted(directory.glob("*.tf")):
        with open(f) as fh:
            doc = norm(hcl2.load(fh))
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for type_, named in entry.items():
                    merged[kind].setdefault(type_, {}).update(named)
        for entry in doc.get("locals", []):
            merged["locals"].update(entry)
        for kind in ("variable", "module", "output", "provider"):
            for entry in doc.get(kind, []):
                merged[kind].update(entry)
    return merged


def one(block):
    """A nested block hcl2 gives as a list of one dict."""
    assert isinstance(block, list) and len(block) == 1, block
    return block[0]


def default(module: dict, name: str):
    return module["variable"][name]["default"]


# ---- Policy documents -----------------------------------------------------------------------

@dataclass
class Statement:
    sid: str
    effect: str
    actions: list[str]
    resources: object            # a list, or an expression string such as "${local.x}"
    conditions: list[dict]
    gate: str | None             # the for_each of a dynamic statement, None if always present
    principals: list[dict]


def statements(module: dict, doc: str) -> list[Statement]:
    body = module["data"]["aws_iam_policy_document"][doc]
    blocks = [(s, None) for s in body.get("statement", [])]
    for dyn in body.get("dynamic", []):
        d = dyn["statement"]
        blocks += [(s, d["for_each"]) for s in d["content"]]
    return [Statement(s.get("sid", ""), s.get("effect", "Allow"), s.get("actions", []),
                      s.get("resources", []), s.get("condition", []), gate,
                      s.get("principals", [])) for s, gate in blocks]


def _local_ref(expr: str) -> str | None:
    m = re.fullmatch(r"\$\{local\.(\w+)\}", expr)
    return m.group(1) if m else None


def _substitute(template: str, module: dict) -> str:
    """Replace ${local.bucket_arn} by B and ${local.x} of a literal string local by its value."""
    def repl(m):
        name = m.group(1)
        if name == "bucket_arn":
            return BUCKET
        value = module["locals"].get(name)
        return value if isinstance(value, str) and "${" not in value else m.group(0)
    return re.sub(r"\$\{local\.(\w+)\}", repl, template)


def patterns(expr, module: dict) -> list[str]:
    """The key patterns an expression of the module names, as "B/<key>"; each table root of
    TABLE_ROOTS stands in for local.table_roots. Other references stay as written."""
    if isinstance(expr, list):
        return [p for e in expr for p in patterns(e, module)]
    name = _local_ref(expr)
    if name is None or name == "bucket_arn":
        return [_substitute(expr, module)]
    value = module["locals"][name]
    if isinstance(value, list):
        return patterns(value, module)
    per_table = re.search(r"setproduct\(local\.table_roots, local\.(\w+)\)", value)
    bucket_wide = re.search(r"\[for p in local\.(\w+) : ", value)
    prefix = f"{BUCKET}/" if "${local.bucket_arn}/" in value else ""
    if per_table:
        return [f"{prefix}{root}{p}" for root in TABLE_ROOTS
                for p in module["locals"][per_table.group(1)]]
    if bucket_wide:
        return [f"{prefix}{p}" for p in module["locals"][bucket_wide.group(1)]]
    return [_substitute(value, module)]


def iam_match(pattern: str, s: str) -> bool:
    """IAM's ARN wildcards: '*' is any run of characters ('/' too), '?' one character."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, s) is not None


def covered(pats: list[str], key: str, root: str) -> bool:
    return any(iam_match(p, f"{BUCKET}/{root}{key}") for p in pats)
