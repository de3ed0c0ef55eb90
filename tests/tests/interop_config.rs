//! Configuration shared with the Python abssctl: `config.yml` as the tests and
//! the demo write it is one the Python tool loads (it refuses keys it does not
//! know), abssd reads its own settings from `abssd.yml` beside it, and the
//! Python tool's environment overrides move both tools alike.

use std::collections::BTreeMap;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, DaemonStatusMethod};
use abssd_proto::*;
use abssd_tests::peer::PythonPeer;
use abssd_tests::world::{World, no_pre, restore};
use abssd_tests::{Daemon, Sandbox, client};

/// What the tests and the demo write: the Python tool's keys in config.yml.
const SHARED: &str = "lock_timeout: 5\nbackups:\n  compression:\n    algorithm: gzip\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_loads_config_yml_and_abssd_runs_on_it_with_its_own_abssd_yml() {
    // World puts the private bus and the nginx check in abssd.yml.
    let w = World::with_config(&["alpha"], |sb| {
        sb.write_config(SHARED);
        "daemon:\n  max_batch: 4\n".to_owned()
    });
    let py = PythonPeer::new(&w.sb);
    let shown = py.json(&["config", "show", "--json"]);
    assert_eq!(shown["lock_timeout"], 5.0, "{shown}");
    assert_eq!(
        shown["backups"]["compression"]["algorithm"], "gzip",
        "{shown}"
    );

    // The same daemon settings in config.yml, as they were written before: the
    // Python tool refuses to run at all.
    let config = w.sb.path("etc/abssctl/config.yml");
    let abssd_yml = std::fs::read_to_string(w.sb.path("etc/abssctl/abssd.yml")).unwrap();
    std::fs::write(&config, format!("{SHARED}{abssd_yml}")).unwrap();
    let out = py.run(&["config", "show", "--json"]);
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && err.contains("Unknown configuration keys"),
        "{err}"
    );
    std::fs::write(&config, SHARED).unwrap();

    // abssd took its own settings from abssd.yml: a live restore drives the
    // fake systemd on the bus named there and the nginx check given there.
    let c = w.client().await;
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert_eq!(
        status.abssd_config_file,
        w.sb.path("etc/abssctl/abssd.yml").display().to_string()
    );
    assert!(
        status.config_warnings.is_empty(),
        "{:?}",
        status.config_warnings
    );
    let made = abssd_tests::backup(&c, "alpha").await;
    let site = w.cfg().site_file("alpha");
    std::fs::write(&site, "server { listen 127.0.0.1:8081; }\n").unwrap();
    let done = restore(&c, &no_pre(&made.id)).await.unwrap();
    assert!(done.result.expect("a result").nginx_reloaded);
    assert!(
        w.calls("StopUnit") >= 1 && w.calls("StartUnit") >= 1,
        "{:?}",
        w.jobs()
    );
    assert!(w.unit_active("alpha"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_backups_root_variable_moves_both_tools_to_the_same_backups_root() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let moved = sb.path("elsewhere/backups");
    let var = "ABSSCTL_BACKUPS__ROOT";
    let env = BTreeMap::from([(var.to_owned(), moved.display().to_string())]);
    let over = abssd::Overrides {
        prefix: Some(sb.prefix.clone()),
        ..Default::default()
    };
    let config = abssd::Config::load_with_env(&over, &env).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let daemon = Daemon::start_with(config);
    let c = client(&daemon.socket).await;
    let status = call::<DaemonStatusMethod>(&c, &NoParams {}).await.unwrap();
    assert_eq!(status.paths["backups_root"], moved.display().to_string());
    assert_eq!(
        status.path_origins["backups_root"],
        format!("environment {var}")
    );
    assert_eq!(
        status.path_origins["index"],
        format!("default under backups_root (environment {var})")
    );
    let made = call::<BackupCreate>(
        &c,
        &CreateParams {
            instance: "alpha".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .result
    .unwrap();
    assert!(
        std::path::Path::new(&made.archive).starts_with(&moved),
        "{}",
        made.archive
    );
    assert!(!sb.path("srv/backups").exists());

    // The Python tool given the same variable (and no index of its own) finds
    // the backup there, in the index beside it.
    let mut py = PythonPeer::new(&sb);
    py.remove_env("ABSSCTL_BACKUPS__INDEX");
    py.set_env(var, &moved.display().to_string());
    assert_eq!(py.backup_ids(), [made.id.as_str()]);
    let out = py.run(&["backup", "verify", &made.id]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An `ABSSCTL_*` value means to abssd what it means to the Python tool
/// (`yaml.safe_load` of the stripped text), for every YAML 1.1 form a person
/// may type; what JSON cannot hold (a date, `.inf`) stays its text.
#[test]
fn environment_values_mean_to_abssd_what_they_mean_to_pyyaml() {
    use abssd::config::env::coerce;
    use abssd_tests::peer::python_script;
    let values = [
        "/srv/backups",
        " 5 ",
        "-3",
        "+0",
        "017",
        "0o17",
        "0x1F",
        "-0x1F",
        "0b101",
        "1_000",
        "1:30",
        "190:20:30",
        "1:60",
        "1.5",
        "1.",
        ".5",
        "+.5",
        "-.5",
        "._5",
        "1_0.5",
        "1:30.5",
        "1.5e+3",
        "1e3",
        "1.0e3",
        "yes",
        "Off",
        "y",
        "n",
        "~",
        "null",
        "",
        "[1, 2]",
        "{level: 3}",
        "'017'",
        "- a",
        "NaN",
        "soon",
    ];
    const LOAD: &str = "import json, sys, yaml\n\
        print(json.dumps([yaml.safe_load(v.strip()) for v in sys.argv[1:]]))";
    let pyyaml: Vec<serde_json::Value> =
        serde_json::from_str(&python_script(LOAD, &values)).unwrap();
    for (raw, want) in values.iter().zip(pyyaml) {
        assert_eq!(coerce(raw), want, "{raw:?}");
    }
}
