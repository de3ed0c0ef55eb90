//! Checking one budget blob: our private copy of `file-<id>.blob`, read as the
//! zip the sync server hands to clients (`db.sqlite` and `metadata.json`,
//! deflated). Every member is read through, so the zip crate checks each
//! CRC-32; nothing is written anywhere.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Members one blob may have: Actual's have two. The central directory is held
/// in memory while a blob is read (the zip crate bounds it by the directory's
/// size), so this keeps a hostile blob from being read member by member for
/// hours too.
pub const MAX_MEMBERS: usize = 10_000;

/// How far a blob may expand: deflate's own limit is about 1032:1; a budget
/// compresses 4-10:1. Past this, and past [`EXPANSION_FLOOR`], it is a bomb
/// rather than a budget, and reading it through would only burn CPU.
pub const MAX_EXPANSION: u64 = 200;
/// Bytes any blob may expand to, whatever its size.
pub const EXPANSION_FLOOR: u64 = 1 << 30;

/// Read the zip at `path` (`size` bytes) through; the reason when it is not a
/// readable zip.
pub fn check(path: &Path, size: u64) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("our copy cannot be read back: {e}"))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file))
        .map_err(|e| format!("not a readable zip: {e}"))?;
    if zip.len() > MAX_MEMBERS {
        return Err(format!(
            "a zip of {} members; a budget has two (at most {MAX_MEMBERS} are read)",
            zip.len()
        ));
    }
    let budget = size.saturating_mul(MAX_EXPANSION).max(EXPANSION_FLOOR);
    let mut left = budget;
    let mut buf = vec![0u8; 64 << 10];
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| format!("not a readable zip: member {i}: {e}"))?;
        let name = super::bounded(&String::from_utf8_lossy(member.name_raw()));
        loop {
            let n = match member.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("not a readable zip: member {name:?}: {e}")),
            };
            left = left.checked_sub(n).ok_or_else(|| {
                format!("it expands to more than {budget} bytes (member {name:?}); not a budget")
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in members {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        out.into_inner()
    }

    fn check_bytes(bytes: &[u8]) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.blob");
        std::fs::write(&path, bytes).unwrap();
        check(&path, bytes.len() as u64)
    }

    #[test]
    fn a_budget_zip_reads_through() {
        let z = zip_of(&[("db.sqlite", &[7u8; 100_000]), ("metadata.json", b"{}")]);
        check_bytes(&z).unwrap();
    }

    #[test]
    fn not_a_zip_and_a_flipped_byte_are_found() {
        let err = check_bytes(b"certainly not a zip").unwrap_err();
        assert!(err.contains("not a readable zip"), "{err}");
        let err = check_bytes(b"").unwrap_err();
        assert!(err.contains("not a readable zip"), "{err}");
        // Stored, so the flip lands in the data and only the CRC can tell.
        let mut out = io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            w.start_file("db.sqlite", opts).unwrap();
            w.write_all(&[1u8; 4096]).unwrap();
            w.finish().unwrap();
        }
        let mut z = out.into_inner();
        let at = z.windows(4).position(|w| w == [1, 1, 1, 1]).unwrap() + 100;
        z[at] = 2;
        let err = check_bytes(&z).unwrap_err();
        assert!(err.contains("member"), "{err}");
    }
}
