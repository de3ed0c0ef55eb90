# Scenario activation: abssd.socket starts abssd on the first call, abssd exits
# after daemon.idle_timeout, the next call starts it again. Sourced by run.sh.

DESCRIPTION[activation]="socket activation and idle exit"

sc_activation() {
  ns systemctl stop abssd.service abssd.socket >/dev/null 2>&1 || true
  ns systemctl reset-failed abssd.service abssd.socket >/dev/null 2>&1 || true
  ns systemctl enable --now abssd.socket
  expect_eq "abssd.socket" active "$(is_active abssd.socket)"
  expect_eq "abssd.service before the first call" inactive "$(is_active abssd.service)"

  expect_rc 0 "first call, through the socket (abssctl daemon status, 15 s at most)" \
    as e2e-op timeout 15 abssctl daemon status --json
  local pid1 main
  pid1=$(json "$OUT" "d['pid']")
  main=$(unit_prop abssd.service MainPID)
  expect_eq "abssd.service after the first call" active "$(is_active abssd.service)"
  expect_eq "the daemon that answered is abssd.service's main process (pid)" "$main" "$pid1"

  local t0=$SECONDS
  if ! wait_state abssd.service inactive $((IDLE_TIMEOUT + 15)); then
    fail "abssd.service still $(is_active abssd.service) $((IDLE_TIMEOUT + 15)) s after the call (daemon.idle_timeout: $IDLE_TIMEOUT)"
  fi
  ok "abssd.service inactive again after $((SECONDS - t0)) s idle (idle_timeout $IDLE_TIMEOUT s)"
  expect_eq "it exited cleanly (Result)" success "$(unit_prop abssd.service Result)"
  expect_eq "abssd.socket still listening" active "$(is_active abssd.socket)"

  expect_rc 0 "next call starts it again" as e2e-op timeout 15 abssctl daemon status --json
  local pid2
  pid2=$(json "$OUT" "d['pid']")
  [[ $pid2 != "$pid1" ]] || fail "the second call was answered by the same process ($pid1)"
  ok "answered by a new abssd (pid $pid2, was $pid1)"
}
