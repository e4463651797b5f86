"""The Terraform module's functions and wiring, read from the .tf files: every file parses and
pins AWS provider 5.x, the compactor and worker functions, the compaction schedule, the alarms,
the writer's triggers, the example's call of the module, and a checkov run over terraform/
(terraform/README.md, "How the tests check it"; the security properties are in
test_terraform_security.py).

Invariants: nothing here calls AWS or the network (checkov runs with its downloads and update
check off).
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import hcl2
import pytest

from terraform_hcl import EXAMPLE, MODULE, ROOT, TF, default, load, norm, one

README = TF / "README.md"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def module() -> dict:
    return load(MODULE)


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
        block = norm(hcl2.load(fh))["terraform"][0]
    aws = one(block["required_providers"])["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert aws["version"].startswith("~> 5.")


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
        assert one(fn["tracing_config"])["mode"] == "Active"
        assert fn["memory_size"] == "${var.compactor_memory_mb}"
        assert fn["timeout"] == "${var.compactor_timeout_s}"
        assert "aws_s3_object.lambda_zip[0].key" in fn["s3_key"]
        assert "filebase64sha256(var.lambda_zip_path)" in fn["source_code_hash"]
        assert "var.image_uri" in fn["image_uri"]
    assert c["reserved_concurrent_executions"] == 1
    assert one(c["dead_letter_config"])["target_arn"] == "${aws_sqs_queue.dlq.arn}"
    assert one(c["logging_config"])["log_group"] == "${aws_cloudwatch_log_group.compactor.name}"
    assert default(module, "compactor_memory_mb") == 3008
    assert default(module, "compactor_timeout_s") == 900
    assert default(module, "package_type") == "Zip"
    env = module["locals"]["compactor_environment"]
    for name in ("FLUSSFS_TABLES", "FLUSSFS_WORKER_FUNCTION", "FLUSSFS_FANOUT_SPILL_URI",
                 "FLUSSFS_FANOUT_CONCURRENCY", "FLUSSFS_GLUE_DATABASE"):
        assert name in env, name
    # The compactor has as many invocations in flight as the worker may run, never more.
    assert "FLUSSFS_FANOUT_CONCURRENCY = tostring(var.fanout_concurrency_max)" in env
    assert w["reserved_concurrent_executions"] == "${var.fanout_concurrency_max}"
    for group in module["resource"]["aws_cloudwatch_log_group"].values():
        assert group["retention_in_days"] == "${var.log_retention_days}"


def test_schedule_retries_and_dead_letters(module):
    """EventBridge Scheduler invokes the compactor with the table list, a retry policy and the
    encrypted DLQ."""
    s = module["resource"]["aws_scheduler_schedule"]["compaction"]
    assert s["schedule_expression"] == "${var.compaction_schedule}"
    assert default(module, "compaction_schedule") == "rate(5 minutes)"
    target = one(s["target"])
    assert target["arn"] == "${aws_lambda_function.compactor.arn}"
    assert target["role_arn"] == "${aws_iam_role.scheduler.arn}"
    assert "tables" in target["input"]
    assert one(target["retry_policy"])["maximum_retry_attempts"] >= 1
    assert one(target["dead_letter_config"])["arn"] == "${aws_sqs_queue.dlq.arn}"
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


# ---- The example -------------------------------------------------------------------------

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


# ---- The writer ---------------------------------------------------------------------------

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


def test_writer_keeps_rejects_outside_the_table(module):
    """The writer function keeps records it cannot write under s3://<bucket>/_flussfs_rejects/
    <table prefix> (FLUSSFS_REJECTS_URI), outside every table, so none holds up a shard."""
    writer = module["resource"]["aws_lambda_function"]["writer"]
    variables = one(writer["environment"])["variables"]
    assert variables["FLUSSFS_TABLE"] == "${var.writer_table_uri}"
    assert variables["FLUSSFS_REJECTS_URI"] == "${local.writer_rejects_uri}"
    assert module["locals"]["rejects_prefix"] == "_flussfs_rejects/"
    uri = module["locals"]["writer_rejects_uri"]
    assert "s3://${var.bucket_name}/${local.rejects_prefix}${local.writer_table_key}" in uri
    assert 'trimprefix(var.writer_table_uri, "s3://${var.bucket_name}")' in module["locals"]["writer_table_key"]
    # ... which holds only for a table in this bucket: s3://data-2/t under bucket "data" fails.
    condition = one(one(writer["lifecycle"])["precondition"])["condition"]
    assert 'startswith(var.writer_table_uri, "s3://${var.bucket_name}/")' in condition
    assert 'var.writer_table_uri == "s3://${var.bucket_name}"' in condition


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
