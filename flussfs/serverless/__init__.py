"""AWS Lambda handlers: a writer fed by SQS or Kinesis triggers (`writer.handler`) and a reader
example (`reader.handler`). The compactor's handlers live in `compactor.handler`.

Configuration comes from the function's environment: `FLUSSFS_TABLE` (the table URI) and
optionally `FLUSSFS_STORAGE_OPTIONS` (JSON fsspec options; in AWS the role's credentials are
used and it is not needed).
"""
