//! The production systemd client (`abssd::systemd::Systemd`) against the fake
//! systemd on a private bus; and the fake's knobs over D-Bus, from Rust, from
//! `dbus-send`, and through the `fake-systemd` binary.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abssd::Error;
use abssd::systemd::{Systemd, UnitState, Units};
use abssd_tests::bus::Bus;
use abssd_tests::fake_systemd::HANG;
use abssd_tests::{FakeSystemd, Verb};

const A: &str = "abssctl-a.service";

/// A unit directory holding `abssctl-a.service`, and the fake reading it.
fn fake_with_unit_a() -> (tempfile::TempDir, FakeSystemd) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(A), "[Service]\nExecStart=/usr/bin/true\n").unwrap();
    let fake = FakeSystemd::start(Some(dir.path()));
    (dir, fake)
}

async fn connect(fake: &FakeSystemd) -> Systemd {
    Systemd::connect(Some(fake.address())).await.unwrap()
}

fn service_message(e: Error) -> String {
    match e {
        Error::Service(m) => m,
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[tokio::test]
async fn state_of_loaded_and_unloaded_units() {
    let (dir, fake) = fake_with_unit_a();
    fake.set_unit("abssctl-b.service", true, true);
    let sd = connect(&fake).await;

    let a = sd.state(A).await.unwrap();
    assert_eq!(
        a,
        UnitState {
            unit: A.into(),
            load_state: "loaded".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            unit_file_state: "disabled".into(),
        }
    );
    assert!(a.is_loaded() && !a.is_active() && !a.is_enabled());

    let b = sd.state("abssctl-b.service").await.unwrap();
    assert!(b.is_loaded() && b.is_active() && b.is_enabled());
    assert_eq!(b.sub_state, "running");

    let nginx = sd.state("nginx.service").await.unwrap();
    assert!(nginx.is_loaded() && nginx.is_active());

    let missing = sd.state("abssctl-missing.service").await.unwrap();
    assert_eq!(missing.load_state, "not-found");
    assert_eq!(missing.unit_file_state, "");
    assert!(!missing.is_loaded() && !missing.is_active());
    assert_eq!(fake.state("abssctl-missing.service"), None);

    // A file that appears later is seen at the next call, read uncached.
    fs::write(dir.path().join("abssctl-missing.service"), "").unwrap();
    assert!(
        sd.state("abssctl-missing.service")
            .await
            .unwrap()
            .is_loaded()
    );
    // Reading state is not a mutating call.
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn start_and_stop_wait_for_the_job_and_change_state() {
    let (_dir, fake) = fake_with_unit_a();
    let sd = connect(&fake).await;

    sd.start(A).await.unwrap();
    // The job had ended (state applied just before JobRemoved) when start returned.
    assert!(fake.state(A).unwrap().is_active());
    assert!(sd.state(A).await.unwrap().is_active());

    sd.stop(A).await.unwrap();
    assert_eq!(fake.state(A).unwrap().active_state, "inactive");
    assert!(!sd.state(A).await.unwrap().is_active());

    // Starting what runs and stopping what is stopped are no-ops that succeed.
    sd.stop(A).await.unwrap();
    assert_eq!(
        fake.calls(),
        [
            format!("StartUnit {A}"),
            format!("StopUnit {A}"),
            format!("StopUnit {A}")
        ]
    );
}

#[tokio::test]
async fn injected_start_failure_names_unit_and_result_until_cleared() {
    let (_dir, fake) = fake_with_unit_a();
    let sd = connect(&fake).await;
    fake.fail(A, Verb::Start, Some("failed"));

    for _ in 0..2 {
        let e = sd.start(A).await.unwrap_err();
        assert_eq!(e.kind(), abssd_proto::ErrorKind::Service);
        assert_eq!(
            service_message(e),
            format!("systemd could not start {A}: job result 'failed' (see journalctl -u {A})")
        );
    }
    let s = sd.state(A).await.unwrap();
    assert_eq!(
        (s.active_state.as_str(), s.sub_state.as_str()),
        ("failed", "failed")
    );
    assert!(!s.is_active());

    fake.fail(A, Verb::Start, None);
    sd.start(A).await.unwrap();
    assert!(sd.state(A).await.unwrap().is_active());
}

#[tokio::test]
async fn injected_stop_and_reload_failures() {
    let (_dir, fake) = fake_with_unit_a();
    fake.set_unit(A, true, true);
    let sd = connect(&fake).await;

    fake.fail(A, Verb::Stop, Some("timeout"));
    let m = service_message(sd.stop(A).await.unwrap_err());
    assert!(m.contains(&format!("could not stop {A}")), "{m}");
    assert!(m.contains("job result 'timeout'"), "{m}");
    assert!(
        sd.state(A).await.unwrap().is_active(),
        "a failed stop leaves it running"
    );

    fake.fail("nginx.service", Verb::Reload, Some("canceled"));
    let m = service_message(sd.reload("nginx.service").await.unwrap_err());
    assert!(
        m.contains("could not reload nginx.service: job result 'canceled'"),
        "{m}"
    );
    // Start was never made to fail.
    sd.start(A).await.unwrap();
}

#[tokio::test]
async fn unknown_unit_is_a_service_error_naming_it() {
    let fake = FakeSystemd::start(None);
    let sd = connect(&fake).await;
    for (e, verb) in [
        (sd.start("abssctl-nope.service").await, "start"),
        (sd.stop("abssctl-nope.service").await, "stop"),
    ] {
        let m = service_message(e.unwrap_err());
        assert!(
            m.starts_with(&format!("systemd could not {verb} abssctl-nope.service: ")),
            "{m}"
        );
        assert!(m.contains("org.freedesktop.systemd1.NoSuchUnit"), "{m}");
        assert!(m.contains(fake.address()), "{m}");
    }
}

#[tokio::test]
async fn daemon_reload_and_nginx_reload_are_recorded() {
    let fake = FakeSystemd::start(None);
    let sd = connect(&fake).await;
    sd.daemon_reload().await.unwrap();
    sd.reload("nginx.service").await.unwrap();
    assert_eq!(fake.calls(), ["Reload", "ReloadUnit nginx.service"]);
    fake.clear_calls();
    assert!(fake.calls().is_empty());

    // As in systemd, reloading an inactive unit is an `invalid` job.
    fake.set_unit("nginx.service", false, true);
    let m = service_message(sd.reload("nginx.service").await.unwrap_err());
    assert!(m.contains("job result 'invalid'"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_each_get_their_own_result() {
    const N: usize = 50;
    let fake = FakeSystemd::start(None);
    let units: Vec<String> = (0..N).map(|i| format!("abssctl-c{i}.service")).collect();
    for (i, u) in units.iter().enumerate() {
        fake.set_unit(u, false, true);
        if i % 3 == 0 {
            fake.fail(u, Verb::Start, Some("failed"));
        }
        if i % 5 == 0 {
            fake.fail(u, Verb::Stop, Some("dependency"));
        }
    }
    let sd = connect(&fake).await;

    let started = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for (i, u) in units.iter().cloned().enumerate() {
        let sd = sd.clone();
        jobs.spawn(async move { (i, sd.start(&u).await) });
    }
    for (i, result) in jobs.join_all().await {
        match result {
            Ok(()) => assert!(i % 3 != 0, "{} should have failed", units[i]),
            Err(e) => {
                assert_eq!(i % 3, 0, "{}: {e}", units[i]);
                let m = service_message(e);
                assert!(
                    m.contains(&format!("start {}: job result 'failed'", units[i])),
                    "{m}"
                );
            }
        }
    }

    let mut jobs = tokio::task::JoinSet::new();
    for (i, u) in units.iter().cloned().enumerate() {
        let sd = sd.clone();
        jobs.spawn(async move { (i, sd.stop(&u).await) });
    }
    for (i, result) in jobs.join_all().await {
        let m = result.err().map(service_message);
        if i % 5 == 0 {
            let m = m.unwrap_or_else(|| panic!("{} should have failed", units[i]));
            assert!(
                m.contains(&format!("stop {}: job result 'dependency'", units[i])),
                "{m}"
            );
        } else {
            assert_eq!(m, None, "{}", units[i]);
        }
    }
    assert_eq!(fake.calls().len(), 2 * N);
    eprintln!("{} jobs in {:?}", 2 * N, started.elapsed());
}

#[tokio::test]
async fn a_job_that_never_ends_times_out() {
    let (_dir, fake) = fake_with_unit_a();
    fake.set_unit(A, true, true);
    fake.fail(A, Verb::Stop, Some(HANG));
    let sd = connect(&fake)
        .await
        .with_job_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let m = service_message(sd.stop(A).await.unwrap_err());
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(
        m.starts_with(&format!(
            "timed out after 100ms waiting for systemd to stop {A} (job /org/freedesktop/systemd1/job/"
        )),
        "{m}"
    );
}

#[tokio::test]
async fn unreachable_bus_is_a_service_error_saying_where() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus").display());
    let m = service_message(Systemd::connect(Some(&address)).await.unwrap_err());
    assert!(
        m.starts_with(&format!("cannot reach systemd's D-Bus at {address}: ")),
        "{m}"
    );
    assert!(m.contains("No such file or directory"), "{m}");
    assert!(
        m.ends_with("is systemd running? point --bus / DBUS_SYSTEM_BUS_ADDRESS elsewhere"),
        "{m}"
    );

    let m = service_message(Systemd::connect(Some("not-an-address")).await.unwrap_err());
    assert!(m.contains("not-an-address"), "{m}");
    assert!(m.contains("not a valid D-Bus address"), "{m}");

    // A bus without systemd on it.
    let bus = Bus::start().unwrap();
    let m = service_message(Systemd::connect(Some(bus.address())).await.unwrap_err());
    assert!(
        m.starts_with("systemd (org.freedesktop.systemd1) does not answer on the D-Bus at "),
        "{m}"
    );
    assert!(m.contains(bus.address()), "{m}");
}

/// The test-only control interface, as a separate process would see it.
#[zbus::proxy(
    interface = "org.abssd.FakeSystemd",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/abssd/FakeSystemd"
)]
trait Control {
    fn set_unit(&self, name: &str, active: bool, enabled: bool) -> zbus::Result<()>;
    fn fail(&self, name: &str, verb: &str, result: &str) -> zbus::Result<()>;
    fn state(&self, name: &str) -> zbus::Result<(String, String, String, String)>;
    fn calls(&self) -> zbus::Result<Vec<String>>;
    fn clear_calls(&self) -> zbus::Result<()>;
}

#[tokio::test]
async fn knobs_over_dbus() {
    let fake = FakeSystemd::start(None);
    let conn = zbus::connection::Builder::address(fake.address())
        .build()
        .await
        .unwrap();
    let control = ControlProxy::new(&conn).await.unwrap();
    let sd = connect(&fake).await;

    control.set_unit(A, false, true).await.unwrap();
    assert!(sd.state(A).await.unwrap().is_enabled());
    control.fail(A, "start", "failed").await.unwrap();
    assert!(sd.start(A).await.is_err());
    control.fail(A, "start", "").await.unwrap();
    sd.start(A).await.unwrap();
    assert_eq!(
        control.state(A).await.unwrap(),
        (
            "loaded".into(),
            "active".into(),
            "running".into(),
            "enabled".into()
        )
    );
    assert_eq!(
        control.calls().await.unwrap(),
        [format!("StartUnit {A}"), format!("StartUnit {A}")]
    );
    control.clear_calls().await.unwrap();
    assert!(fake.calls().is_empty());

    let e = control.fail(A, "explode", "failed").await.unwrap_err();
    assert!(e.to_string().contains("unknown verb"), "{e}");
}

#[tokio::test]
async fn knobs_with_dbus_send() {
    let fake = FakeSystemd::start(None);
    let send = |args: &[&str]| {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={}", fake.address()))
            .args(["--print-reply", "--dest=org.freedesktop.systemd1"])
            .args(["/org/abssd/FakeSystemd"])
            .args(args)
            .output()
            .expect("run dbus-send (package dbus-bin)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    send(&[
        "org.abssd.FakeSystemd.SetUnit",
        "string:abssctl-a.service",
        "boolean:true",
        "boolean:false",
    ]);
    let s = fake.state(A).unwrap();
    assert!(s.is_active() && !s.is_enabled());
    send(&[
        "org.abssd.FakeSystemd.Fail",
        "string:abssctl-a.service",
        "string:stop",
        "string:failed",
    ]);
    let sd = connect(&fake).await;
    assert!(sd.stop(A).await.is_err());
    let calls = send(&["org.abssd.FakeSystemd.Calls"]);
    assert!(calls.contains("\"StopUnit abssctl-a.service\""), "{calls}");
}

#[tokio::test]
async fn the_fake_answers_the_rest_like_systemd() {
    let (_dir, fake) = fake_with_unit_a();
    let conn = zbus::connection::Builder::address(fake.address())
        .build()
        .await
        .unwrap();
    let call = |method: &'static str, body: Vec<String>| {
        let conn = conn.clone();
        async move {
            let manager = zbus::Proxy::new(
                &conn,
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
            )
            .await
            .unwrap();
            match body.len() {
                1 => manager.call_method(method, &(body[0].as_str(),)).await,
                _ => {
                    manager
                        .call_method(method, &(body[0].as_str(), body[1].as_str()))
                        .await
                }
            }
        }
    };
    let err_name = |r: zbus::Result<zbus::Message>| match r.unwrap_err() {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::FDO(e) => zbus::DBusError::name(&*e).to_string(),
        e => panic!("{e}"),
    };

    let reply = call("GetUnit", vec![A.into()]).await.unwrap();
    let path: zbus::OwnedObjectPath = reply.body().deserialize().unwrap();
    assert_eq!(
        path.as_str(),
        "/org/freedesktop/systemd1/unit/abssctl_2da_2eservice"
    );
    assert_eq!(
        err_name(call("GetUnit", vec!["nope.service".into()]).await),
        "org.freedesktop.systemd1.NoSuchUnit"
    );
    let reply = call("GetUnitFileState", vec![A.into()]).await.unwrap();
    assert_eq!(reply.body().deserialize::<String>().unwrap(), "disabled");
    assert_eq!(
        err_name(call("GetUnitFileState", vec!["nope.service".into()]).await),
        "org.freedesktop.DBus.Error.FileNotFound"
    );
    call("RestartUnit", vec![A.into(), "replace".into()])
        .await
        .unwrap();
    // RestartUnit's job ends a moment after the reply.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.state(A).unwrap().is_active() {
        assert!(Instant::now() < deadline, "restart never finished");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(fake.calls(), [format!("RestartUnit {A}")]);
}

#[tokio::test]
async fn the_binary_prints_the_address_and_stops_at_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(A), "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-systemd"))
        .arg("--unit-dir")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line.trim();
    assert!(address.starts_with("unix:path="), "{line:?}");

    let sd = Systemd::connect(Some(address)).await.unwrap();
    sd.start(A).await.unwrap();
    assert!(sd.state(A).await.unwrap().is_active());

    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "fake-systemd ignored end of input"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(status.success(), "{status}");
    // Its bus went with it.
    assert!(Systemd::connect(Some(address)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_bus_while_waiting_is_a_service_error() {
    let (_dir, fake) = fake_with_unit_a();
    fake.fail(A, Verb::Start, Some(HANG));
    let sd = connect(&fake).await;
    let start = tokio::spawn(async move { sd.start(A).await });
    // Wait until the job is queued, then take the bus away.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.calls().is_empty() {
        assert!(Instant::now() < deadline, "StartUnit never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The reply is on its way in microseconds; give it ample time to arrive so that
    // the wait for JobRemoved is what loses the bus (if not, the call itself does).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let address = fake.address().to_owned();
    tokio::task::spawn_blocking(move || drop(fake))
        .await
        .unwrap();
    let m = service_message(start.await.unwrap().unwrap_err());
    assert!(m.contains(&address), "{m}");
    assert!(
        m.starts_with(&format!(
            "lost the D-Bus connection to systemd at {address} while waiting for it to start {A}"
        )) || m.starts_with(&format!("systemd could not start {A}: ")),
        "{m}"
    );
}

#[tokio::test]
async fn timers_enable_disable_and_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("t@.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();
    fs::create_dir(dir.path().join("t@x.timer.d")).unwrap();
    fs::write(
        dir.path().join("t@x.timer.d/50-c.conf"),
        "[Timer]\nOnCalendar=\nOnCalendar=hourly\nOnCalendar=weekly\n",
    )
    .unwrap();
    let fake = FakeSystemd::start(Some(dir.path()));
    let sd = connect(&fake).await;

    // An instance loads from its template; the drop-in's reset and calendars apply.
    let t = sd.timer("t@x.timer").await.unwrap();
    assert!(t.unit.is_loaded() && !t.unit.is_enabled(), "{t:?}");
    assert_eq!(t.calendar, ["hourly", "weekly"]);
    assert_eq!((t.next_elapse_usec, t.last_trigger_usec), (0, 0));
    assert_eq!(sd.timer("t@y.timer").await.unwrap().calendar, ["daily"]);

    // The knob over D-Bus, as a shell script would set it.
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", fake.address()))
        .args(["--print-reply", "--dest=org.freedesktop.systemd1"])
        .args(["/org/abssd/FakeSystemd", "org.abssd.FakeSystemd.SetTimer"])
        .args(["string:t@x.timer", "uint64:5000000", "uint64:7000000"])
        .output()
        .expect("dbus-send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = sd.timer("t@x.timer").await.unwrap();
    assert_eq!(
        (t.next_elapse_usec, t.last_trigger_usec),
        (5_000_000, 7_000_000)
    );

    sd.enable("t@x.timer").await.unwrap();
    assert!(fake.state("t@x.timer").unwrap().is_enabled());
    assert!(sd.timer("t@x.timer").await.unwrap().unit.is_enabled());
    sd.disable("t@x.timer").await.unwrap();
    assert!(!fake.state("t@x.timer").unwrap().is_enabled());
    assert_eq!(
        fake.calls(),
        ["EnableUnitFiles t@x.timer", "DisableUnitFiles t@x.timer"]
    );

    // A service's Result: none without a unit file, then systemd's.
    assert_eq!(sd.service_result("t@x.service").await.unwrap(), None);
    fs::write(
        dir.path().join("t@.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    assert_eq!(
        sd.service_result("t@x.service").await.unwrap().as_deref(),
        Some("success")
    );
    fake.set_result("t@x.service", "exit-code");
    assert_eq!(
        sd.service_result("t@x.service").await.unwrap().as_deref(),
        Some("exit-code")
    );

    // No unit file: nothing to read, and enabling is systemd's error.
    let none = sd.timer("nope.timer").await.unwrap();
    assert!(!none.unit.is_loaded() && none.calendar.is_empty());
    let e = service_message(sd.enable("nope.timer").await.unwrap_err());
    assert!(
        e.contains("nope.timer") && e.contains("does not exist"),
        "{e}"
    );
}
