# Scenario schedule: `abssctl schedule enable|show|disable` on the real
# systemd: the shipped timers are installed disabled; enabling writes the
# calendar drop-in and enables and starts the timer, which systemd reads back;
# a reader may show but not enable; a bad calendar changes nothing; the backup
# service runs as an operator in its sandbox (its ExecStart swapped, for this
# check, for `abssctl daemon status`); a calendar a few seconds ahead
# (schedule_soon) makes the timer fire. Sourced by run.sh.

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

  # The timer fires on its own (schedule_soon, lib.sh): a calendar 5 s ahead.
  # The job it starts is `backup run`, whose outcome is not this scenario's.
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
