//! How one layer of settings is laid over another ([`Merge`]), and the keys
//! no section knows ([`Unknown`]): below every section of the file's model.

use serde_json::{Map, Value};

/// Keys no section knows, in the order the file has them (kept, and warned about).
pub type Unknown = Map<String, Value>;

/// One layer of settings laid over another, key by key: what the upper one
/// sets wins, sections merge the same way inside, unknown keys add up.
pub trait Merge {
    /// `self` with `upper` laid over it.
    fn merge(self, upper: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn merge(self, upper: Self) -> Self {
        upper.or(self)
    }
}

impl Merge for Unknown {
    fn merge(mut self, upper: Self) -> Self {
        self.extend(upper);
        self
    }
}
