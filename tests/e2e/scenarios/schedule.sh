# Scenario schedule: `abssctl schedule enable|show|disable` on the real
# systemd: the shipped timers are installed disabled; enabling writes the
# calendar drop-in and enables and starts the timer, which systemd reads back;
# a reader may show but not enable; a bad calendar changes nothing; the backup
# service runs as an operator in its sandbox (its ExecStart swapped, for this
# check, for `abssctl daemon status`); a calendar a few seconds ahead
# (schedule_soon) makes the timer fire, and its service runs the backup job
# through socket activation: with alpha's backups dated long ago, doctor says
# stale before, and after the job a new backup (label job) is there, the
# job's prune (keep_last 2 in the e2e abssd.yml) removed older ones, and
# doctor's backups.age and job.last are green. Sourced by run.sh.

DESCRIPTION[schedule]="timers: schedule enable/show/disable, the service's identity"

sc_schedule() {
  ensure_daemon
  local timer=abssctl-backup@alpha.timer
  local dropin=/etc/systemd/system/$timer.d/50-abssctl-calendar.conf
  expect_eq "$timer as installed (UnitFileState)" disabled "$(unit_prop "$timer" UnitFileState)"
  expect_eq "abssctl-backup-all.timer as installed" disabled "$(unit_prop abssctl-backup-all.timer UnitFileState)"

  expect_rc 3 "reader: schedule enable alpha is refused" ctl e2e-reader schedule enable alpha --json
  expect_eq "error kind" forbidden "$(json "$OUT" "d['error']['kind']")"
  expect_rc 2 "operator: a bad calendar is refused" \
    ctl e2e-op schedule enable alpha --calendar 'Mon..Fri 25:00' --json
  ns test ! -e "$dropin" || fail "a refused calendar left $dropin"
  expect_eq "$timer after the refusals" disabled "$(unit_prop "$timer" UnitFileState)"

  expect_rc 0 "operator: schedule enable alpha --calendar 'Mon..Fri 02:30'" \
    ctl e2e-op schedule enable alpha --calendar 'Mon..Fri 02:30' --json
  expect_eq "normalized by systemd" "Mon..Fri *-*-* 02:30:00" "$(json "$OUT" "d['result']['normalized']")"
  expect_eq "drop-in's last line" "OnCalendar=Mon..Fri 02:30" "$(ns tail -n 1 "$dropin")"
  expect_eq "$timer enabled" enabled "$(unit_prop "$timer" UnitFileState)"
  expect_eq "$timer active" active "$(is_active "$timer")"
  local cal
  cal=$(unit_prop "$timer" TimersCalendar)
  [[ $cal == *"Mon..Fri *-*-* 02:30:00"* && $cal != *"00:00:00"* ]] ||
    fail "systemd's TimersCalendar is '$cal': not the drop-in's calendar alone"
  ok "systemd runs it on the drop-in's calendar only: $cal"

  expect_rc 0 "reader: schedule show alpha" ctl e2e-reader schedule show alpha --json
  expect_eq "show: enabled" true "$(json "$OUT" "d['timers'][0]['enabled']")"
  expect_eq "show: calendar" '["Mon..Fri *-*-* 02:30:00"]' "$(json "$OUT" "d['timers'][0]['calendar']")"
  local next
  next=$(json "$OUT" "d['timers'][0].get('next_run') or ''")
  [[ $next =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] || fail "show: next_run is '$next'"
  ok "show: next run $next"

  # Who the backup service runs as: its ExecStart swapped for daemon status,
  # through the socket, in the unit's own sandbox.
  local svc=abssctl-backup@alpha.service
  ns mkdir -p "/run/systemd/system/$svc.d"
  printf '[Service]\nExecStart=\nExecStart=/usr/bin/abssctl daemon status --json\nStandardOutput=file:/run/e2e-identity.json\n' |
    ns sh -c "cat >'/run/systemd/system/$svc.d/90-e2e-identity.conf'"
  ns systemctl daemon-reload
  expect_rc 0 "systemctl start $svc (as changed: daemon status)" ns timeout 60 systemctl start "$svc"
  ns cat /run/e2e-identity.json >"$WORK/identity.json"
  expect_eq "the service may mutate (caller_may_mutate)" true "$(json "$WORK/identity.json" "d['caller_may_mutate']")"
  expect_eq "$svc Result" success "$(unit_prop "$svc" Result)"
  expect_eq "$svc ran as" abssctl-backup "$(unit_prop "$svc" User)"
  info "$svc: $(ns systemd-analyze security --no-pager "$svc" 2>/dev/null | tail -n 1 | sed 's/^→ //')"
  ns rm -rf "/run/systemd/system/$svc.d" /run/e2e-identity.json
  ns systemctl daemon-reload

  # alpha's backups (three more, whatever earlier scenarios left) dated long
  # ago: doctor calls it stale.
  for i in 1 2 3; do
    expect_rc 0 "operator: backup create alpha ($i of 3)" ctl e2e-op backup create alpha --json
  done
  expect_rc 0 "daemon status (where the index is)" ctl root daemon status --json
  local index
  index=$(json "$OUT" "d['paths']['index']")
  ns /usr/bin/python3 -c 'import json, sys
p = sys.argv[1]
d = json.load(open(p))
for e in d["backups"]:
    if e["instance"] == "alpha":
        e["created_at"] = "2020-01-01T00:00:00Z"
json.dump(d, open(p, "w"), indent=2)' "$index"
  local count='import json, sys; print(sum(e["instance"] == "alpha" and e["status"] == sys.argv[2] for e in json.load(open(sys.argv[1]))["backups"]))'
  local available removed
  available=$(ns /usr/bin/python3 -c "$count" "$index" available)
  removed=$(ns /usr/bin/python3 -c "$count" "$index" removed)
  # Other checks (leftovers, drift) are other scenarios' business: this one
  # reads only its own.
  ctl e2e-reader doctor -i alpha --json >"$WORK/doctor.json" || true
  expect_eq "reader: doctor -i alpha: backups.age (its backups are old)" red \
    "$(json "$WORK/doctor.json" "[r['status'] for r in d['results'] if r['id'] == 'backups.age'][0]")"

  # The timer fires on its own (schedule_soon, lib.sh): a calendar 5 s ahead,
  # and its service runs the backup job through socket activation.
  expect_eq "$timer never triggered yet" 0 "$(unit_prop "$timer" LastTriggerUSecMonotonic)"
  schedule_soon alpha 5
  local i
  for ((i = 0; i < 300; i++)); do
    [[ $(unit_prop "$timer" LastTriggerUSecMonotonic) != 0 ]] && break
    sleep 0.1
  done
  [[ $(unit_prop "$timer" LastTriggerUSecMonotonic) != 0 ]] ||
    fail "$timer did not fire within 30 s of its calendar '$SCHEDULED_AT'"
  ok "$timer fired (calendar $SCHEDULED_AT)"
  for ((i = 0; i < 1200; i++)); do
    [[ $(unit_prop "$svc" ActiveState) != activ* ]] && break
    sleep 0.1
  done
  expect_eq "$svc ran the job to its end (Result)" success "$(unit_prop "$svc" Result)"
  expect_rc 0 "reader: backup list -i alpha" ctl e2e-reader backup list -i alpha --json
  local newest
  newest=$(json "$OUT" "sorted([b for b in d['backups'] if b['status'] == 'available'], key=lambda b: b['created_at'])[-1]['id']")
  expect_eq "the job's backup is the newest, labelled job" '["job"]' \
    "$(json "$OUT" "[b['metadata']['labels'] for b in d['backups'] if b['id'] == '$newest'][0]")"
  local removed_now
  removed_now=$(ns /usr/bin/python3 -c "$count" "$index" removed)
  (( removed_now > removed )) || fail "the job's prune (keep_last 2) removed nothing of $available"
  ok "the job's prune removed $((removed_now - removed)) of alpha's $available older backups (keep_last 2)"
  ctl e2e-reader doctor -i alpha --json >"$WORK/doctor.json" || true
  local check
  for check in backups.age job.last; do
    expect_eq "reader: doctor -i alpha after the job: $check" green \
      "$(json "$WORK/doctor.json" "[r['status'] for r in d['results'] if r['id'] == '$check'][0]")"
  done
  expect_rc 0 "schedule show alpha" ctl e2e-op schedule show alpha --json
  local last
  last=$(json "$OUT" "d['timers'][0].get('last_run') or ''")
  [[ -n $last ]] || fail "show: no last_run after the timer fired"
  ok "show: last run $last, last result $(json "$OUT" "d['timers'][0].get('last_result')")"
  unschedule alpha

  expect_rc 0 "operator: schedule enable alpha (again)" ctl e2e-op schedule enable alpha --json
  expect_rc 0 "operator: schedule disable alpha" ctl e2e-op schedule disable alpha --json
  expect_eq "$timer disabled" disabled "$(unit_prop "$timer" UnitFileState)"
  expect_eq "$timer stopped" inactive "$(is_active "$timer")"
  ns test ! -e "$dropin" || fail "disable left $dropin"
  ok "the drop-in is gone"
}
