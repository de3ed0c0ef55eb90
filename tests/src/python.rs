//! Archives and index entries the way the Python abssctl makes them: a
//! payload laid out by hand and packed by GNU tar, its sidecar by sha256sum.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use abssd::config::unit_name;
use serde_json::{Value, json};

use crate::Sandbox;

/// The part of a payload every backup has, as the Python tool lays it out
/// under `top` (`<staging>/<id>`): `data/` (a copy of the instance's data,
/// owners and modes kept), `systemd/<unit>`, and an empty `metadata/`.
pub fn lay_out_data_and_unit(sb: &Sandbox, name: &str, top: &Path) {
    let cfg = sb.config();
    fs::create_dir_all(top.join("systemd")).unwrap();
    fs::create_dir_all(top.join("metadata")).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(cfg.instance_root.join(name).join("data"))
        .arg(top.join("data"))
        .status()
        .unwrap();
    assert!(st.success());
    fs::copy(
        cfg.unit_file(name),
        top.join("systemd").join(unit_name(name)),
    )
    .unwrap();
}

/// Lay out a payload the way the Python tool does and tar it with GNU tar.
pub fn python_style_archive(sb: &Sandbox, name: &str, id: &str, gzip: bool) -> (PathBuf, PathBuf) {
    let cfg = sb.config();
    let staging = sb.path(&format!("py-staging-{id}"));
    let top = staging.join(id);
    lay_out_data_and_unit(sb, name, &top);
    fs::create_dir_all(top.join("nginx")).unwrap();
    fs::create_dir_all(top.join("nginx-enabled")).unwrap();
    let site = abssd::config::site_name(name);
    fs::copy(cfg.site_file(name), top.join("nginx").join(&site)).unwrap();
    fs::copy(cfg.site_link(name), top.join("nginx-enabled").join(&site)).unwrap();
    fs::copy(cfg.registry_file(), top.join("metadata/instances.yml")).unwrap();
    let reg = abssd::registry::Registry::load(&cfg.registry_file()).unwrap();
    let mut inst = serde_json::to_value(reg.get(name).unwrap()).unwrap();
    inst["version"] = json!("24.9.0");
    inst["domain"] = json!("restored.example.test");
    fs::write(
        top.join("metadata/instance.json"),
        serde_json::to_vec_pretty(&inst).unwrap(),
    )
    .unwrap();
    let dir = cfg.instance_backup_dir(name);
    fs::create_dir_all(&dir).unwrap();
    let archive = dir.join(format!("{id}{}", if gzip { ".tar.gz" } else { ".tar.zst" }));
    let flag = if gzip { "-czf" } else { "--zstd" };
    let mut args = vec![flag.to_owned()];
    if !gzip {
        args.push("-cf".into());
    }
    args.extend([
        archive.display().to_string(),
        "-C".into(),
        staging.display().to_string(),
        id.into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::tar(&args);
    (archive, top.join("data"))
}

/// The index entry the Python tool writes, and its sidecar.
pub fn register_python_entry(sb: &Sandbox, name: &str, id: &str, archive: &Path, algorithm: &str) {
    let out = Command::new("sha256sum").arg(archive).output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let file_name = archive.file_name().unwrap().to_string_lossy().into_owned();
    fs::write(
        format!("{}.sha256", archive.display()),
        format!("{hex}  {file_name}\n"),
    )
    .unwrap();
    let index_file = sb.config().index_file;
    let mut index: Value = fs::read(&index_file)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_else(|| json!({"backups": []}));
    index["backups"].as_array_mut().unwrap().push(json!({
        "id": id,
        "instance": name,
        "created_at": "2025-06-01T10:00:00Z",
        "path": archive,
        "algorithm": algorithm,
        "compression_level": null,
        "size_bytes": fs::metadata(archive).unwrap().len(),
        "checksum": {"algorithm": "sha256", "value": hex},
        "status": "available",
        "message": "from python",
        "created_by": "root",
        "metadata": {"data_only": false, "labels": []},
    }));
    fs::create_dir_all(index_file.parent().unwrap()).unwrap();
    fs::write(&index_file, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the Python tool's `_iso_now` writes a time:
/// `datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")`.
pub fn assert_python_time(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let shape: String = s
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99Z", "{s}");
}
