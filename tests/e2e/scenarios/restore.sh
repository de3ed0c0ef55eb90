# Scenario restore: backup, change, live restore of a running instance: unit
# stopped and started again, data and site are the backup's, real nginx -t (a
# broken site elsewhere makes the restore fail and roll back). Sourced by run.sh.

DESCRIPTION[restore]="live restore of a running instance, real nginx -t"

sc_restore() {
  ensure_daemon
  [[ $(ns curl -fsS "http://127.0.0.1:$PORT_A/e2e.txt") == "original alpha" ]] ||
    fail "alpha does not serve its original e2e.txt"
  ok "abssctl-alpha.service serves 'original alpha'"

  expect_rc 0 "operator: backup create alpha" ctl e2e-op backup create alpha -m "e2e: before the change" --json
  local id archive
  id=$(json "$OUT" "d['result']['id']")
  archive=$(json "$OUT" "d['result']['archive']")
  ns sh -c "cd '$(dirname "$archive")' && sha256sum -c --quiet '$(basename "$archive").sha256'" ||
    fail "sha256sum -c does not accept $archive.sha256"
  ok "archive $archive and its .sha256 check out"

  # The change: data edited, a file added, the site edited.
  ns sh -c 'echo "changed alpha" >/srv/alpha/data/e2e.txt; echo added >/srv/alpha/data/added.txt;
            echo "# edited after the backup" >>/etc/nginx/sites-available/abssctl-alpha.conf'
  [[ $(ns curl -fsS "http://127.0.0.1:$PORT_A/e2e.txt") == "changed alpha" ]] || fail "the change is not served"
  ok "the changed data is served"

  # nginx -t is the real one on the real /etc/nginx: a broken site elsewhere
  # makes the restore fail, and it is rolled back.
  trap 'ns rm -f /etc/nginx/sites-enabled/zz-e2e-broken.conf' EXIT
  ns sh -c 'echo "this is not nginx syntax" >/etc/nginx/sites-enabled/zz-e2e-broken.conf'
  expect_rc 4 "restore with a broken nginx configuration fails (service error)" \
    ctl e2e-op backup restore "$id" --yes --instance alpha --no-pre-backup --json
  grep -q nginx "$OUT" "$ERR" || fail "the error does not mention nginx" "$(cat "$OUT" "$ERR")"
  ok "the error names nginx: $(json "$OUT" "d['error']['message']" 2>/dev/null | cut -c1-150)"
  ns rm /etc/nginx/sites-enabled/zz-e2e-broken.conf
  wait_http "$PORT_A" e2e.txt "changed alpha" || fail "after the rollback alpha does not serve the changed data"
  expect_eq "abssctl-alpha.service after the rollback" active "$(is_active abssctl-alpha.service)"
  expect_no_leftovers alpha

  local pid0 start0
  pid0=$(unit_prop abssctl-alpha.service MainPID)
  start0=$(unit_prop abssctl-alpha.service ExecMainStartTimestampMonotonic)
  expect_rc 0 "operator: live restore of $id (--yes)" \
    ctl e2e-op backup restore "$id" --yes --instance alpha --json
  cp "$OUT" "$WORK/restore-alpha.json"
  local pid1 start1 stopped
  pid1=$(unit_prop abssctl-alpha.service MainPID)
  start1=$(unit_prop abssctl-alpha.service ExecMainStartTimestampMonotonic)
  stopped=$(unit_prop abssctl-alpha.service InactiveEnterTimestampMonotonic)
  expect_eq "abssctl-alpha.service after the restore" active "$(is_active abssctl-alpha.service)"
  ((stopped > start0 && start1 > stopped)) ||
    fail "the unit was not stopped and started again (start $start0 -> $start1, last stop $stopped, monotonic µs)"
  ok "the unit was stopped during the restore and started again (pid $pid0 -> $pid1)"
  expect_eq "result: unit_running" true "$(json "$OUT" "d['result']['unit_running']")"
  wait_http "$PORT_A" e2e.txt "original alpha" || fail "alpha does not serve the backup's e2e.txt"
  ok "the unit serves the backup's data ('original alpha')"
  [[ $(ns curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_A/added.txt") == 404 ]] ||
    fail "added.txt, added after the backup, is still there"
  ok "added.txt (added after the backup) is gone"
  ns grep -q "edited after the backup" /etc/nginx/sites-available/abssctl-alpha.conf &&
    fail "the nginx site is not the backup's"
  ok "the nginx site is the backup's"
  expect_eq "result: nginx_reloaded (the site changed)" true "$(json "$OUT" "d['result']['nginx_reloaded']")"
  expect_eq "nginx.service" active "$(is_active nginx.service)"
  wait_http "$NGINX_A" e2e.txt "original alpha" || fail "nginx does not proxy the restored alpha"
  ok "nginx proxies the restored data"
  local pre
  pre=$(json "$OUT" "d['result']['pre_restore_backup']")
  [[ -n $pre && $pre != null ]] || fail "no pre-restore backup was taken"
  expect_rc 0 "backup show of the pre-restore backup" ctl e2e-op backup show "$pre" --json
  ns grep -q last_restored_at /var/lib/abssctl/registry/instances.yml ||
    fail "the registry entry has no last_restored_at"
  ok "registry: alpha has last_restored_at"
  expect_no_leftovers alpha
}
