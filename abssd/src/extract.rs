//! STUB (not committed)
use crate::error::Result;
use std::path::Path;
pub struct Expect {
    pub algorithm: abssd_proto::Algorithm,
    pub sha256: String,
    pub top: String,
    pub max_bytes: u64,
    pub same_owner: bool,
}
pub struct Extracted {
    pub sha256: String,
    pub archive_bytes: u64,
    pub entries: u64,
    pub content_bytes: u64,
}
pub fn extract(
    _archive: &Path,
    _staging: &Path,
    _expect: &Expect,
    _progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Extracted> {
    todo!()
}
