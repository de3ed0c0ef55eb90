# Scenarios stop and kill: `systemctl stop abssd` / SIGKILL in the middle of a
# restore of a big instance; after the next activation the instance is all old
# or all new, its unit runs, nothing is left over. Sourced by run.sh.

DESCRIPTION[stop]="systemctl stop abssd during a ${BIG_MB} MB restore"
DESCRIPTION[kill]="SIGKILL to abssd during a ${BIG_MB} MB restore"

# The stop and kill scenarios: restore bravo ($BIG_MB MB) and interrupt it once
# its staging directory exists. $1: stop | kill.
interrupted_restore() {
  local how=$1
  ensure_daemon
  local h_backup h_old id
  h_backup=$(treehash /srv/bravo)
  # The comparison below is byte for byte with the live tree, and bravo's unit
  # writes no SQLite: a plain copy. (A snapshot's database differs from the
  # live file in its header's change counter and SQLite version; the writer
  # scenario checks snapshots by their content.)
  expect_rc 0 "operator: backup create bravo" ctl e2e-op backup create bravo --consistency none --json
  id=$(json "$OUT" "d['result']['id']")
  info "backup $id: $(json "$OUT" "d['result']['size_bytes']") bytes"
  ns sh -c "echo 'changed bravo ($how)' >/srv/bravo/data/e2e.txt; echo '$how' >>/srv/bravo/config.json;
            rm -f /srv/bravo/data/server-files/account.sqlite; mkdir -p /srv/bravo/data/new-dir; echo x >/srv/bravo/data/new-dir/x"
  h_old=$(treehash /srv/bravo)
  [[ $h_old != "$h_backup" ]] || fail "the change did not change the tree"
  wait_http "$PORT_B" e2e.txt "changed bravo ($how)" || fail "bravo does not serve the change"

  local t0=$SECONDS
  (
    trap - ERR
    ctl e2e-op backup restore "$id" --yes --instance bravo --json
  ) >"$WORK/$how-client.out" 2>"$WORK/$how-client.err" &
  local client=$!
  # shellcheck disable=SC2064 # the pid is meant to be expanded now
  trap "kill -KILL $client 2>/dev/null || true" EXIT
  local i seen=''
  for ((i = 0; i < 1200; i++)); do
    if [[ -n $(ns find /srv -maxdepth 1 -name '.bravo.restore-*' -print -quit) ]]; then
      seen=1
      break
    fi
    kill -0 "$client" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n $seen ]] || fail "the restore ended before it could be interrupted (make E2E_BIG_MB larger)" "$(cat "$WORK/$how-client.err")"
  ok "restore running: staging directory appeared after $((SECONDS - t0)) s"

  local t1=$SECONDS result
  if [[ $how == stop ]]; then
    ns timeout 200 systemctl stop abssd.service
    result=$(unit_prop abssd.service Result)
    ok "systemctl stop abssd.service returned after $((SECONDS - t1)) s (Result=$result)"
  else
    ns systemctl kill --signal=SIGKILL abssd.service
    ok "abssd.service killed with SIGKILL"
  fi
  local rc=0
  for ((i = 0; i < 600; i++)); do
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$client" 2>/dev/null; then
    kill -KILL "$client" 2>/dev/null || true
    info "the client was still waiting 60 s after the daemon went away (killed)"
  else
    wait "$client" || rc=$?
    info "the client exited $rc: $(json "$WORK/$how-client.out" "d.get('error', {}).get('message', 'finished')" 2>/dev/null | cut -c1-220)"
  fi
  local op
  op=$(grep -o 'op watch [0-9a-f-]*' "$WORK/$how-client.out" | awk '{print $3}' | head -n 1) || true

  next_activation
  if [[ $how == kill ]]; then
    local recovered
    recovered=$(json "$WORK/status-after.json" "[o.get('command') for o in d.get('recovered', [])]")
    info "daemon status: recovered $recovered"
  fi
  local h_now state
  h_now=$(treehash /srv/bravo)
  if [[ $h_now == "$h_backup" ]]; then
    state="all new (the backup's)"
  elif [[ $h_now == "$h_old" ]]; then
    state="all old (rolled back)"
  else
    treehash /srv/bravo --list >"$WORK/$how-now.list"
    fail "the instance is neither the old nor the restored tree" "$(head -c 600 "$WORK/$how-now.list")"
  fi
  ok "instance bravo is $state"
  expect_rc 0 "operator: backup show $id" ctl e2e-op backup show "$id" --json
  local restored
  restored=$(json "$OUT" "d['backup'].get('last_restored_at') or ''")
  if [[ $state == all\ new* ]]; then
    [[ -n $restored ]] || fail "the data is restored but the index entry of $id has no last_restored_at"
    ok "the index records the restore (last_restored_at $restored)"
  else
    [[ -z $restored ]] || fail "the data was rolled back but the index entry of $id says restored at $restored"
    ok "the index does not record a restore"
  fi
  wait_state abssctl-bravo.service active 15 || fail "abssctl-bravo.service is $(is_active abssctl-bravo.service)"
  ok "abssctl-bravo.service is active"
  local want="original bravo"
  [[ $state == all\ old* ]] && want="changed bravo ($how)"
  wait_http "$PORT_B" e2e.txt "$want" || fail "bravo does not serve '$want'"
  ok "it serves '$want'"
  expect_no_leftovers bravo
  expect_rc 0 "operator: backup list --instance bravo" ctl e2e-op backup list --instance bravo --json
  if [[ -n $op ]]; then
    # What the client advised; informational.
    run ctl e2e-op op watch "$op" --json
    info "as the client advised, abssctl op watch $op: exit $RC$( ((RC == 0)) || printf ': %s' "$(json "$OUT" "d['error']['message']" 2>/dev/null | cut -c1-160)")"
  fi
}

sc_stop() { interrupted_restore stop; }
sc_kill() { interrupted_restore kill; }
