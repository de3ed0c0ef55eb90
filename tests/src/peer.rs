//! The Python abssctl itself, run as a peer on a [`Sandbox`]'s prefix: the
//! snapshot of its source beside the repository (`../shared/reference/
//! python-abssctl/src`, or `ABSSD_PYTHON_PEER_SRC`) in the venv that
//! `scripts/python-peer.sh` makes (`target/python-peer`, or
//! `ABSSD_TEST_PYTHON_PEER`). `scripts/test.sh` makes the venv before the tests
//! run; a test that needs the peer and finds no venv fails saying so.
//!
//! The peer reads the sandbox's `config.yml` (as on a host, both tools read one
//! file) and gets every path through its own environment overrides, since its
//! defaults are not re-rooted under a prefix. It drives `systemctl` and `nginx`
//! from `PATH`: stand-ins that log their arguments and succeed come first.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::Sandbox;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The venv's python: PyYAML and the Python tool's other dependencies.
pub fn python() -> Command {
    let venv = std::env::var_os("ABSSD_TEST_PYTHON_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/python-peer"));
    let bin = venv.join("bin/python");
    assert!(
        bin.is_file(),
        "no venv for the Python peer at {}: run scripts/python-peer.sh (scripts/test.sh does)",
        venv.display()
    );
    let mut cmd = Command::new(bin);
    cmd.env_remove("PYTHONPATH")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// The Python tool's source (its `src/`, the package `abssctl` inside).
pub fn source() -> PathBuf {
    let src = std::env::var_os("ABSSD_PYTHON_PEER_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/reference/python-abssctl/src"));
    assert!(
        src.join("abssctl/cli.py").is_file(),
        "the Python abssctl's source is not at {} (set ABSSD_PYTHON_PEER_SRC)",
        src.display()
    );
    src
}

/// Run a Python snippet in the venv with `args` as `sys.argv[1:]`; returns its
/// stdout, failing the test with its stderr when it fails.
pub fn python_script(script: &str, args: &[&str]) -> String {
    let out = python()
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The Python abssctl pointed at a sandbox.
#[derive(Debug)]
pub struct PythonPeer {
    env: Vec<(String, String)>,
    bin: PathBuf,
    calls: PathBuf,
}

impl PythonPeer {
    /// The peer for `sb`: its stand-ins under the prefix, its environment
    /// naming the sandbox's paths.
    pub fn new(sb: &Sandbox) -> PythonPeer {
        let cfg = sb.config();
        let bin = sb.path("python-peer/bin");
        fs::create_dir_all(&bin).expect("mkdir");
        let calls = sb.path("python-peer/calls.log");
        for tool in ["systemctl", "nginx", "journalctl"] {
            let script = bin.join(tool);
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 0\n",
                    calls.display()
                ),
            )
            .expect("write stand-in");
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let s = |p: &Path| p.display().to_string();
        let env = vec![
            ("ABSSCTL_CONFIG_FILE", s(&sb.path("etc/abssctl/config.yml"))),
            ("ABSSCTL_INSTANCE_ROOT", s(&cfg.instance_root)),
            ("ABSSCTL_STATE_DIR", s(&cfg.state_dir)),
            ("ABSSCTL_REGISTRY_DIR", s(&cfg.registry_dir)),
            ("ABSSCTL_LOGS_DIR", s(&cfg.logs_dir)),
            ("ABSSCTL_RUNTIME_DIR", s(&cfg.runtime_dir)),
            ("ABSSCTL_INSTALL_ROOT", s(&sb.path("srv/app"))),
            (
                "ABSSCTL_TEMPLATES_DIR",
                s(&sb.path("etc/abssctl/templates")),
            ),
            ("ABSSCTL_BACKUPS__ROOT", s(&cfg.backups_root)),
            ("ABSSCTL_BACKUPS__INDEX", s(&cfg.index_file)),
            ("ABSSCTL_SYSTEMD__UNIT_DIR", s(&cfg.unit_dir)),
            ("ABSSCTL_SKIP_NPM", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        PythonPeer { env, bin, calls }
    }

    /// `python -m abssctl ARGS` with the peer's environment (no other
    /// `ABSSCTL_*` or `ABSSD_*` variable of the test process leaks in).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.interpreter();
        cmd.arg("-m").arg("abssctl").args(args);
        cmd
    }

    /// As [`PythonPeer::command`], with `prelude` run first in the same
    /// interpreter: a stand-in that wraps one of the tool's functions, e.g.
    /// to hold it where a test wants it, while the rest is the tool itself.
    pub fn command_after(&self, prelude: &str, args: &[&str]) -> Command {
        let mut cmd = self.interpreter();
        cmd.arg("-c")
            .arg(format!(
                "{prelude}\nimport sys\nsys.argv[0] = 'abssctl'\nfrom abssctl.cli import main\nmain()\n"
            ))
            .args(args);
        cmd
    }

    /// The venv's python with the peer's environment.
    fn interpreter(&self) -> Command {
        let mut cmd = python();
        for (k, _) in std::env::vars() {
            if k.starts_with("ABSSCTL_") || k.starts_with("ABSSD_") {
                cmd.env_remove(k);
            }
        }
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PYTHONPATH", source())
            .env("PATH", path)
            .env("COLUMNS", "200")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The peer for a sandbox whose shared `config.yml` names every path
    /// ([`Sandbox::write_python_config`], [`crate::world::World::python`]):
    /// it reads them from that file, as on a host, not from its environment.
    pub fn reading_config_yml(sb: &Sandbox) -> PythonPeer {
        let mut py = PythonPeer::new(sb);
        py.env.retain(|(k, _)| {
            ![
                "ABSSCTL_INSTANCE_ROOT",
                "ABSSCTL_STATE_DIR",
                "ABSSCTL_REGISTRY_DIR",
                "ABSSCTL_LOGS_DIR",
                "ABSSCTL_RUNTIME_DIR",
                "ABSSCTL_BACKUPS__ROOT",
                "ABSSCTL_BACKUPS__INDEX",
                "ABSSCTL_SYSTEMD__UNIT_DIR",
            ]
            .contains(&k.as_str())
        });
        py
    }

    /// Set (or replace) one of the peer's environment variables.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Leave one of the peer's environment variables unset.
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Run it; the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run the Python abssctl")
    }

    /// Run it and require success; its stdout parsed as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "python abssctl {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "python abssctl {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The ids its `backup list --json` shows, in its order.
    pub fn backup_ids(&self) -> Vec<String> {
        let listed = self.json(&["backup", "list", "--json"]);
        listed["backups"]
            .as_array()
            .unwrap_or_else(|| panic!("no backups list: {listed}"))
            .iter()
            .filter_map(|b| b["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// What its stand-ins were asked to do, one call a line.
    pub fn calls(&self) -> String {
        fs::read_to_string(&self.calls).unwrap_or_default()
    }
}
