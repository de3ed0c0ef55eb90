//! The Python abssctl itself (tests/src/peer.rs) and abssd on one prefix: each
//! reads what the other wrote.

use abssd_proto::methods::BackupCreate;
use abssd_proto::methods::call::call;
use abssd_proto::*;
use abssd_tests::peer::PythonPeer;
use abssd_tests::{Daemon, Sandbox, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lists_shows_and_verifies_an_abssd_backup() {
    let sb = Sandbox::new();
    sb.add_instance("alpha");
    let daemon = Daemon::start(&sb);
    let c = client(&daemon.socket).await;
    let params = CreateParams {
        instance: "alpha".into(),
        ..Default::default()
    };
    let r = call::<BackupCreate>(&c, &params)
        .await
        .unwrap()
        .result
        .unwrap();

    let py = PythonPeer::new(&sb);
    let listed = py.json(&["backup", "list", "--json"]);
    let ids: Vec<&str> = listed["backups"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, [r.id.as_str()], "{listed}");

    let out = py.run(&["backup", "verify", &r.id]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
