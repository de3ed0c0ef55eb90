//! Test harness for abssd: a throwaway prefix with realistic instances
//! ([`Sandbox`]), the real daemon started in-process on a socket inside it
//! ([`Daemon`]), a WebSocket client over that socket ([`client`]), and a fake
//! systemd on a private D-Bus ([`FakeSystemd`], over [`bus::Bus`]);
//! [`rawtar`] writes the hostile tar streams the extraction tests feed in;
//! [`python`] makes archives and index entries the way the Python tool does;
//! [`peer`] runs the Python tool itself on a sandbox;
//! [`child`] runs abssd as a process with its crash points armed;
//! [`world`] puts it all together for restore tests ([`world::World`]);
//! [`actual`] is what Actual's sync server keeps, as `actual-writer` writes it;
//! [`units`] installs the unit files of `systemd/` where a test needs them.
//!
//! Everything lives under one temporary directory and is removed on drop.

pub mod actual;
pub mod bus;
pub mod child;
pub mod fake_systemd;
pub mod hooks;

pub use fake_systemd::{FakeSystemd, Verb};

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use abssd::registry::{Instance, InstancePaths, Registry};
use jsonrpsee::client_transport::ws::{Url, WsTransportClientBuilder};
use jsonrpsee::core::client::{Client, ClientBuilder};

pub mod inspect;
pub mod jobs;
pub mod nobody;
pub mod peer;
pub mod pings;
pub mod python;
pub mod rawtar;
pub mod remotes;
pub mod s3;
pub mod serial;
pub mod units;
pub mod world;

pub use serial::{Serial, Share, serial, share};

/// A temporary prefix laid out like a host (SPEC §3), re-rooted.
#[derive(Debug)]
pub struct Sandbox {
    /// Owns the directory.
    _dir: tempfile::TempDir,
    /// The prefix passed to `--prefix`.
    pub prefix: PathBuf,
    /// Leave to run abssd in this process (see [`serial`]).
    _share: Share,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// An empty prefix.
    pub fn new() -> Sandbox {
        let share = share();
        let dir = tempfile::Builder::new()
            .prefix("abssd-test-")
            .tempdir()
            .expect("tempdir");
        let prefix = dir.path().to_owned();
        Sandbox {
            _dir: dir,
            prefix,
            _share: share,
        }
    }

    /// The paths of the daemon configuration for this prefix.
    pub fn config(&self) -> abssd::config::Layout {
        self.full_config().layout
    }

    /// The daemon configuration for this prefix (no config file, no env).
    pub fn full_config(&self) -> abssd::Config {
        let over = abssd::Overrides {
            prefix: Some(self.prefix.clone()),
            ..Default::default()
        };
        abssd::Config::load_with_env(&over, &Default::default()).expect("config")
    }

    /// Write the sandbox's `config.yml` (the default one under the prefix),
    /// shared with the Python tool: only its keys, so this refuses abssd's own
    /// (they go to [`Sandbox::write_abssd_config`]).
    pub fn write_config(&self, yaml: &str) {
        let file = self.path("etc/abssctl/config.yml");
        fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        fs::write(&file, yaml).expect("write config");
        let split = abssd::config::ConfigFile::read_split(&file).expect("config.yml parses");
        assert!(
            split.own_keys.is_empty(),
            "abssd's own keys {:?} written to config.yml: use write_abssd_config",
            split.own_keys
        );
        assert!(
            split.shared.unknown_keys().is_empty(),
            "keys the Python tool refuses written to config.yml: {:?}",
            split.shared.unknown_keys()
        );
    }

    /// Write a `config.yml` as the Python tool's operator would: every path of
    /// the sandbox spelled out (the same paths `--prefix` gives abssd), a lock
    /// timeout and the compression. Both tools read it.
    pub fn write_python_config(&self) {
        let cfg = self.config();
        let d = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("json");
        self.write_config(&format!(
            "instance_root: {}\nstate_dir: {}\nlogs_dir: {}\nruntime_dir: {}\nlock_timeout: 30\nbackups:\n  root: {}\n  compression:\n    algorithm: zstd\nsystemd:\n  unit_dir: {}\n",
            d(&cfg.instance_root),
            d(&cfg.state_dir),
            d(&cfg.logs_dir),
            d(&cfg.runtime_dir),
            d(&cfg.backups_root),
            d(&cfg.unit_dir),
        ));
    }

    /// Write the sandbox's `abssd.yml` (abssd's own settings, e.g. a private
    /// bus for systemd, the nginx check, daemon limits).
    pub fn write_abssd_config(&self, yaml: &str) {
        let file = self.path("etc/abssctl/abssd.yml");
        fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        fs::write(file, yaml).expect("write abssd config");
    }

    /// A self-contained nginx configuration under the prefix that includes its
    /// `sites-enabled/*`, and the `nginx -t` command line that checks it.
    pub fn nginx_test_command(&self) -> Vec<String> {
        let cfg = self.config();
        let dir = self.path("etc/nginx");
        fs::create_dir_all(dir.join("logs")).expect("mkdir");
        fs::create_dir_all(&cfg.sites_enabled).expect("mkdir");
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  include {e}/*;\n}}\n",
                d = dir.display(),
                e = cfg.sites_enabled.display()
            ),
        )
        .expect("write nginx.conf");
        [
            "nginx",
            "-t",
            "-q",
            "-p",
            &dir.display().to_string(),
            "-c",
            &conf.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Path under the prefix.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.prefix.join(rel)
    }

    /// The socket the daemon serves.
    pub fn socket(&self) -> PathBuf {
        self.config().socket
    }

    /// Create an instance: data tree (nested dirs, a 0600 file, a 0700 dir, a
    /// relative symlink, a few hundred KiB), unit file, nginx site enabled by
    /// symlink, and its registry entry. Returns the data root.
    pub fn add_instance(&self, name: &str) -> PathBuf {
        let cfg = self.config();
        let root = cfg.instance_root.join(name);
        let data = root.join("data");
        let budget = data.join("user-files/budget-1");
        fs::create_dir_all(&budget).expect("mkdir");
        fs::create_dir_all(data.join("server-files")).expect("mkdir");
        fs::write(
            root.join("config.json"),
            format!("{{\"port\": 5006, \"name\": \"{name}\"}}\n"),
        )
        .expect("write");
        let mut db = Vec::with_capacity(300_000);
        for i in 0..6000u32 {
            db.extend_from_slice(
                format!(
                    "{i:08} payee-{} {:>10}.{:02}\n",
                    i % 97,
                    i * 37 % 10007,
                    i % 100
                )
                .as_bytes(),
            );
        }
        fs::write(budget.join("db.sqlite"), &db).expect("write");
        fs::write(
            budget.join("metadata.json"),
            b"{\"budgetName\":\"Household\"}\n",
        )
        .expect("write");
        fs::write(data.join("server-files/account.sqlite"), vec![7u8; 40_000]).expect("write");
        let secret = data.join("server-files/secret.key");
        fs::write(&secret, b"k3y\n").expect("write");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
        let private = data.join("private");
        fs::create_dir_all(&private).expect("mkdir");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
        symlink("user-files/budget-1", data.join("current")).expect("symlink");

        fs::create_dir_all(&cfg.unit_dir).expect("mkdir");
        fs::write(
            cfg.unit_file(name),
            format!("[Unit]\nDescription=Actual {name}\n[Service]\nExecStart=/usr/bin/true\n"),
        )
        .expect("write");
        fs::create_dir_all(&cfg.sites_available).expect("mkdir");
        fs::create_dir_all(&cfg.sites_enabled).expect("mkdir");
        fs::write(
            cfg.site_file(name),
            format!("server {{ listen 127.0.0.1:8080; server_name {name}.test; }}\n"),
        )
        .expect("write");
        symlink(cfg.site_file(name), cfg.site_link(name)).expect("symlink");

        let file = cfg.registry_file();
        let mut reg = Registry::load(&file).expect("registry");
        let mut paths = InstancePaths {
            root: Some(data.display().to_string()),
            ..Default::default()
        };
        paths.extra.insert(
            "config".into(),
            root.join("config.json").display().to_string().into(),
        );
        reg.instances.push(Instance {
            name: name.to_owned(),
            domain: Some(format!("{name}.example.test")),
            port: Some(5006),
            version: Some("25.1.0".into()),
            status: Some("enabled".into()),
            paths,
            metadata: Default::default(),
            extra: Default::default(),
        });
        abssd::fsutil::atomic_write(&file, reg.to_yaml().expect("yaml").as_bytes())
            .expect("write registry");
        data
    }
}

impl Sandbox {
    /// An instance as the Python tool lays it out and registers it: the same
    /// files as [`Sandbox::add_instance`], but its data root is the whole
    /// `instance_root/<name>` (config.json beside `data/`), its nginx site in
    /// the Python tool's `runtime_dir/nginx/sites-*`, and its registry entry
    /// the keys `instance create` writes, dumped by PyYAML (`safe_dump`,
    /// `sort_keys=False`). Returns the data root.
    pub fn add_python_instance(&self, name: &str) -> PathBuf {
        self.add_instance(name);
        let cfg = self.config();
        let root = cfg.instance_root.join(name);
        let available = cfg.runtime_dir.join("nginx/sites-available");
        let enabled = cfg.runtime_dir.join("nginx/sites-enabled");
        fs::create_dir_all(&available).expect("mkdir");
        fs::create_dir_all(&enabled).expect("mkdir");
        let site = available.join(abssd::config::site_name(name));
        let link = enabled.join(abssd::config::site_name(name));
        fs::rename(cfg.site_file(name), &site).expect("move site");
        fs::remove_file(cfg.site_link(name)).expect("unlink site");
        symlink(&site, &link).expect("symlink");
        let s = |p: &Path| p.display().to_string();
        peer::python_script(
            r#"
import sys, yaml
file, name, root, runtime, logs, state, unit, site, link = sys.argv[1:]
with open(file) as f:
    doc = yaml.safe_load(f) or {}
for entry in doc.get("instances") or []:
    if entry.get("name") == name:
        entry["paths"] = {
            "root": root, "data": root + "/data", "config": root + "/config.json",
            "runtime": runtime, "logs": logs, "state": state,
            "systemd_unit": unit, "nginx_site": site, "nginx_enabled": link,
        }
with open(file, "w") as f:
    yaml.safe_dump(doc, f, sort_keys=False)
"#,
            &[
                &s(&cfg.registry_file()),
                name,
                &s(&root),
                &s(&cfg.runtime_dir.join("instances").join(name)),
                &s(&cfg.logs_dir.join(name)),
                &s(&cfg.state_dir.join("instances").join(name)),
                &s(&cfg.unit_file(name)),
                &s(&site),
                &s(&link),
            ],
        );
        root
    }
}

/// The real daemon, in-process on its own runtime thread; stopped on drop.
#[derive(Debug)]
pub struct Daemon {
    /// The socket it serves.
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held until the daemon is stopped, which may be after its sandbox is gone.
    _share: Share,
}

impl Daemon {
    /// Start on the sandbox's default config and wait until it answers.
    pub fn start(sandbox: &Sandbox) -> Daemon {
        Daemon::start_with(sandbox.full_config())
    }

    /// Start with an explicit configuration: bind its socket here, run it on
    /// a thread of its own, and return once it serves (start-up recovery done).
    pub fn start_with(config: abssd::Config) -> Daemon {
        let share = share();
        let socket = config.layout.socket.clone();
        let listener = abssd::listen(&config).expect("abssd cannot listen");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let stop = async {
                    let _ = rx.await;
                };
                let served = match abssd::start(config).await {
                    Ok(daemon) => daemon.run(listener, stop).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    eprintln!("abssd failed: {e}");
                }
            });
        });
        first_answer(&socket);
        Daemon {
            socket,
            stop: Some(tx),
            thread: Some(thread),
            _share: share,
        }
    }

    /// Stop and wait for the daemon thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One `daemon.status` call over a plain HTTP connection. The socket is bound
/// already, so the call waits in its backlog until the daemon serves, which
/// it does once start-up recovery is done: no polling.
fn first_answer(socket: &Path) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{}}"#;
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: abssd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send daemon.status");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"protocol\""),
        "abssd did not start serving {}: {answer:?}",
        socket.display()
    );
}

/// A WebSocket JSON-RPC client over the Unix socket.
pub async fn client(socket: &Path) -> Client {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let url = Url::parse("ws://localhost").expect("url");
    let (tx, rx) = WsTransportClientBuilder::default()
        .build_with_stream(url, stream)
        .await
        .expect("ws handshake");
    ClientBuilder::default()
        .request_timeout(Duration::from_secs(600))
        .build_with_tokio(tx, rx)
}

/// Back up `instance` with the default flags and wait for the result.
pub async fn backup(c: &Client, instance: &str) -> abssd_proto::CreateResult {
    use abssd_proto::methods::{BackupCreate, call::call};
    let params = abssd_proto::CreateParams {
        instance: instance.into(),
        ..Default::default()
    };
    let out = call::<BackupCreate>(c, &params)
        .await
        .expect("backup.create");
    out.result.expect("a create result")
}

/// `backup.show`: the index entry of backup `id`.
pub async fn show(c: &Client, id: &str) -> abssd_proto::BackupEntry {
    use abssd_proto::methods::{BackupShow, call::call};
    call::<BackupShow>(c, &abssd_proto::ShowParams { id: id.into() })
        .await
        .expect("backup.show")
        .backup
}

/// The SHA-256 of `bytes`, lower-case hex (as `sha256sum` prints it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Run `tar` (GNU) with arguments; panics with its stderr on failure.
pub fn tar(args: &[&str]) -> String {
    let out = std::process::Command::new("tar")
        .args(args)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bytes of `member` in an uncompressed `archive`, as GNU tar extracts
/// them.
pub fn tar_member(archive: &str, member: &str) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args(["-xOf", archive, member])
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar -xOf {archive} {member}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Panics unless every test file in `dir` (a `*.rs` file, or a directory with
/// a `mod.rs`) is declared as `mod name;` in `root`, the text of the test
/// binary's root file there: with `autotests = false` cargo would skip a file
/// nobody names, and its tests with it, without a word.
pub fn assert_every_file_is_a_module(dir: &Path, root: &str) {
    let mut missing = Vec::new();
    for entry in fs::read_dir(dir).expect("read the tests directory") {
        let path = entry.expect("read the tests directory").path();
        let name = if path.is_dir() {
            if !path.join("mod.rs").exists() {
                // The submodules of a file beside it, e.g. `cli_fake/`.
                continue;
            }
            path.file_name()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else {
            continue;
        };
        let name = name.expect("a name").to_string_lossy().into_owned();
        if name != "main" && !root.lines().any(|l| l.trim() == format!("mod {name};")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "test files not named as modules in {}/main.rs: {missing:?}",
        dir.display()
    );
}
