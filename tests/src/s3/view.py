# One S3 call with boto3, for the tests' independent view of what the server
# holds. Run with the venv's python by tests/src/s3.rs, one process per call.
# The endpoint, bucket, region and key come from the environment (S3_ENDPOINT,
# S3_BUCKET, S3_REGION, S3_ACCESS_KEY, S3_SECRET_KEY), never the command line.
#
# Prints one JSON line: {"ok": RESULT} or {"error": {"code", "status",
# "message"}} for a refusal or a failed connection (exit 0 both); any other
# exit is a bug here.
#
# usage: view.py list PREFIX | get KEY FILE | put KEY FILE [if-none-match] |
#        head KEY | delete KEY | uploads | start-multipart KEY
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

bucket = os.environ["S3_BUCKET"]
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    region_name=os.environ["S3_REGION"],
    aws_access_key_id=os.environ["S3_ACCESS_KEY"],
    aws_secret_access_key=os.environ["S3_SECRET_KEY"],
    config=Config(
        # One attempt: a test that cuts a connection wants to see it fail.
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"},
        # Plain bodies (no aws-chunked framing with trailing checksums), so
        # what crosses the wire is the object's bytes.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    ),
)


def info(key, size, etag):
    return {"key": key, "size": size, "etag": etag.strip('"')}


def run(op, args):
    if op == "list":
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=args[0]):
            out += [info(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])]
        return out
    if op == "get":
        key, path = args
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        with open(path, "wb") as f:
            for chunk in body.iter_chunks(1 << 16):
                f.write(chunk)
        return os.path.getsize(path)
    if op == "put":
        key, path, *mode = args
        extra = {"IfNoneMatch": "*"} if mode == ["if-none-match"] else {}
        with open(path, "rb") as body:
            return s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)["ETag"].strip('"')
    if op == "head":
        try:
            h = s3.head_object(Bucket=bucket, Key=args[0])
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        return info(args[0], h["ContentLength"], h["ETag"])
    if op == "delete":
        s3.delete_object(Bucket=bucket, Key=args[0])
        return None
    if op == "uploads":
        out = []
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            out += [{"key": u["Key"], "upload_id": u["UploadId"]} for u in page.get("Uploads", [])]
        return out
    if op == "start-multipart":
        return s3.create_multipart_upload(Bucket=bucket, Key=args[0])["UploadId"]
    raise SystemExit(f"view.py: unknown operation {op!r}")


try:
    print(json.dumps({"ok": run(sys.argv[1], sys.argv[2:])}))
except ClientError as e:
    err = e.response.get("Error", {})
    print(json.dumps({"error": {
        "code": str(err.get("Code", "")),
        "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        "message": str(err.get("Message", e))[:500],
    }}))
except BotoCoreError as e:
    # No answer at all: refused, reset or closed connections.
    print(json.dumps({"error": {"code": type(e).__name__, "status": None, "message": str(e)[:500]}}))
