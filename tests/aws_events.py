"""Trigger events shaped as AWS Lambda delivers them (the SQS, Kinesis and EventBridge samples
of the Lambda developer guide), for handler tests."""
import base64
import json
import uuid

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:flussfs-events"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/flussfs-events"


def sqs_event(bodies: list, arn: str = QUEUE_ARN, ids: list | None = None) -> dict:
    """One SQS record per body (a dict is sent as JSON, a str as is)."""
    ids = ids or [str(uuid.uuid4()) for _ in bodies]
    return {"Records": [{
        "messageId": mid,
        "receiptHandle": "AQEB" + base64.b64encode(mid.encode()).decode(),
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                       "ApproximateFirstReceiveTimestamp": "1795000000001"},
        "messageAttributes": {}, "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
    } for mid, body in zip(ids, bodies)]}


def kinesis_event(payloads: list, first_seq: int = 49590338271490256608559692538361571095921575989136588898,
                  shard: str = "shardId-000000000006", arn: str = STREAM_ARN) -> dict:
    """One Kinesis record per payload (a dict is sent as JSON, bytes as is), sequence numbers
    rising from `first_seq`."""
    records = []
    for i, payload in enumerate(payloads):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        seq = str(first_seq + i)
        records.append({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"pk-{i % 3}",
                        "sequenceNumber": seq, "data": base64.b64encode(data).decode(),
                        "approximateArrivalTimestamp": 1795000000.123},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": f"{shard}:{seq}", "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/flussfs-writer",
            "awsRegion": "us-east-1", "eventSourceARN": arn})
    return {"Records": records}


def scheduled_event() -> dict:
    """An EventBridge rule's scheduled event."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-24T12:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/flussfs-compact"],
            "detail": {}}
