//! The registry is shared with the Python abssctl: a live restore changes
//! only the restored instance's documented fields, as PyYAML reads them, and
//! no byte outside that entry; odd values in other entries stop nothing.

use std::collections::BTreeSet;
use std::fs;

use abssd_proto::methods::call::call;
use abssd_proto::methods::{BackupCreate, BackupList};
use abssd_proto::*;
use abssd_tests::peer::python_script;
use abssd_tests::world::{World, no_pre, restore};
use serde_json::Value;

/// Prints, as JSON, where two YAML files differ for PyYAML: the paths of
/// values whose type or value differs (`1` and `1.0` and `True` differ;
/// `.nan` equals `.nan`), keys present on one side only included.
const COMPARE: &str = r#"
import json, math, sys, yaml
def diff(a, b, path, out):
    if type(a) is not type(b):
        out.append(path); return
    if isinstance(a, dict):
        ka = {(type(k).__name__, repr(k)): k for k in a}
        kb = {(type(k).__name__, repr(k)): k for k in b}
        for t in ka.keys() | kb.keys():
            sub = path + "." + str(t[1] if t[0] != "str" else ka.get(t, kb.get(t)))
            if t in ka and t in kb:
                diff(a[ka[t]], b[kb[t]], sub, out)
            else:
                out.append(sub)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(path + "[len]")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, "%s[%d]" % (path, i), out)
    elif isinstance(a, float) and math.isnan(a) and math.isnan(b):
        pass
    elif a != b:
        out.append(path)
def load(p):
    with open(p) as f:
        return yaml.safe_load(f)
out = []
diff(load(sys.argv[1]), load(sys.argv[2]), "", out)
print(json.dumps(sorted(out)))
"#;

/// PyYAML's differences between two registry texts.
fn pyyaml_diff(dir: &std::path::Path, before: &str, after: &str) -> BTreeSet<String> {
    fs::create_dir_all(dir).unwrap();
    let (a, b) = (dir.join("before.yml"), dir.join("after.yml"));
    fs::write(&a, before).unwrap();
    fs::write(&b, after).unwrap();
    let out = python_script(COMPARE, &[a.to_str().unwrap(), b.to_str().unwrap()]);
    serde_json::from_str::<Vec<String>>(&out)
        .unwrap()
        .into_iter()
        .collect()
}

/// The byte range of `name`'s entry in a block list at column 0: from its
/// `- name:` line to the end of its last line.
fn entry_span(text: &str, name: &str) -> (usize, usize) {
    let start = text
        .find(&format!("- name: {name}\n"))
        .unwrap_or_else(|| panic!("no entry {name} in:\n{text}"));
    let rest = &text[start + 1..];
    let end = rest
        .match_indices('\n')
        .find(|(i, _)| rest[i + 1..].chars().next().is_none_or(|c| c != ' '))
        .map_or(text.len(), |(i, _)| start + 1 + i);
    (start, end)
}

/// A world with instance alpha and one backup of it; returns the backup id.
async fn world_with_backup() -> (World, String) {
    let w = World::new(&["alpha"]);
    let c = w.client().await;
    let params = CreateParams {
        instance: "alpha".into(),
        ..Default::default()
    };
    let made = call::<BackupCreate>(&c, &params).await.unwrap();
    (w, made.result.unwrap().id)
}

/// Restore alpha live from `id` over the registry `text`; then PyYAML's view
/// of the whole file may differ only in alpha's documented fields, and no
/// byte outside alpha's entry changes.
async fn restore_keeps_everything_else(w: &World, id: &str, text: &str, alpha_at: usize) {
    let file = w.cfg().registry_file();
    fs::write(&file, text).unwrap();
    let c = w.client().await;
    let out = restore(&c, &no_pre(id)).await.unwrap();
    assert!(out.result.is_some(), "{out:?}");
    let after = fs::read_to_string(&file).unwrap();

    let (start, end) = entry_span(text, "alpha");
    let (a_start, a_end) = entry_span(&after, "alpha");
    assert_eq!(
        &after[..a_start],
        &text[..start],
        "bytes before alpha's entry"
    );
    assert_eq!(&after[a_end..], &text[end..], "bytes after alpha's entry");

    // The restore's documented changes (SPEC §7 step 6): the archive's
    // version, domain and paths (the data root kept), and two metadata keys.
    let alpha = format!(".instances[{alpha_at}]");
    let diff = pyyaml_diff(&w.sb.path("cmp"), text, &after);
    let allowed = |d: &String| {
        d.strip_prefix(&alpha).is_some_and(|rest| {
            [".version", ".domain", ".paths"]
                .iter()
                .any(|k| rest == *k || rest.starts_with(&format!("{k}.")))
                || RESTORE_NOTE
                    .iter()
                    .any(|k| rest == format!(".metadata.{k}"))
                || rest.starts_with(".metadata.last_restore_actor.")
        })
    };
    let unexpected: Vec<&String> = diff.iter().filter(|d| !allowed(d)).collect();
    assert!(
        unexpected.is_empty(),
        "changed for PyYAML: {unexpected:?}\nbefore:\n{text}\nafter:\n{after}"
    );
    for must in [".version".to_owned()]
        .into_iter()
        .chain(RESTORE_NOTE.iter().map(|k| format!(".metadata.{k}")))
    {
        let written = |d: &String| {
            d == &format!("{alpha}{must}") || d.starts_with(&format!("{alpha}{must}."))
        };
        assert!(
            diff.iter().any(written),
            "{must} not written: {diff:?}\n{after}"
        );
    }
    // What was written reads in PyYAML as the strings meant.
    let read = python_script(
        "import json,sys,yaml\nd=yaml.safe_load(open(sys.argv[1]))\nprint(json.dumps([i for i in d['instances'] if i['name']=='alpha'][0]['metadata'], default=str))",
        &[file.to_str().unwrap()],
    );
    let meta: Value = serde_json::from_str(&read).unwrap();
    assert!(
        meta["last_restored_at"].is_string() && meta["last_restored_by"] == "root",
        "{meta}"
    );
    assert_eq!(meta["last_restore_actor"]["name"], "root", "{meta}");
    assert!(meta["last_restore_source"].is_string(), "{meta}");
    assert!(meta["last_restore_destination"].is_string(), "{meta}");
}

/// The metadata keys a restore writes: abssd's two and the Python tool's three.
const RESTORE_NOTE: [&str; 5] = [
    "last_restored_at",
    "last_restored_by",
    "last_restore_source",
    "last_restore_destination",
    "last_restore_actor",
];

/// PyYAML writes the registry (`safe_dump`, its own quoting and tags) with
/// values our model would reject in other entries and odd unknown keys in the
/// restored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_changes_only_its_entry_in_a_pyyaml_registry() {
    let (w, id) = world_with_backup().await;
    let file = w.cfg().registry_file();
    let text = python_script(
        r#"
import datetime, sys, yaml
reg = yaml.safe_load(open(sys.argv[1]))
alpha = reg["instances"][0]
alpha["version"] = "1.0"
alpha["since"] = datetime.date(2024, 5, 6)
alpha["tags"] = {"a", "b"}
alpha["blob"] = b"\x00\x01"
alpha["limit"] = float("inf")
alpha["answer"] = 2**70
alpha["flag"] = "yes"
alpha["metadata"] = {"n": "0755", 7: "int key", "at": datetime.datetime(2025, 1, 2, 3, 4, 5)}
beta = {"name": "beta", "domain": "on", "port": "auto", "version": datetime.date(2025, 1, 2),
        "status": True, "paths": {"root": "/srv/beta", "x": 1e3, "y": "0o17"},
        "metadata": {"big": 2**70, "inf": float("-inf"), "bin": b"\xff", "set": {1, 2}, "e": "1e3"}}
gamma = {"name": "gamma", "port": float("inf"), "version": "0x1F", "odd": ["y", "n", "1:30", "~", ""]}
doc = {"format": 1, "note": "y", "instances": [beta, alpha, gamma], 3: "int key"}
sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
"#,
        &[file.to_str().unwrap()],
    );
    restore_keeps_everything_else(&w, &id, &text, 1).await;
}

/// A hand-written YAML 1.1 registry for `w`'s alpha: comments, plain
/// `y`/`on`/`1e3`/`0o17`/`0755`, dates, a big int, int keys, `.inf`,
/// `!!binary`, sets, flow mappings.
fn hand_written(w: &World) -> String {
    let cfg = w.cfg();
    let root = cfg.instance_root.join("alpha");
    format!(
        "\
# Instances on this host (edited by hand).
format: 1   # registry format
instances:
- name: beta
  domain: on
  port: .inf
  version: 2025-01-02
  status: y
  paths: {{root: /srv/beta, mode: 0755}}
  metadata:
    big: 1180591620717411303424
    1: int key
    blob: !!binary AAE=
    set: !!set {{a, b}}
    e: 1e3
    o: 0o17
- name: alpha
  domain: alpha.example.test
  port: 5006   # the sync server
  version: '1.0'
  status: enabled
  paths:
    root: {data}
    config: {config}
  metadata:
    created: 2024-05-06
    n: 0755
    owner: y
  # unknown keys
  since: 2024-05-06
  tags: !!set {{x, y}}
  blob: !!binary AAE=
  limit: .inf
  answer: 1180591620717411303424
  flag: yes
  2: int key
# the end of alpha
- name: gamma
  port: 'auto'
top: [on, 1e3, 1:30]
",
        data = w.data("alpha").display(),
        config = root.join("config.json").display(),
    )
}

/// A hand-written YAML 1.1 registry (see [`hand_written`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_changes_only_its_entry_in_a_hand_written_registry() {
    let (w, id) = world_with_backup().await;
    let text = hand_written(&w);
    restore_keeps_everything_else(&w, &id, &text, 1).await;
}

/// A restore rolled back after the registry step puts the entry back as
/// PyYAML read it, and no byte outside it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_restore_leaves_the_registry_as_pyyaml_read_it() {
    let (w, id) = world_with_backup().await;
    let text = hand_written(&w);
    let file = w.cfg().registry_file();
    fs::write(&file, &text).unwrap();
    let unit = abssd::config::unit_name("alpha");
    w.fake.set_unit(&unit, false, true);
    w.fake.fail(&unit, abssd_tests::Verb::Start, Some("failed"));
    let c = w.client().await;
    let params = RestoreParams {
        restart: Some(true),
        ..no_pre(&id)
    };
    let err = restore(&c, &params).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Service, "{err:?}");
    assert!(
        err.message.contains("registry entry of alpha put back"),
        "{err:?}"
    );
    let after = fs::read_to_string(&file).unwrap();
    let diff = pyyaml_diff(&w.sb.path("cmp"), &text, &after);
    assert!(diff.is_empty(), "{diff:?}\n{after}");
    let (start, end) = entry_span(&text, "alpha");
    let (a_start, a_end) = entry_span(&after, "alpha");
    assert_eq!(
        (&after[..a_start], &after[a_end..]),
        (&text[..start], &text[end..])
    );
}

/// One entry our model rejects stops nothing for another instance; the same
/// value in the needed entry is a validation error naming instance and key,
/// and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_stops_only_its_own_instance() {
    let (w, id) = world_with_backup().await;
    let file = w.cfg().registry_file();
    let good = fs::read_to_string(&file).unwrap();
    let with_bad_beta =
        format!("{good}- name: beta\n  port: auto\n  version: 2025-01-02\n  blob: !!binary AAE=\n");
    fs::write(&file, &with_bad_beta).unwrap();
    let c = w.client().await;
    let listed = call::<BackupList>(&c, &ListParams::default())
        .await
        .unwrap();
    assert_eq!(listed.backups.len(), 1);
    let params = CreateParams {
        instance: "alpha".into(),
        ..Default::default()
    };
    let made = call::<BackupCreate>(&c, &params).await.unwrap();
    assert!(made.result.is_some(), "{made:?}");
    let out = restore(&c, &no_pre(&id)).await.unwrap();
    assert!(out.result.is_some(), "{out:?}");
    let after = fs::read_to_string(&file).unwrap();
    assert!(
        after.ends_with(
            "- name: beta\n  port: auto\n  version: 2025-01-02\n  blob: !!binary AAE=\n"
        ),
        "{after}"
    );

    // Now alpha's own port is what the model rejects.
    let bad_alpha = after.replacen("port: 5006", "port: auto", 1);
    assert_ne!(bad_alpha, after);
    fs::write(&file, &bad_alpha).unwrap();
    let data_then = abssd_tests::inspect::snapshot(&w.data("alpha"));
    for e in [
        restore(&c, &no_pre(&id)).await.unwrap_err(),
        call::<BackupCreate>(&c, &params).await.unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::Validation, "{e:?}");
        assert!(
            e.message.contains("instance alpha") && e.message.contains("port"),
            "{e:?}"
        );
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), bad_alpha);
    assert_eq!(abssd_tests::inspect::snapshot(&w.data("alpha")), data_then);
}

/// Every string YAML 1.1 reads specially, written by abssd as a value and as
/// a key, reads back in PyYAML as that same string; numbers, booleans and
/// null stay themselves.
#[test]
fn written_strings_read_back_in_pyyaml_as_strings() {
    use abssd::registry::{Instance, Registry};
    let strings = [
        "",
        "y",
        "Y",
        "n",
        "N",
        "yes",
        "No",
        "ON",
        "off",
        "True",
        "fAlSe",
        "~",
        "null",
        "NULL",
        "0o17",
        "0755",
        "0x1F",
        "0b101",
        "1_000",
        "1:30",
        "190:20:30",
        "-1",
        "+1",
        "42",
        "1e3",
        "1.0e+3",
        "1.5",
        ".5",
        ".inf",
        "-.inf",
        ".NaN",
        "2025-01-02",
        "2025-01-02T10:00:00Z",
        "2025-1-2 1:00:00",
        "- a",
        "a: b",
        "a #b",
        "#c",
        "&a",
        "*a",
        "!x",
        "!!binary",
        "|",
        ">",
        "'",
        "\"",
        "%x",
        "@x",
        "`x",
        "[a]",
        "{a}",
        "a,b",
        " a",
        "a ",
        "a\nb",
        "tab\there",
        "\r",
        "\u{1}",
        "\u{7f}",
        "\u{85}",
        "\u{a0}",
        "\u{2028}",
        "\u{feff}",
        "?",
        ":",
        "<<",
        "=",
        "é",
        "/srv/alpha",
        "plain-text_1.2",
    ];
    let mut meta = serde_json::Map::new();
    for (i, s) in strings.iter().enumerate() {
        meta.insert(format!("v{i}"), Value::from(*s));
        meta.insert((*s).to_owned(), Value::from(i));
    }
    meta.insert("t".into(), Value::Bool(true));
    meta.insert("z".into(), Value::Null);
    meta.insert("f".into(), Value::from(1e20));
    meta.insert("big".into(), Value::from(u64::MAX));
    let alpha = Instance {
        name: "alpha".into(),
        domain: Some("on".into()),
        port: Some(5006),
        version: Some("1.10".into()),
        status: Some("off".into()),
        paths: Default::default(),
        metadata: meta.clone(),
        extra: Default::default(),
    };
    let text = Registry::parse("").unwrap().with_entry(&alpha).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instances.yml");
    fs::write(&file, &text).unwrap();
    // json.dumps fails on any date or bytes PyYAML produced; types are
    // compared below.
    let read = python_script(
        "import json,sys,yaml\nd=yaml.safe_load(open(sys.argv[1]))\nassert all(type(k) is str for k in d['instances'][0]['metadata']), 'a key is not a string'\nprint(json.dumps(d))",
        &[file.to_str().unwrap()],
    );
    let read: Value = serde_json::from_str(&read).unwrap();
    let entry = &read["instances"][0];
    assert_eq!(entry["domain"], "on", "{text}");
    assert_eq!(entry["status"], "off");
    assert_eq!(entry["version"], "1.10");
    assert_eq!(entry["port"], 5006);
    assert_eq!(entry["metadata"], Value::Object(meta), "{text}");
}

/// A registry abssd cannot edit in place (PyYAML wrote it in flow style)
/// refuses a live restore, and its dry run, while it plans: the data, the
/// registry and the unit stay as they were, and the error names the file.
/// Before, the restore stopped the unit and swapped the data, failed at its
/// registry step and rolled all of it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_cannot_be_edited_in_place_refuses_the_restore_before_it_changes_anything()
{
    let (w, id) = world_with_backup().await;
    let file = w.cfg().registry_file();
    let flow = python_script(
        "import sys, yaml\n\
         d = yaml.safe_load(open(sys.argv[1]))\n\
         print(yaml.safe_dump(d, default_flow_style=True), end='')",
        &[file.to_str().unwrap()],
    );
    assert!(flow.starts_with("{instances: ["), "{flow}");
    fs::write(&file, &flow).unwrap();
    let data_then = abssd_tests::inspect::snapshot(&w.data("alpha"));
    let c = w.client().await;
    let mut dry = no_pre(&id);
    dry.dry_run = true;
    for params in [dry, no_pre(&id)] {
        let e = restore(&c, &params).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Environment, "{e:?}");
        assert!(
            e.message.contains(&file.display().to_string())
                && e.message.contains("flow style")
                && !e.message.contains("rolled back"),
            "{e:?}"
        );
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), flow);
    assert_eq!(abssd_tests::inspect::snapshot(&w.data("alpha")), data_then);
}
