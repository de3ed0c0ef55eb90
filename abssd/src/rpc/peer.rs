//! Who is on the other end of a connection, from `SO_PEERCRED`, and what they
//! may do (SPEC §9): root, the daemon's own user and members of the operator
//! group may mutate; anyone else may only read.

use std::ffi::CString;

use abssd_proto::Actor;
use nix::unistd::{Gid, Group, Uid, User};

/// The credentials of a connection, read once at accept.
#[derive(Debug, Clone)]
pub struct Peer {
    /// uid, user name and pid.
    pub actor: Actor,
    /// Whether mutating methods are allowed.
    pub may_mutate: bool,
}

impl Peer {
    /// Credentials of a connected stream; `None` when the kernel gives none.
    /// User and group lookups may block (NSS), so they run on a blocking thread.
    pub async fn of(stream: &tokio::net::UnixStream, operator_group: &str) -> Option<Peer> {
        let cred = stream.peer_cred().ok()?;
        let group = operator_group.to_owned();
        let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid().unwrap_or(0));
        tokio::task::spawn_blocking(move || Peer::from_ids(uid, gid, pid, &group))
            .await
            .ok()
    }

    /// Resolve names and authorization for raw ids (blocking NSS lookups; cheap
    /// with files-based NSS, done once per connection).
    pub fn from_ids(uid: u32, gid: u32, pid: i32, operator_group: &str) -> Peer {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let name = user
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_else(|| uid.to_string());
        let may_mutate = uid == 0
            || uid == nix::unistd::geteuid().as_raw()
            || in_group(user.as_ref(), Gid::from_raw(gid), operator_group);
        Peer {
            actor: Actor {
                uid,
                user: name,
                pid,
            },
            may_mutate,
        }
    }
}

/// Whether the user (primary or supplementary) belongs to `group`.
fn in_group(user: Option<&User>, primary: Gid, group: &str) -> bool {
    let Ok(Some(group)) = Group::from_name(group) else {
        return false;
    };
    if primary == group.gid {
        return true;
    }
    let Some(user) = user else { return false };
    if group.mem.contains(&user.name) {
        return true;
    }
    let Ok(name) = CString::new(user.name.clone()) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|gids| gids.contains(&group.gid))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_self_may_mutate_strangers_may_not() {
        assert!(Peer::from_ids(0, 0, 1, "no-such-group-xyz").may_mutate);
        let me = nix::unistd::geteuid().as_raw();
        assert!(Peer::from_ids(me, 0, 1, "no-such-group-xyz").may_mutate);
        // An unnamed uid that is neither root nor us, with no group.
        let stranger = Peer::from_ids(54_321, 54_321, 1, "no-such-group-xyz");
        assert!(!stranger.may_mutate);
        assert_eq!(stranger.actor.user, "54321");
    }
}
