//! What an Actual data directory is made of, as names: which archived path is
//! `account.sqlite`, a group database, a budget blob, `.migrate` or a rollback
//! journal, and what the sync server requires of each. Pure functions over
//! the entry's path below `<id>/data/`, unit-tested without an archive.

/// Tables every `account.sqlite` has had since the server's first migration
/// (`1694360479680-create-account-db`): logins, sessions, the budget files.
pub const ACCOUNT_TABLES: &[&str] = &["auth", "sessions", "files"];

/// Tables the server creates in a new group database and then relies on: it
/// only creates them when the file does not exist (`getGroupDb`).
pub const GROUP_TABLES: &[&str] = &["messages_binary", "messages_merkles"];

/// The longest file or group id considered; the server's own ids are UUIDs.
pub const MAX_ID: usize = 256;

/// What an archived path is to the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `<dir>server-files/account.sqlite`; `dir` is the Actual data directory
    /// (a prefix of the path: empty or ending in `/`).
    Account { dir: String },
    /// `<dir>user-files/group-<id>.sqlite`.
    Group { dir: String },
    /// `<dir>user-files/file-<id>.blob`.
    Blob { dir: String, id: String },
    /// Any other `*.blob`.
    OtherBlob,
    /// `<dir>.migrate`: the migrations the server has applied.
    Migrate { dir: String },
    /// `<db>-journal`: a rollback journal, of the database named `db`.
    Journal { db: String },
    /// Anything else (checked only if it turns out to be a SQLite database).
    Other,
}

/// The role of `rel`, a path below `<id>/data/`.
pub fn role(rel: &str) -> Role {
    let (dir, name) = match rel.rfind('/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => ("", rel),
    };
    if let Some(db) = rel.strip_suffix("-journal")
        && !db.is_empty()
        && !db.ends_with('/')
    {
        return Role::Journal { db: db.to_owned() };
    }
    if name == ".migrate" {
        return Role::Migrate {
            dir: dir.to_owned(),
        };
    }
    let parent = |sub: &str| {
        dir.strip_suffix(sub)
            .filter(|p| p.is_empty() || p.ends_with('/'))
    };
    if name == "account.sqlite"
        && let Some(d) = parent("server-files/")
    {
        return Role::Account { dir: d.to_owned() };
    }
    if let Some(d) = parent("user-files/") {
        if name.starts_with("group-") && name.ends_with(".sqlite") {
            return Role::Group { dir: d.to_owned() };
        }
        if let Some(id) = name
            .strip_prefix("file-")
            .and_then(|n| n.strip_suffix(".blob"))
        {
            return Role::Blob {
                dir: d.to_owned(),
                id: id.to_owned(),
            };
        }
    }
    if name.ends_with(".blob") {
        return Role::OtherBlob;
    }
    Role::Other
}

/// Whether the server accepts `id` as a file or group id
/// (`/^[a-zA-Z0-9_-]+$/`, `src/util/paths.ts`); it refuses to serve any other.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The blob the server reads for file `id`, relative to the data tree.
pub fn blob_path(dir: &str, id: &str) -> String {
    format!("{dir}user-files/file-{id}.blob")
}

/// How a data directory is shown: `data/` itself or a directory in it.
pub fn shown_dir(dir: &str) -> String {
    format!("data/{dir}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_servers_layout_at_any_depth() {
        let account = |d: &str| Role::Account { dir: d.into() };
        assert_eq!(role("server-files/account.sqlite"), account(""));
        assert_eq!(role("data/server-files/account.sqlite"), account("data/"));
        assert_eq!(role("xserver-files/account.sqlite"), Role::Other);
        assert_eq!(role("account.sqlite"), Role::Other);
        assert_eq!(
            role("data/user-files/group-ab_1.sqlite"),
            Role::Group {
                dir: "data/".into()
            }
        );
        assert_eq!(
            role("user-files/file-7f3e.blob"),
            Role::Blob {
                dir: "".into(),
                id: "7f3e".into()
            }
        );
        assert_eq!(role("user-files/budget/file-x.blob"), Role::OtherBlob);
        assert_eq!(role("x.blob"), Role::OtherBlob);
        assert_eq!(role(".migrate"), Role::Migrate { dir: "".into() });
        assert_eq!(
            role("data/.migrate"),
            Role::Migrate {
                dir: "data/".into()
            }
        );
        assert_eq!(role("data/.migrate-test"), Role::Other);
        assert_eq!(
            role("user-files/group-a.sqlite-journal"),
            Role::Journal {
                db: "user-files/group-a.sqlite".into()
            }
        );
        assert_eq!(role("-journal"), Role::Other);
        assert_eq!(role("user-files/budget-1/db.sqlite"), Role::Other);
    }

    #[test]
    fn ids_are_the_servers() {
        assert!(valid_id("b2a1c3d4-0000-4000-8000-123456789abc"));
        assert!(valid_id("A_z-9"));
        for bad in ["", "../x", "a b", "a/b", "ä", &"x".repeat(MAX_ID + 1)] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert_eq!(blob_path("data/", "x"), "data/user-files/file-x.blob");
    }
}
