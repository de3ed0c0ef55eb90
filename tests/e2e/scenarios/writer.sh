# Scenario writer: an instance whose unit writes its SQLite database
# continuously, backed up with the default consistency (snapshot) and with
# --consistency stop, each restored with --dest and checked. Sourced by run.sh.

DESCRIPTION[writer]="backups of an instance whose unit writes SQLite, restored and checked"

# Instance charlie: a small sample instance whose unit runs writer.py on
# user-files/group-e2e.sqlite (the sync server's group database) instead of a
# web server. Returns once the writer has committed a few transactions.
writer_instance() {
  ns python3 /abssd-e2e/bin/sample-instance.py / charlie --size-mb 1 --force --quiet
  ns sh -c 'cat >/etc/systemd/system/abssctl-charlie.service' <<'EOF'
[Unit]
Description=Actual Budget sync server (charlie), e2e stand-in writing its group database

[Service]
Type=simple
ExecStart=/usr/bin/python3 /abssd-e2e/bin/writer.py run /srv/charlie/data/user-files/group-e2e.sqlite

[Install]
WantedBy=multi-user.target
EOF
  ns systemctl daemon-reload
  # Enabled, as on a host (an unreferenced unit's timestamps go when it stops).
  ns systemctl enable --now --quiet abssctl-charlie.service
  local i
  for ((i = 0; i < 100; i++)); do
    (($(writer_check /srv/charlie/data/user-files/group-e2e.sqlite last_id 2>/dev/null || echo 0) > 20)) && return 0
    sleep 0.1
  done
  fail "the writer of charlie does not commit" "$(ns journalctl -u abssctl-charlie.service -n 10 --no-pager -o cat 2>&1)"
}

# writer_check DB [FIELD]: writer.py check of DB (its JSON, or one field).
writer_check() {
  local out
  out=$(ns /usr/bin/python3 /abssd-e2e/bin/writer.py check "$1") || return 1
  if [[ -n ${2:-} ]]; then
    printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
  else
    printf '%s\n' "$out"
  fi
}

# The database of backup $1, restored with --dest into /srv/restores/$2 (the
# instance root: config.json and data/),
# passes integrity_check and the writer's invariant, and holds rows.
expect_restored_db_sound() {
  local id=$1 dest=/srv/restores/$2 check
  expect_rc 0 "operator: restore $id --dest $dest" ctl e2e-op backup restore "$id" --dest "$dest" --json
  check=$WORK/$2-check.json
  writer_check "$dest/data/user-files/group-e2e.sqlite" >"$check" 2>&1 ||
    fail "writer.py check of the restored database failed" "$(cat "$check")" \
      "$(ns ls -la "$dest/data/user-files" 2>&1)" "create warnings: $CREATE_WARNINGS"
  info "restored database: $(cat "$check")"
  expect_eq "restored database: PRAGMA integrity_check" ok "$(json "$check" "d['integrity']")"
  expect_eq "restored database: as many credit rows as debit rows" \
    "$(json "$check" "d['rows']")" "$(json "$check" "d['credit_rows']")"
  expect_eq "restored database: sum(credit) = sum(debit)" "$(json "$check" "d['debit']")" "$(json "$check" "d['credit']")"
  (($(json "$check" "d['rows']") > 0)) || fail "the restored database holds no rows"
  ok "the restored database holds $(json "$check" "d['rows']") row pairs"
}

sc_writer() {
  ensure_daemon
  trap 'ns systemctl disable --now abssctl-charlie.service >/dev/null 2>&1 || true' EXIT
  writer_instance
  local db=/srv/charlie/data/user-files/group-e2e.sqlite
  ok "abssctl-charlie.service writes $db ($(writer_check "$db" last_id) transactions so far)"

  # --consistency stop: the dry run says so; the text output shows the downtime.
  local start0 start1 id
  expect_rc 0 "operator: backup create charlie --consistency stop --dry-run" \
    ctl e2e-op backup create charlie --consistency stop --dry-run
  grep -q "the unit will be stopped" "$OUT" || fail "the dry run does not say the unit will be stopped" "$(cat "$OUT")"
  ok "the dry run says the unit will be stopped"
  start0=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  expect_rc 0 "operator: backup create charlie --consistency stop" \
    ctl e2e-op backup create charlie --consistency stop
  grep -q "^  downtime: " "$OUT" || fail "the text output shows no downtime" "$(cat "$OUT")"
  ok "$(grep '^  downtime: ' "$OUT" | sed 's/^ *//')"
  id=$(sed -n 's/^Created backup \([^ ]*\)$/\1/p' "$OUT")
  CREATE_WARNINGS=$(grep -i warning "$OUT" "$ERR" || true)
  [[ -n $id ]] || fail "no backup id in the output" "$(cat "$OUT")"
  local stopped
  start1=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  stopped=$(unit_prop abssctl-charlie.service ActiveExitTimestampMonotonic)
  expect_eq "abssctl-charlie.service" active "$(is_active abssctl-charlie.service)"
  ((stopped > start0 && start1 > stopped)) ||
    fail "the unit was not stopped and started again (start $start0 -> $start1, left active at $stopped)" \
      "$(ns systemctl show abssctl-charlie.service -p InactiveEnterTimestampMonotonic -p ActiveExitTimestampMonotonic -p InactiveExitTimestampMonotonic 2>&1)"
  ok "the unit was stopped for the backup and started again"
  expect_rc 0 "operator: backup show $id" ctl e2e-op backup show "$id" --json
  expect_eq "metadata.consistency" stop "$(json "$OUT" "d['backup']['metadata']['consistency']")"
  expect_restored_db_sound "$id" charlie-stop

  # The default consistency (snapshot), while the writer runs on. (Second:
  # it is another branch's work; stop mode is checked whatever becomes of it.)
  local before after
  start0=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  before=$(writer_check "$db" last_id)
  expect_rc 0 "operator: backup create charlie (default consistency)" ctl e2e-op backup create charlie --json
  id=$(json "$OUT" "d['result']['id']")
  CREATE_WARNINGS=$(json "$OUT" "d['result'].get('warnings', [])")
  expect_eq "capture" snapshot "$(json "$OUT" "d['result']['capture']")"
  expect_eq "downtime_ms (none without a stop)" null "$(json "$OUT" "d['result'].get('downtime_ms')")"
  start1=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  expect_eq "abssctl-charlie.service" active "$(is_active abssctl-charlie.service)"
  [[ $start1 == "$start0" ]] || fail "the unit was restarted by a snapshot backup"
  after=$(writer_check "$db" last_id)
  ((after > before)) || fail "the writer made no progress across the backup ($before -> $after)"
  ok "the unit ran on, never restarted; the writer went on ($before -> $after transactions)"
  expect_restored_db_sound "$id" charlie-snapshot
  expect_no_leftovers charlie
}
