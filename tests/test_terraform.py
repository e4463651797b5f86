"""The Terraform module's security properties, read from the .tf files, and a checkov run
(terraform/README.md, "How the tests check it").

Invariants: nothing here calls AWS or the network (checkov runs with its downloads and update
check off). Key patterns are checked against real keys built by `flussfs.paths`, the one place
that builds keys, so a change to the layout (format_spec/spec-v1.md, section 2) that the bucket
policy or a role no longer covers fails here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import hcl2
import pytest

from flussfs import paths

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
MODULE = TF / "modules" / "flussfs"
EXAMPLE = TF / "examples" / "basic"
README = TF / "README.md"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_TIMEOUT_S = 300

# hcl2 7+ keeps a string literal's quotes and wraps expressions in ${...}; these keys carry
# block markers and comments, not configuration.
HCL2_MARKERS = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}

# Stand-ins when resolving key patterns: B is the bucket ARN, T a table root.
BUCKET = "B"
TABLE_ROOTS = ["tables/orders/", ""]  # a nested table and a table at the bucket root
WRITER_ID = "61327e53e8544d8480b7a1849bd0712f"
TOKEN = "c96ad3240000000000000000000000aa"
UUID = "4d081b1e000000000000000000000000"

KEYS = {
    "table_metadata": paths.table_metadata(0),
    "commit": paths.commit(0, 12),
    "segment": paths.segment(1, WRITER_ID, 24, 0),
    "checkpoint": paths.checkpoint(0, 3),
    "checkpoint_hint": paths.checkpoint_hint(0),
    "batch_claim": paths.batch_claim(WRITER_ID),
    "batch_done": paths.batch_done(WRITER_ID),
    "snapshot": paths.snapshot(2),
    "changelog": paths.changelog_piece(0, 4, 2, TOKEN),
    "data": paths.data_file(1, 2, TOKEN, "data-0"),
    "deletes": paths.data_file(1, 2, TOKEN, "deletes"),
    "iceberg_metadata": paths.iceberg_metadata(2),
    # Manifest names are built in compactor/iceberg.py; their shape is spec section 2's.
    "manifest_list": f"{paths.ICEBERG_METADATA_DIR}snap-1820436274940973703-{UUID}.avro",
    "manifest": f"{paths.ICEBERG_METADATA_DIR}m-00001-deletes-{UUID}.avro",
    "version_hint": paths.VERSION_HINT,
}
IMMUTABLE = ["table_metadata", "commit", "segment", "checkpoint", "batch_claim", "batch_done",
             "snapshot", "iceberg_metadata"]
HINTS = ["checkpoint_hint", "version_hint"]
NEVER_DELETED = ["table_metadata", "commit", "iceberg_metadata"]
COLLECTED = ["data", "deletes", "changelog", "snapshot", "manifest", "manifest_list"]
WRITER_WRITES = ["commit", "segment", "checkpoint", "checkpoint_hint", "batch_claim", "batch_done"]
COMPACTOR_WRITES = ["snapshot", "changelog", "data", "deletes", "iceberg_metadata", "manifest",
                    "manifest_list", "version_hint"]
JOB_POLICIES = ["writer", "reader", "compactor", "scheduler"]


# ---- Reading HCL ----------------------------------------------------------------------------

def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] == '"':
        try:
            return json.loads(s)
        except ValueError:
            return s[1:-1]
    return s


def _norm(x):
    """hcl2's output (7.x or 8.x) with quotes removed from names and string literals."""
    if isinstance(x, dict):
        return {_unquote(k): _norm(v) for k, v in x.items() if k not in HCL2_MARKERS}
    if isinstance(x, list):
        return [_norm(v) for v in x]
    if isinstance(x, str):
        return _unquote(x)
    return x


def load(directory: Path) -> dict:
    """Every top-level block of the .tf files in `directory`, merged by kind and name."""
    merged = {"resource": {}, "data": {}, "locals": {}, "variable": {}, "module": {},
              "output": {}, "provider": {}}
    for f in sorted(directory.glob("*.tf")):
        with open(f) as fh:
            doc = _norm(hcl2.load(fh))
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


@pytest.fixture(scope="module")
def module() -> dict:
    return load(MODULE)


def _one(block):
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


# ---- Parsing ------------------------------------------------------------------------------

def test_every_tf_file_parses():
    """Every .tf file under terraform/ is valid HCL2 as python-hcl2 reads it."""
    files = sorted(TF.rglob("*.tf"))
    assert len(files) >= 8
    for f in files:
        with open(f) as fh:
            assert hcl2.load(fh), f


def test_provider_is_aws_5():
    """The module pins the AWS provider to 5.x, whose resource schemas it was written against."""
    with open(MODULE / "versions.tf") as fh:
        block = _norm(hcl2.load(fh))["terraform"][0]
    aws = _one(block["required_providers"])["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert aws["version"].startswith("~> 5.")


# ---- The bucket ---------------------------------------------------------------------------

def test_public_access_block_all_true(module):
    """All four public access blocks are on."""
    pab = module["resource"]["aws_s3_bucket_public_access_block"]["tables"]
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):
        assert pab[flag] is True, flag


def test_acls_disabled(module):
    """Object ownership is BucketOwnerEnforced, which disables ACLs."""
    rule = _one(module["resource"]["aws_s3_bucket_ownership_controls"]["tables"]["rule"])
    assert rule["object_ownership"] == "BucketOwnerEnforced"


def test_encryption_sse_s3_or_kms_with_bucket_key(module):
    """Default encryption is SSE-S3, or SSE-KMS with a bucket key when kms_key_arn is set."""
    rule = _one(module["resource"]["aws_s3_bucket_server_side_encryption_configuration"]
                ["tables"]["rule"])
    sse = _one(rule["apply_server_side_encryption_by_default"])
    assert "aws:kms" in sse["sse_algorithm"] and "AES256" in sse["sse_algorithm"]
    assert "kms_enabled" in sse["sse_algorithm"]
    assert sse["kms_master_key_id"] == "${var.kms_key_arn}"
    assert rule["bucket_key_enabled"] == "${local.kms_enabled}"
    assert module["locals"]["kms_enabled"] == "${var.kms_key_arn != null}"
    assert default(module, "kms_key_arn") is None


def test_versioning_enabled(module):
    """Bucket versioning is enabled."""
    v = module["resource"]["aws_s3_bucket_versioning"]["tables"]
    assert _one(v["versioning_configuration"])["status"] == "Enabled"


def test_lifecycle_aborts_uploads_and_expires_what_gc_marks(module):
    """Lifecycle aborts stale multipart uploads, removes GC'd versions after gc_recovery_days,
    expires batch receipts after more than SQS's 14 days and fan-out spill after a day."""
    lc = module["resource"]["aws_s3_bucket_lifecycle_configuration"]["tables"]
    rules = {r["id"]: r for r in lc["rule"]}
    everything = rules["gc-recovery-window"]
    assert _one(everything["filter"]) == {}
    assert _one(everything["abort_incomplete_multipart_upload"])["days_after_initiation"] == 1
    assert _one(everything["noncurrent_version_expiration"])["noncurrent_days"] == \
        "${var.gc_recovery_days}"
    assert _one(everything["expiration"])["expired_object_delete_marker"] is True
    assert default(module, "gc_recovery_days") == 7

    dyn = _one(lc["dynamic"])["rule"]
    assert dyn["for_each"] == "${local.table_roots}"
    receipts = _one(dyn["content"])
    assert _one(receipts["filter"])["prefix"] == "${rule.value}" + paths.BATCHES_DIR
    assert _one(receipts["expiration"])["days"] == "${var.batch_receipt_days}"
    assert default(module, "batch_receipt_days") == 15 > 14

    spill = rules["fanout-spill"]
    assert _one(spill["filter"])["prefix"] == "${local.fanout_prefix}"
    assert module["locals"]["fanout_prefix"] == "_flussfs_fanout/"
    assert _one(spill["expiration"])["days"] == 1


def test_bucket_policy_denies_requests_without_tls(module):
    """The bucket policy denies every action on the bucket and its objects without TLS."""
    deny = [s for s in statements(module, "bucket") if s.sid == "DenyInsecureTransport"]
    assert len(deny) == 1
    s = deny[0]
    assert s.effect == "Deny" and s.actions == ["s3:*"]
    assert sorted(patterns(s.resources, module)) == [BUCKET, f"{BUCKET}/*"]
    assert _one(s.principals) == {"type": "*", "identifiers": ["*"]}
    assert [(c["test"], c["variable"], c["values"]) for c in s.conditions] == \
        [("Bool", "aws:SecureTransport", ["false"])]
    policy = module["resource"]["aws_s3_bucket_policy"]["tables"]
    assert policy["policy"] == "${data.aws_iam_policy_document.bucket.json}"


def test_if_none_match_deny_covers_immutable_keys_and_spares_hints(module):
    """PutObject without If-None-Match is denied on every immutable key of any table (root
    included), multipart parts stay allowed, and the two hints stay writable."""
    deny = [s for s in statements(module, "bucket")
            if s.sid == "DenyUnconditionalWritesOfImmutableObjects"]
    assert len(deny) == 1
    s = deny[0]
    assert s.effect == "Deny" and s.actions == ["s3:PutObject"]
    assert _one(s.principals) == {"type": "*", "identifiers": ["*"]}
    conditions = {(c["test"], c["variable"]): c["values"] for c in s.conditions}
    assert conditions == {("Null", "s3:if-none-match"): ["true"],
                          ("Bool", "s3:ObjectCreationOperation"): ["true"]}
    pats = patterns(s.resources, module)
    for root in TABLE_ROOTS:
        for name in IMMUTABLE:
            assert covered(pats, KEYS[name], root), (name, root)
        for name in HINTS:
            assert not covered(pats, KEYS[name], root), (name, root)


def test_commits_and_metadata_cannot_be_deleted(module):
    """DeleteObject and DeleteObjectVersion are denied to everyone on commits, table metadata
    and v<N>.metadata.json, and on nothing the garbage collector deletes."""
    deny = [s for s in statements(module, "bucket") if s.sid == "DenyDeletionOfCommitsAndMetadata"]
    assert len(deny) == 1
    s = deny[0]
    assert s.effect == "Deny" and s.conditions == []
    assert sorted(s.actions) == ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    pats = patterns(s.resources, module)
    for root in TABLE_ROOTS:
        for name in NEVER_DELETED:
            assert covered(pats, KEYS[name], root), (name, root)
        for name in COLLECTED:
            assert not covered(pats, KEYS[name], root), (name, root)


# ---- The roles ----------------------------------------------------------------------------

def test_no_job_policy_has_wildcard_action_or_bare_resource(module):
    """No job policy has a "*" or "service:*" action or a bare "*" resource, and the only
    managed policy attached is X-Ray's (whose actions take no resource)."""
    for doc in JOB_POLICIES:
        for s in statements(module, doc):
            assert s.effect == "Allow", (doc, s.sid)
            for action in s.actions:
                assert action != "*" and not action.endswith(":*"), (doc, s.sid, action)
            raw = s.resources if isinstance(s.resources, list) else [s.resources]
            assert "*" not in raw, (doc, s.sid)
            for p in patterns(s.resources, module):
                assert p != "*" and not p.startswith("*"), (doc, s.sid, p)
    attachments = module["resource"]["aws_iam_role_policy_attachment"]
    assert {a["policy_arn"] for a in attachments.values()} == \
        {"arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"}
    assert "aws_iam_policy" not in module["resource"]


def test_writer_appends_to_the_log_and_never_deletes(module):
    """The writer puts only log keys and batch receipts, creates tables only when allowed,
    reads and lists only under _flussfs/, and has no Delete action."""
    stmts = statements(module, "writer")
    for s in stmts:
        assert not any("Delete" in a for a in s.actions if a.startswith("s3")), s.sid
    puts = [s for s in stmts if "s3:PutObject" in s.actions]
    always = [p for s in puts if s.gate is None for p in patterns(s.resources, module)]
    gated = [s for s in puts if s.gate is not None]
    for root in TABLE_ROOTS:
        for name in WRITER_WRITES:
            assert covered(always, KEYS[name], root), (name, root)
        for name in set(KEYS) - set(WRITER_WRITES):
            assert not covered(always, KEYS[name], root), (name, root)
    assert len(gated) == 1 and gated[0].gate == "${var.writers_may_create_tables ? [1] : []}"
    assert default(module, "writers_may_create_tables") is False
    creates = patterns(gated[0].resources, module)
    assert all(covered(creates, KEYS["table_metadata"], r) for r in TABLE_ROOTS)
    assert not any(covered(creates, KEYS[n], r) for n in KEYS if n != "table_metadata"
                   for r in TABLE_ROOTS)

    reads = [p for s in stmts if "s3:GetObject" in s.actions for p in patterns(s.resources, module)]
    assert all(iam_match(p, f"{BUCKET}/{r}{paths.ROOT}x") for p, r in
               zip(reads, TABLE_ROOTS))
    assert not any(covered(reads, KEYS[n], r) for n in ("data", "iceberg_metadata")
                   for r in TABLE_ROOTS)
    lists = [s for s in stmts if "s3:ListBucket" in s.actions]
    assert len(lists) == 1 and patterns(lists[0].resources, module) == [BUCKET]
    (cond,) = lists[0].conditions
    assert (cond["test"], cond["variable"]) == ("StringLike", "s3:prefix")
    assert patterns(cond["values"], module) == [f"{r}{paths.ROOT}*" for r in TABLE_ROOTS]


def test_writer_reads_only_its_triggers(module):
    """The writer may read the given SQS queues and Kinesis streams, and nothing else of them."""
    stmts = {s.sid: s for s in statements(module, "writer")}
    sqs = stmts["ReadTriggerQueues"]
    assert sorted(sqs.actions) == ["sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                   "sqs:ReceiveMessage"]
    assert sqs.resources == "${var.writer_sqs_queue_arns}"
    kinesis = stmts["ReadTriggerStreams"]
    assert all(a.startswith("kinesis:") and not a.startswith("kinesis:Put") for a in kinesis.actions)
    assert "var.writer_kinesis_stream_arns" in kinesis.resources
    assert default(module, "writer_sqs_queue_arns") == []
    assert default(module, "writer_kinesis_stream_arns") == []


def test_reader_only_reads(module):
    """The reader only gets and lists objects under the table roots (and decrypts)."""
    stmts = statements(module, "reader")
    allowed = {"s3:GetObject", "s3:ListBucket", "kms:Decrypt", "s3express:CreateSession"}
    assert {a for s in stmts for a in s.actions} <= allowed
    gets = [p for s in stmts if "s3:GetObject" in s.actions for p in patterns(s.resources, module)]
    assert gets == [f"{BUCKET}/{r}*" for r in TABLE_ROOTS]
    (lst,) = [s for s in stmts if "s3:ListBucket" in s.actions]
    assert patterns(_one(lst.conditions)["values"], module) == [f"{r}*" for r in TABLE_ROOTS]
    (express,) = [s for s in stmts if "s3express:CreateSession" in s.actions]
    cond = _one(express.conditions)
    assert (cond["test"], cond["variable"], cond["values"]) == \
        ("StringEquals", "s3express:SessionMode", ["ReadOnly"])


def test_compactor_deletes_only_what_gc_collects(module):
    """The compactor deletes only data files, changelog pieces, snapshot manifests, Iceberg
    manifests and fan-out spill, never a commit, a segment, table metadata or v<N>.metadata.json,
    and writes only the keys of section 20."""
    stmts = statements(module, "compactor")
    assert not any("s3:DeleteObjectVersion" in s.actions for s in stmts)
    deletes = [p for s in stmts if "s3:DeleteObject" in s.actions for p in patterns(s.resources, module)]
    spill = [p for p in deletes if p.startswith(f"{BUCKET}/_flussfs_fanout/")]
    assert spill == [f"{BUCKET}/_flussfs_fanout/*"]
    table = [p for p in deletes if p not in spill]
    for root in TABLE_ROOTS:
        for name in COLLECTED:
            assert covered(table, KEYS[name], root), (name, root)
        for name in set(KEYS) - set(COLLECTED):
            assert not covered(table, KEYS[name], root), (name, root)

    puts = [p for s in stmts if "s3:PutObject" in s.actions for p in patterns(s.resources, module)
            if not p.startswith(f"{BUCKET}/_flussfs_fanout/")]
    for root in TABLE_ROOTS:
        for name in COMPACTOR_WRITES:
            assert covered(puts, KEYS[name], root), (name, root)
        for name in set(KEYS) - set(COMPACTOR_WRITES):
            assert not covered(puts, KEYS[name], root), (name, root)


def test_compactor_invokes_only_its_worker(module):
    """lambda:InvokeFunction is granted to the compactor on the worker alone, and to the
    scheduler on the compactor alone (plus the DLQ it delivers failures to)."""
    (invoke,) = [s for s in statements(module, "compactor") if "lambda:InvokeFunction" in s.actions]
    assert invoke.actions == ["lambda:InvokeFunction"]
    assert invoke.resources == ["${local.worker_function_arn}"]
    assert invoke.gate == "${var.fanout ? [1] : []}"
    sched = statements(module, "scheduler")
    assert sorted((a, str(s.resources)) for s in sched for a in s.actions) == [
        ("lambda:InvokeFunction", "['${aws_lambda_function.compactor.arn}']"),
        ("sqs:SendMessage", "['${aws_sqs_queue.dlq.arn}']"),
    ]


def test_trust_policies(module):
    """Lambda assumes the job roles, Scheduler (of this account only) the scheduler role, and
    extra principals only the writer and reader roles."""
    roles = module["resource"]["aws_iam_role"]
    assert roles["compactor"]["assume_role_policy"] == "${data.aws_iam_policy_document.lambda_trust.json}"
    for job in ("writer", "reader"):
        assert roles[job]["assume_role_policy"] == f"${{data.aws_iam_policy_document.{job}_trust.json}}"
        (extra,) = statements(module, f"{job}_trust")
        assert _one(extra.principals) == {"type": "AWS",
                                          "identifiers": f"${{var.{job}_extra_principal_arns}}"}
    (lam,) = statements(module, "lambda_trust")
    assert _one(lam.principals) == {"type": "Service", "identifiers": ["lambda.amazonaws.com"]}
    (sch,) = statements(module, "scheduler_trust")
    assert _one(sch.principals) == {"type": "Service", "identifiers": ["scheduler.amazonaws.com"]}
    assert _one(sch.conditions)["variable"] == "aws:SourceAccount"


# ---- The compactor ------------------------------------------------------------------------

def test_compactor_function(module):
    """The compactor runs python3.12 on x86_64 with reserved concurrency 1, active tracing, a
    DLQ and its own log group; the worker is the same artifact with its own handler."""
    fns = module["resource"]["aws_lambda_function"]
    c, w = fns["compactor"], fns["worker"]
    assert module["locals"]["compactor_handler"] == "compactor.handler.compact_handler"
    assert module["locals"]["worker_handler"] == "compactor.handler.worker_handler"
    for fn, handler in ((c, "compactor_handler"), (w, "worker_handler")):
        assert fn["architectures"] == ["x86_64"]
        assert "python3.12" in fn["runtime"]
        assert f"local.{handler}" in fn["handler"]
        assert _one(fn["tracing_config"])["mode"] == "Active"
        assert fn["memory_size"] == "${var.compactor_memory_mb}"
        assert fn["timeout"] == "${var.compactor_timeout_s}"
        assert "aws_s3_object.lambda_zip[0].key" in fn["s3_key"]
        assert "filebase64sha256(var.lambda_zip_path)" in fn["source_code_hash"]
        assert "var.image_uri" in fn["image_uri"]
    assert c["reserved_concurrent_executions"] == 1
    assert _one(c["dead_letter_config"])["target_arn"] == "${aws_sqs_queue.dlq.arn}"
    assert _one(c["logging_config"])["log_group"] == "${aws_cloudwatch_log_group.compactor.name}"
    assert default(module, "compactor_memory_mb") == 3008
    assert default(module, "compactor_timeout_s") == 900
    assert default(module, "package_type") == "Zip"
    env = module["locals"]["compactor_environment"]
    for name in ("FLUSSFS_TABLES", "FLUSSFS_WORKER_FUNCTION", "FLUSSFS_FANOUT_SPILL_URI",
                 "FLUSSFS_GLUE_DATABASE"):
        assert name in env, name
    for group in module["resource"]["aws_cloudwatch_log_group"].values():
        assert group["retention_in_days"] == "${var.log_retention_days}"


def test_schedule_retries_and_dead_letters(module):
    """EventBridge Scheduler invokes the compactor with the table list, a retry policy and the
    encrypted DLQ."""
    s = module["resource"]["aws_scheduler_schedule"]["compaction"]
    assert s["schedule_expression"] == "${var.compaction_schedule}"
    assert default(module, "compaction_schedule") == "rate(5 minutes)"
    target = _one(s["target"])
    assert target["arn"] == "${aws_lambda_function.compactor.arn}"
    assert target["role_arn"] == "${aws_iam_role.scheduler.arn}"
    assert "tables" in target["input"]
    assert _one(target["retry_policy"])["maximum_retry_attempts"] >= 1
    assert _one(target["dead_letter_config"])["arn"] == "${aws_sqs_queue.dlq.arn}"
    assert module["resource"]["aws_sqs_queue"]["dlq"]["sqs_managed_sse_enabled"] is True


def test_alarms(module):
    """Errors and DLQ depth alarm on > 0, and compaction lag alarms per table on the EMF metric
    with missing data breaching."""
    alarms = module["resource"]["aws_cloudwatch_metric_alarm"]
    errors, dlq, lag = alarms["compactor_errors"], alarms["dlq_messages"], alarms["compaction_lag"]
    assert (errors["namespace"], errors["metric_name"], errors["threshold"]) == ("AWS/Lambda", "Errors", 0)
    assert (dlq["namespace"], dlq["metric_name"], dlq["threshold"]) == \
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 0)
    for a in (errors, dlq):
        assert a["comparison_operator"] == "GreaterThanThreshold"
    assert (lag["namespace"], lag["metric_name"], lag["statistic"]) == \
        ("flussfs", "CompactionLagSeconds", "Maximum")
    assert lag["dimensions"] == {"Table": "${each.value}"}
    assert lag["for_each"] == "${local.table_uris}"
    assert lag["threshold"] == "${var.compaction_lag_alarm_s}"
    assert default(module, "compaction_lag_alarm_s") == 1800
    assert lag["treat_missing_data"] == "breaching"
    for a in alarms.values():
        assert a["alarm_actions"] == "${local.alarm_actions}"


def test_example_uses_the_module(module):
    """The example calls the module with two table prefixes, a region variable and a writer
    SQS queue."""
    example = load(EXAMPLE)
    call = example["module"]["flussfs"]
    assert call["source"] == "../../modules/flussfs"
    assert len(call["table_prefixes"]) == 2
    assert call["writer_sqs_queue_arns"] == ["${aws_sqs_queue.writes.arn}"]
    assert example["provider"]["aws"]["region"] == "${var.region}"
    assert set(call) - {"source"} <= set(module["variable"])
    required = {n for n, v in module["variable"].items() if "default" not in v}
    assert required <= set(call)


# ---- checkov ------------------------------------------------------------------------------

def _documented_skips() -> dict[str, str]:
    """Check id -> reason, from the rows of the skip table in terraform/README.md."""
    rows = re.findall(r"^\|\s*`?(CKV2?_AWS_\d+)`?\s*\|[^|\n]*\|\s*([^|\n]+?)\s*\|\s*$",
                      README.read_text(), re.M)
    return {check: reason for check, reason in rows}


def test_checkov_passes_offline_and_every_skip_is_documented():
    """checkov, run offline, finds no failed check in terraform/, and every check it skipped
    (and every inline skip) is in terraform/README.md with a reason."""
    assert CHECKOV.exists(), f"{CHECKOV} is missing; `make test-venv` installs it"
    # --skip-download and BC_SKIP_MAPPING keep it from fetching policy metadata from the Prisma
    # Cloud platform; CKV_SKIP_PACKAGE_UPDATE_CHECK from asking PyPI for a newer version.
    # --quiet is left out: it drops passed and skipped checks from the JSON report.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    out = subprocess.run(
        [str(CHECKOV), "-d", str(TF), "--framework", "terraform", "--skip-download",
         "--download-external-modules", "false", "--compact", "-o", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_S)
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(f["check_id"], f["resource"]) for r in reports for f in r["results"]["failed_checks"]]
    assert failed == [], failed
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["passed"] for r in reports) > 100

    documented = _documented_skips()
    skipped = {f["check_id"] for r in reports for f in r["results"]["skipped_checks"]}
    inline = {m for f in TF.rglob("*.tf")
              for m in re.findall(r"checkov:skip=(CKV2?_AWS_\d+):", f.read_text())}
    assert skipped == inline
    for check in sorted(skipped | inline):
        assert check in documented, f"{check} is skipped but not documented in {README}"
        assert len(documented[check]) > 20, check


def test_writer_triggers_report_bad_records_and_resend_whole_batches(module):
    """The writer's triggers report bad records (ReportBatchItemFailures), and Kinesis resends a
    failed batch whole, one batch per shard at a time: a retry is the same batch id."""
    mappings = module["resource"]["aws_lambda_event_source_mapping"]
    assert set(mappings) == {"writer_sqs", "writer_kinesis"}
    for m in mappings.values():
        assert m["function_response_types"] == ["ReportBatchItemFailures"]
    kinesis = mappings["writer_kinesis"]
    assert kinesis["bisect_batch_on_function_error"] is False
    assert kinesis["parallelization_factor"] == 1
    writer = module["resource"]["aws_lambda_function"]["writer"]
    assert writer["handler"] == "${local.is_zip ? local.writer_handler : null}"
    assert module["locals"]["writer_handler"] == "flussfs.serverless.writer.handler"
