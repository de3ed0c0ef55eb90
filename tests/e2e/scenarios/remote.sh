# Scenario remote: off-host copies on the real systemd, under the shipped
# sandbox. An S3 server (moto, scripts/s3-server.sh) runs on the host's
# 127.0.0.1, which the booted system shares. A remote `off` is configured in
# abssd.yml with a root-only credentials file. Under abssd.service as shipped
# (IPAddressDeny=any) `remote test off` fails at its first request and leaves
# nothing in the bucket; with the documented drop-in remote-network.conf
# (installed by make install under /usr/share/doc/abssd/examples/) it passes,
# and a backup of alpha is pushed, its archive deleted here, pulled back
# (checked SHA-256) and verified. abssd.yml and the drop-in are put back as
# they were at the end. Sourced by run.sh.

DESCRIPTION[remote]="off-host copies: blocked by the shipped sandbox, working with remote-network.conf"

sc_remote() {
  local venv port endpoint keys access secret id archive moto dropin=/etc/systemd/system/abssd.service.d/remote-network.conf
  venv=${ABSSD_TEST_S3_SERVER:-$("$SRC/scripts/s3-server.sh")}
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  endpoint=http://127.0.0.1:$port
  INITIAL_NO_AUTH_ACTION_COUNT=3 setpriv --pdeathsig KILL -- \
    "$venv/bin/python" "$SRC/tests/src/s3/server.py" -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
  moto=$!
  ns cp /etc/abssctl/abssd.yml /etc/abssctl/abssd.yml.e2e-remote
  # shellcheck disable=SC2064 # the values of now
  trap "kill $moto 2>/dev/null; ns mv /etc/abssctl/abssd.yml.e2e-remote /etc/abssctl/abssd.yml; ns rm -f $dropin; ns systemctl daemon-reload; ns systemctl stop abssd.service" EXIT
  local i
  for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "$endpoint/moto-api/" && break
    kill -0 "$moto" 2>/dev/null || fail "moto exited during start-up" "$(tail -n 20 "$WORK/moto.log")"
    sleep 0.1
  done
  keys=$("$venv/bin/python" "$SRC/tests/src/s3/provision.py" "$endpoint" abssd-e2e us-east-1 1)
  access=$(json <(printf '%s' "$keys") "d['access_key']")
  secret=$(json <(printf '%s' "$keys") "d['secret_key']")
  objects() { "$venv/bin/python" -c '
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])
for o in s3.list_objects_v2(Bucket="abssd-e2e").get("Contents", []):
    print(o["Key"])' "$endpoint" "$access" "$secret"; }

  ns install -d -m 0700 /etc/abssctl/remotes
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$access" "$secret" |
    ns sh -c 'umask 077; cat >/etc/abssctl/remotes/off.cred'
  ns sh -c "printf '%s\n' 'remotes:' '  off:' '    endpoint: $endpoint' '    bucket: abssd-e2e' \
    '    prefix: e2e' '    credentials_file: /etc/abssctl/remotes/off.cred' >>/etc/abssctl/abssd.yml"
  ns systemctl stop abssd.service 2>/dev/null
  ensure_daemon
  expect_rc 0 "reader: remote list (where off is, never its secret)" ctl e2e-reader remote list --json
  expect_eq "the remote listed" off "$(json "$OUT" "d['remotes'][0]['name']")"
  grep -q -- "$secret" "$OUT" && fail "remote list printed the secret"

  expect_rc 3 "operator: remote test off under the shipped sandbox (IPAddressDeny=any)" \
    ctl e2e-op remote test off --json
  info "failed: $(json "$OUT" "'; '.join(s['message'] for s in d['steps'] if s['status'] == 'failed')")"
  expect_eq "the failed step says the endpoint cannot be reached, and which drop-in opens it" true \
    "$(json "$OUT" "any(s['status'] == 'failed' and 'cannot reach' in s['message'] and 'remote-network.conf' in s['message'] for s in d['steps'])")"
  expect_eq "objects in the bucket" "" "$(objects)"

  ns install -D -m 0644 /usr/share/doc/abssd/examples/remote-network.conf "$dropin"
  ns systemctl daemon-reload
  ns systemctl stop abssd.service 2>/dev/null
  ensure_daemon
  expect_rc 0 "operator: remote test off with remote-network.conf" ctl e2e-op remote test off --json
  expect_eq "every step passed" true "$(json "$OUT" "d['ok']")"
  expect_eq "the probe is gone" "" "$(objects)"

  expect_rc 0 "operator: backup create alpha" ctl e2e-op backup create alpha --json
  id=$(json "$OUT" "d['result']['id']")
  archive=$(json "$OUT" "d['result']['archive']")
  expect_rc 0 "operator: backup push $id" ctl e2e-op backup push "$id" --json
  expect_eq "objects pushed (archive, sidecar, entry)" 3 "$(objects | grep -c "^e2e/alpha/$id")"
  ns rm -f "$archive"
  expect_rc 0 "operator: backup pull $id (the archive was deleted here)" ctl e2e-op backup pull "$id" --json
  ns test -f "$archive" || fail "the pull left no archive at $archive"
  expect_rc 0 "operator: backup verify $id (the pulled archive)" ctl e2e-op backup verify "$id" --json
}
