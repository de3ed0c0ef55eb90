//! Backups in use: the ids whose archives a running restore or verify reads,
//! and the ids a removal is deleting. Both live in one set under one mutex,
//! so claiming a backup and starting its removal exclude each other with no
//! window between a check and the act: a removal never starts on a backup
//! that is read, and a reader never starts on one that is being removed.
//!
//! A reader claims before it reads the index, so once a removal has ended
//! the reader sees the entry it left (`status: removed`) and refuses; while
//! it runs, the claim is refused.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The in-use set of a daemon (one per [`super::Ctx`]).
#[derive(Debug, Default)]
pub struct InUse(Mutex<Claims>);

#[derive(Debug, Default)]
struct Claims {
    /// Backup id → how many operations read its archive now (a verify and a
    /// `--dest` restore of one backup may run together).
    readers: HashMap<String, usize>,
    /// Backup ids whose removal has begun and not ended.
    removing: HashSet<String>,
}

impl InUse {
    /// Claim backup `id` for reading until the guard is dropped; refused
    /// (not found: it is going away) while a removal of it runs.
    pub fn claim(&self, id: &str) -> Result<ReadClaim<'_>> {
        let mut claims = self.lock();
        if claims.removing.contains(id) {
            return Err(Error::NotFound {
                what: "backup",
                name: id.to_owned(),
                hint: " (a prune is removing it)".to_owned(),
            });
        }
        *claims.readers.entry(id.to_owned()).or_default() += 1;
        Ok(ReadClaim {
            owner: self,
            id: id.to_owned(),
        })
    }

    /// Whether a running operation reads backup `id`'s archive now.
    pub fn is_in_use(&self, id: &str) -> bool {
        self.lock().readers.contains_key(id)
    }

    /// The ids read now (what a prune's plan shows as in use).
    pub fn snapshot(&self) -> HashSet<String> {
        self.lock().readers.keys().cloned().collect()
    }

    /// Begin removing backup `id`, unless it is read now (`None`) or another
    /// removal of it runs (`None` too). Until the guard is dropped, claims of
    /// `id` are refused.
    pub fn begin_removal(&self, id: &str) -> Option<RemovalClaim<'_>> {
        let mut claims = self.lock();
        if claims.readers.contains_key(id) || !claims.removing.insert(id.to_owned()) {
            return None;
        }
        Some(RemovalClaim {
            owner: self,
            id: id.to_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Claims> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A backup claimed for reading; released on drop.
#[derive(Debug)]
pub struct ReadClaim<'a> {
    owner: &'a InUse,
    id: String,
}

impl Drop for ReadClaim<'_> {
    fn drop(&mut self) {
        let mut claims = self.owner.lock();
        if let Some(n) = claims.readers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                claims.readers.remove(&self.id);
            }
        }
    }
}

/// A backup being removed; readers are refused until it is dropped.
#[derive(Debug)]
pub struct RemovalClaim<'a> {
    owner: &'a InUse,
    id: String,
}

impl Drop for RemovalClaim<'_> {
    fn drop(&mut self) {
        self.owner.lock().removing.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_claim_leaves_the_holder_its_key() {
        let held = Held::<String>::default();
        let first = held.claim("alpha".into()).expect("free");
        assert!(held.claim("alpha".into()).is_none());
        assert!(held.claim("alpha".into()).is_none(), "still held");
        assert!(held.claim("beta".into()).is_some());
        drop(first);
        assert!(held.claim("alpha".into()).is_some());
    }

    #[test]
    fn a_read_backup_cannot_begin_removal_until_every_reader_ends() {
        let set = InUse::default();
        let a = set.claim("b1").unwrap();
        let b = set.claim("b1").unwrap();
        assert!(set.is_in_use("b1"));
        assert_eq!(set.snapshot(), HashSet::from(["b1".to_owned()]));
        assert!(set.begin_removal("b1").is_none());
        drop(a);
        assert!(set.begin_removal("b1").is_none(), "one reader is left");
        drop(b);
        assert!(!set.is_in_use("b1"));
        assert!(set.begin_removal("b1").is_some());
    }

    #[test]
    fn a_backup_being_removed_cannot_be_claimed_or_removed_twice() {
        let set = InUse::default();
        let removing = set.begin_removal("b1").unwrap();
        let err = set.claim("b1").unwrap_err();
        assert_eq!(err.kind(), abssd_proto::ErrorKind::NotFound);
        assert!(err.to_string().contains("prune"), "{err}");
        assert!(set.begin_removal("b1").is_none());
        // Other backups are not affected.
        drop(set.claim("b2").unwrap());
        drop(removing);
        drop(set.claim("b1").unwrap());
    }
}

/// Keys running operations hold, each by one at a time: the second asker
/// gets `None` and passes the key by instead of racing the first.
#[derive(Debug)]
pub struct Held<K: Eq + Hash>(Mutex<HashSet<K>>);

impl<K: Eq + Hash> Default for Held<K> {
    fn default() -> Self {
        Held(Mutex::new(HashSet::new()))
    }
}

impl<K: Eq + Hash + Clone> Held<K> {
    /// Claim `key` until the guard is dropped; `None` while another holds it.
    pub fn claim(&self, key: K) -> Option<Hold<'_, K>> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Lazily: a guard made and dropped here would remove the key the
        // other holder has (and lock the set this still holds).
        held.insert(key.clone()).then(|| Hold { owner: self, key })
    }
}

/// A key claimed from a [`Held`] set; released on drop.
#[derive(Debug)]
pub struct Hold<'a, K: Eq + Hash> {
    owner: &'a Held<K>,
    key: K,
}

impl<K: Eq + Hash> Drop for Hold<'_, K> {
    fn drop(&mut self) {
        self.owner
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The instances a backup job (`backup.run`) works on now: the per-instance
/// timer and the all-instances timer may fire together (both `Persistent=`
/// after a boot), and two jobs of one instance would each prune the other's
/// new backup. The second job passes the instance by.
pub type Jobs = Held<String>;

/// The archive keys pushed now, as (remote, key): a second push of one backup
/// to one remote passes it by instead of racing the first.
pub type Pushing = Held<(String, String)>;
