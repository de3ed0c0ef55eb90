# Scenario authz: a reader outside the operator group may list, not mutate
# (exit 3); a user without access to the socket is refused. Sourced by run.sh.

DESCRIPTION[authz]="readers may list, only operators mutate"

sc_authz() {
  ensure_daemon
  local n_before id
  expect_rc 0 "reader (not an operator): backup list" ctl e2e-reader backup list --json
  n_before=$(json "$OUT" "len(d['backups'])")
  id=$(json "$OUT" "d['backups'][0]['id'] if d['backups'] else ''")
  if [[ -z $id ]]; then
    expect_rc 0 "root: backup create alpha (for an id to restore)" ctl root backup create alpha --json
    id=$(json "$OUT" "d['result']['id']")
    n_before=$((n_before + 1))
  fi
  expect_rc 0 "reader: daemon status" ctl e2e-reader daemon status --json
  expect_eq "reader: caller_may_mutate" false "$(json "$OUT" "d['caller_may_mutate']")"
  expect_rc 3 "reader: backup create alpha is refused" ctl e2e-reader backup create alpha --json
  expect_eq "error kind" forbidden "$(json "$OUT" "d['error']['kind']")"
  expect_rc 3 "reader: backup restore is refused" ctl e2e-reader backup restore "$id" --yes --json
  expect_eq "error kind" forbidden "$(json "$OUT" "d['error']['kind']")"
  expect_rc 3 "reader: backup verify --all (writes the index) is refused" ctl e2e-reader backup verify --all --json
  expect_rc 0 "reader: backup list still works" ctl e2e-reader backup list --json
  expect_eq "number of backups (nothing was created)" "$n_before" "$(json "$OUT" "len(d['backups'])")"
  expect_rc 0 "operator: daemon status" ctl e2e-op daemon status --json
  expect_eq "operator: caller_may_mutate" true "$(json "$OUT" "d['caller_may_mutate']")"
  expect_rc 3 "a user without access to the socket: backup list is refused" ctl e2e-nobody backup list
}
