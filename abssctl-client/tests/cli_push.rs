//! `abssctl backup push` against the real abssd and a real S3 server (moto):
//! the table and `--json` document of a push, `already` the second time,
//! and the exit codes of refused credentials (3, the summary in the error)
//! and of a remote that is not configured (2).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use abssd_tests::s3::S3Server;
use abssd_tests::{Daemon, Sandbox};

use crate::common::{assert_exit, json_doc, text};

/// Instance `alpha`, remotes `off` (its credentials) and `bad` (a wrong
/// secret) on one server, and a daemon (declared first: it stops before the
/// sandbox goes away).
struct Host {
    daemon: Daemon,
    sandbox: Sandbox,
    s3: S3Server,
}

impl Host {
    fn new() -> Host {
        let s3 = S3Server::start();
        let sandbox = Sandbox::new();
        sandbox.add_instance("alpha");
        let mut yaml = String::from("remotes:\n");
        for (name, secret) in [("off", s3.secret_key()), ("bad", "not-the-secret")] {
            let cred = sandbox.path(&format!("etc/abssctl/{name}.cred"));
            std::fs::create_dir_all(cred.parent().unwrap()).unwrap();
            std::fs::write(
                &cred,
                format!(
                    "aws_access_key_id = {}\naws_secret_access_key = {secret}\n",
                    s3.access_key()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
            yaml.push_str(&format!(
                "  {name}:\n    endpoint: {}\n    bucket: {}\n    path_style: true\n    credentials_file: {}\n",
                s3.endpoint(),
                s3.bucket(),
                serde_json::json!(cred)
            ));
        }
        sandbox.write_abssd_config(&yaml);
        let daemon = Daemon::start(&sandbox);
        Host {
            daemon,
            sandbox,
            s3,
        }
    }

    fn abssctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_abssctl"))
            .args(args)
            .env("ABSSD_SOCKET", &self.daemon.socket)
            .output()
            .expect("abssctl runs")
    }
}

#[test]
fn push_prints_its_table_then_already_and_exits_by_the_failures_kind() {
    let host = Host::new();
    let made = host.abssctl(&["--json", "backup", "create", "alpha"]);
    assert_exit(&made, 0);
    let id = json_doc(&made)["result"]["id"].as_str().unwrap().to_owned();
    let index = std::fs::read(host.sandbox.config().index_file).unwrap();

    let refused = host.abssctl(&["--json", "backup", "push", &id, "--remote", "bad"]);
    assert_exit(&refused, 3);
    let err = json_doc(&refused);
    assert_eq!(
        err["error"]["detail"]["summary"]["items"][0]["outcome"], "failed",
        "{err}"
    );
    assert!(text(&refused.stderr).contains("bad") || err.to_string().contains("bad"));
    assert_eq!(
        std::fs::read(host.sandbox.config().index_file).unwrap(),
        index,
        "nothing recorded"
    );

    let pushed = host.abssctl(&["backup", "push", &id, "--remote", "off"]);
    assert_exit(&pushed, 0);
    let table = text(&pushed.stdout);
    let key = format!("alpha/{id}.tar.zst");
    assert!(table.contains(&key) && table.contains("pushed"), "{table}");
    assert!(table.contains("off: 1 pushed"), "{table}");
    assert!(host.s3.head(&key).is_some());

    let again = host.abssctl(&[
        "--json",
        "backup",
        "push",
        "--instance",
        "alpha",
        "--remote",
        "off",
    ]);
    assert_exit(&again, 0);
    assert_eq!(json_doc(&again)["result"]["items"][0]["outcome"], "already");

    assert_exit(
        &host.abssctl(&["backup", "push", &id, "--remote", "nope"]),
        2,
    );
    assert_exit(&host.abssctl(&["backup", "push", &id]), 2);
    assert_exit(&host.abssctl(&["backup", "push", &id, "--all"]), 2);
}
