"""The Terraform module's security properties, read from the .tf files: the bucket (public
access, ACLs, encryption, versioning, lifecycle), the bucket policy's denies, and the IAM roles
and trust policies (terraform/README.md, "How the tests check it").

Invariants: nothing here calls AWS or the network. Key patterns are checked against real keys
built by `flussfs.paths`, the one place that builds keys, so a change to the layout
(format_spec/spec-v1.md, section 2) that the bucket policy or a role no longer covers fails here.
"""
from __future__ import annotations

import pytest

from flussfs import paths
from terraform_hcl import (BUCKET, MODULE, TABLE_ROOTS, covered, default, iam_match, load, one,
                           patterns, statements)

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
# A record the Lambda writer keeps because it cannot become rows: outside every table, written
# with put-if-absent (flussfs/serverless/writer.py).
REJECT = "_flussfs_rejects/tables/orders/kinesis/flussfs-events/shardId-000000000006/101.json"
IMMUTABLE = ["table_metadata", "commit", "segment", "checkpoint", "batch_claim", "batch_done",
             "snapshot", "iceberg_metadata"]
HINTS = ["checkpoint_hint", "version_hint"]
NEVER_DELETED = ["table_metadata", "commit", "iceberg_metadata"]
COLLECTED = ["data", "deletes", "changelog", "snapshot", "manifest", "manifest_list"]
WRITER_WRITES = ["commit", "segment", "checkpoint", "checkpoint_hint", "batch_claim", "batch_done"]
COMPACTOR_WRITES = ["snapshot", "changelog", "data", "deletes", "iceberg_metadata", "manifest",
                    "manifest_list", "version_hint"]
JOB_POLICIES = ["writer", "reader", "compactor", "scheduler"]


@pytest.fixture(scope="module")
def module() -> dict:
    return load(MODULE)


# ---- The bucket ---------------------------------------------------------------------------

def test_public_access_block_all_true(module):
    """All four public access blocks are on."""
    pab = module["resource"]["aws_s3_bucket_public_access_block"]["tables"]
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):
        assert pab[flag] is True, flag


def test_acls_disabled(module):
    """Object ownership is BucketOwnerEnforced, which disables ACLs."""
    rule = one(module["resource"]["aws_s3_bucket_ownership_controls"]["tables"]["rule"])
    assert rule["object_ownership"] == "BucketOwnerEnforced"


def test_encryption_sse_s3_or_kms_with_bucket_key(module):
    """Default encryption is SSE-S3, or SSE-KMS with a bucket key when kms_key_arn is set."""
    rule = one(module["resource"]["aws_s3_bucket_server_side_encryption_configuration"]
                ["tables"]["rule"])
    sse = one(rule["apply_server_side_encryption_by_default"])
    assert "aws:kms" in sse["sse_algorithm"] and "AES256" in sse["sse_algorithm"]
    assert "kms_enabled" in sse["sse_algorithm"]
    assert sse["kms_master_key_id"] == "${var.kms_key_arn}"
    assert rule["bucket_key_enabled"] == "${local.kms_enabled}"
    assert module["locals"]["kms_enabled"] == "${var.kms_key_arn != null}"
    assert default(module, "kms_key_arn") is None


def test_versioning_enabled(module):
    """Bucket versioning is enabled."""
    v = module["resource"]["aws_s3_bucket_versioning"]["tables"]
    assert one(v["versioning_configuration"])["status"] == "Enabled"


def test_lifecycle_aborts_uploads_and_expires_what_gc_marks(module):
    """Lifecycle aborts stale multipart uploads, removes GC'd versions after gc_recovery_days,
    expires batch receipts after more than SQS's 14 days and fan-out spill after a day."""
    lc = module["resource"]["aws_s3_bucket_lifecycle_configuration"]["tables"]
    rules = {r["id"]: r for r in lc["rule"]}
    everything = rules["gc-recovery-window"]
    assert one(everything["filter"]) == {}
    assert one(everything["abort_incomplete_multipart_upload"])["days_after_initiation"] == 1
    assert one(everything["noncurrent_version_expiration"])["noncurrent_days"] == \
        "${var.gc_recovery_days}"
    assert one(everything["expiration"])["expired_object_delete_marker"] is True
    assert default(module, "gc_recovery_days") == 7

    dyn = one(lc["dynamic"])["rule"]
    assert dyn["for_each"] == "${local.table_roots}"
    receipts = one(dyn["content"])
    assert one(receipts["filter"])["prefix"] == "${rule.value}" + paths.BATCHES_DIR
    assert one(receipts["expiration"])["days"] == "${var.batch_receipt_days}"
    assert default(module, "batch_receipt_days") == 15 > 14

    spill = rules["fanout-spill"]
    assert one(spill["filter"])["prefix"] == "${local.fanout_prefix}"
    assert module["locals"]["fanout_prefix"] == "_flussfs_fanout/"
    assert one(spill["expiration"])["days"] == 1


def test_bucket_policy_denies_requests_without_tls(module):
    """The bucket policy denies every action on the bucket and its objects without TLS."""
    deny = [s for s in statements(module, "bucket") if s.sid == "DenyInsecureTransport"]
    assert len(deny) == 1
    s = deny[0]
    assert s.effect == "Deny" and s.actions == ["s3:*"]
    assert sorted(patterns(s.resources, module)) == [BUCKET, f"{BUCKET}/*"]
    assert one(s.principals) == {"type": "*", "identifiers": ["*"]}
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
    assert one(s.principals) == {"type": "*", "identifiers": ["*"]}
    conditions = {(c["test"], c["variable"]): c["values"] for c in s.conditions}
    assert conditions == {("Null", "s3:if-none-match"): ["true"],
                          ("Bool", "s3:ObjectCreationOperation"): ["true"]}
    pats = patterns(s.resources, module)
    for root in TABLE_ROOTS:
        for name in IMMUTABLE:
            assert covered(pats, KEYS[name], root), (name, root)
        for name in HINTS:
            assert not covered(pats, KEYS[name], root), (name, root)
    assert covered(pats, REJECT, "")


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
    """The writer puts only log keys, batch receipts and rejects, creates tables only when
    allowed, reads and lists only under _flussfs/, and has no Delete action."""
    stmts = statements(module, "writer")
    for s in stmts:
        assert not any("Delete" in a for a in s.actions if a.startswith("s3")), s.sid
    puts = [s for s in stmts if "s3:PutObject" in s.actions]
    always = [p for s in puts if s.gate is None for p in patterns(s.resources, module)]
    gated = [s for s in puts if s.gate is not None and s.sid != "KeepRejects"]
    for root in TABLE_ROOTS:
        for name in WRITER_WRITES:
            assert covered(always, KEYS[name], root), (name, root)
        for name in set(KEYS) - set(WRITER_WRITES):
            assert not covered(always, KEYS[name], root), (name, root)
    assert not covered(always, REJECT, "")
    (rejects,) = [s for s in puts if s.sid == "KeepRejects"]
    assert rejects.gate == "${local.writer_enabled ? [1] : []}"
    assert rejects.resources == "${local.writer_rejects_arns}"
    # Only the writer function's own table's rejects: _flussfs_rejects/<table key>/*.
    assert module["locals"]["writer_rejects_arns"] == (
        '${local.writer_enabled ? ["${local.bucket_arn}/${local.rejects_prefix}${local.writer_table_key == '
        '"" ? "" : "${local.writer_table_key}/"}*"] : []}')
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
    assert patterns(one(lst.conditions)["values"], module) == [f"{r}*" for r in TABLE_ROOTS]
    (express,) = [s for s in stmts if "s3express:CreateSession" in s.actions]
    cond = one(express.conditions)
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
        assert one(extra.principals) == {"type": "AWS",
                                          "identifiers": f"${{var.{job}_extra_principal_arns}}"}
    (lam,) = statements(module, "lambda_trust")
    assert one(lam.principals) == {"type": "Service", "identifiers": ["lambda.amazonaws.com"]}
    (sch,) = statements(module, "scheduler_trust")
    assert one(sch.principals) == {"type": "Service", "identifiers": ["scheduler.amazonaws.com"]}
    assert one(sch.conditions)["variable"] == "aws:SourceAccount"
