//! Connection slots: how many connections the daemon keeps open, and whose.
//!
//! Checked at accept, before anything is read from the connection: at most
//! `max_connections` in all; at most `max_connections_per_uid` for any uid but
//! root's and the daemon's own; and the last `reserved_connections` slots only for
//! peers that may mutate (root, the operator group), so an operator can always
//! connect while a reader holds everything it is allowed. A connection over a
//! limit is closed at once with a short HTTP 503, and its descriptor is free again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;

/// The slot table, shared by the accept loop and every connection's [`Slot`].
#[derive(Debug)]
pub struct Slots {
    max: u32,
    per_uid: u32,
    reserved: u32,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    /// Connections of peers that may only read (known once their groups are).
    readers: u32,
    by_uid: HashMap<u32, u32>,
    /// Refusals since the last warning (warned at most once a second).
    refused: u64,
    warned: Option<Instant>,
}

/// One open connection's slot, given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
    reader: bool,
}

impl Slots {
    /// The table for `config`'s limits, with at most `max` connections in all
    /// (what the descriptor limit allows, see [`super::descriptors`]).
    pub fn new(config: &Config, max: u32) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            per_uid: config.daemon.max_connections_per_uid,
            reserved: config
                .daemon
                .reserved_connections
                .min(max.saturating_sub(1)),
            state: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections.
    #[cfg(test)]
    fn open(&self) -> u32 {
        self.counts().total
    }

    /// Take a slot for a connection of `uid`, or say why not.
    pub fn take(self: &Arc<Self>, uid: u32) -> Result<Slot, String> {
        let mut c = self.counts();
        let exempt = uid == 0 || uid == nix::unistd::geteuid().as_raw();
        let mine = c.by_uid.get(&uid).copied().unwrap_or(0);
        let refusal = if c.total >= self.max {
            Some(format!(
                "abssd serves at most {} connections (daemon.max_connections); retry later",
                self.max
            ))
        } else if !exempt && mine >= self.per_uid {
            Some(format!(
                "uid {uid} already has {mine} connections open, the most one user may have (daemon.max_connections_per_uid); close some"
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            self.refused(&mut c, uid, &why);
            return Err(why);
        }
        c.total += 1;
        *c.by_uid.entry(uid).or_default() += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            uid,
            reader: false,
        })
    }

    /// Count `slot` as a reader's, unless readers already hold every slot that
    /// is not reserved for operators.
    pub fn admit_reader(&self, slot: &mut Slot) -> Result<(), String> {
        let mut c = self.counts();
        if c.readers >= self.max - self.reserved {
            let why = format!(
                "the {} connections open to peers that may only read are all taken ({} are kept for operators: daemon.reserved_connections); retry later",
                c.readers, self.reserved
            );
            self.refused(&mut c, slot.uid, &why);
            return Err(why);
        }
        c.readers += 1;
        slot.reader = true;
        Ok(())
    }

    fn refused(&self, c: &mut Counts, uid: u32, why: &str) {
        c.refused += 1;
        if c.warned
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                uid,
                refused = c.refused,
                open = c.total,
                "connection refused: {why}"
            );
            c.refused = 0;
            c.warned = Some(Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        c.total -= 1;
        if self.reader {
            c.readers -= 1;
        }
        if let Some(n) = c.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.by_uid.remove(&self.uid);
            }
        }
    }
}

/// The answer written to a refused connection before it is closed: curl and
/// other HTTP clients show it; a WebSocket client sees a failed handshake.
pub fn refusal(why: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": abssd_proto::ErrorKind::Busy.rpc_code(),
            "message": why,
            "data": { "kind": "busy" },
        },
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: u32, per_uid: u32, reserved: u32) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            per_uid,
            reserved,
            state: Mutex::new(Counts::default()),
        })
    }

    #[test]
    fn one_uid_gets_its_share_readers_leave_the_reserve_and_slots_come_back() {
        let s = slots(6, 3, 2);
        let mut held: Vec<Slot> = (0..3).map(|_| s.take(1000).unwrap()).collect();
        assert!(
            s.take(1000)
                .unwrap_err()
                .contains("max_connections_per_uid")
        );
        for slot in &mut held {
            s.admit_reader(slot).unwrap();
        }
        let mut fourth = s.take(1001).unwrap();
        s.admit_reader(&mut fourth).unwrap();
        let mut fifth = s.take(1002).unwrap();
        assert!(s.admit_reader(&mut fifth).unwrap_err().contains("reserved"));
        drop(fifth);
        // Root is exempt from the per-uid share and may use the reserve.
        let root: Vec<Slot> = (0..2).map(|_| s.take(0).unwrap()).collect();
        assert!(s.take(0).unwrap_err().contains("max_connections"));
        assert_eq!(s.open(), 6);
        drop(root);
        drop(held);
        drop(fourth);
        assert_eq!(s.open(), 0);
        assert!(s.counts().by_uid.is_empty());
    }
}
