# Provision a fresh moto server for the tests: an IAM user allowed everything,
# an access key of it, and the bucket. Run with the venv's python by
# tests/src/s3.rs; prints {"access_key": ..., "secret_key": ...}.
#
# The server runs with INITIAL_NO_AUTH_ACTION_COUNT=3: exactly the three IAM
# calls below go unauthenticated (there is no key yet to sign them with); from
# the bucket on, every request must be signed with the key made here. The
# server's random generator is seeded first, so the same seed on a restarted
# server yields the same key (moto makes keys with that generator).
#
# usage: provision.py ENDPOINT BUCKET REGION SEED
import json
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, bucket, region, seed = sys.argv[1:]
config = Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})

with urllib.request.urlopen(
    urllib.request.Request(f"{endpoint}/moto-api/seed?a={int(seed)}", method="POST"), timeout=30
) as r:
    assert r.status == 200, f"seeding moto: HTTP {r.status}"


def client(service, key_id, secret):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=config,
    )


# The three unauthenticated requests (any key will do).
iam = client("iam", "unprovisioned", "unprovisioned")
iam.create_user(UserName="abssd-test")
iam.put_user_policy(
    UserName="abssd-test",
    PolicyName="everything",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    ),
)
key = iam.create_access_key(UserName="abssd-test")["AccessKey"]
key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]

# Signed from here on.
client("s3", key_id, secret).create_bucket(Bucket=bucket)

# Refuse to hand out a server that would accept anything: a wrong secret must
# be refused now (were the count off by one, it would not be).
try:
    client("s3", key_id, secret[:-1] + ("A" if secret[-1] != "A" else "B")).list_objects_v2(Bucket=bucket)
except ClientError as e:
    code = e.response.get("Error", {}).get("Code")
    if code != "SignatureDoesNotMatch":
        sys.exit(f"a wrong secret was refused with {code!r}, not SignatureDoesNotMatch")
else:
    sys.exit("moto accepted a wrong secret after provisioning: authentication is off")

print(json.dumps({"access_key": key_id, "secret_key": secret}))
