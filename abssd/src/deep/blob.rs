//! Checking one budget blob: our private copy of `file-<id>.blob`, read as the
//! zip the sync server hands to clients (`db.sqlite` and `metadata.json`,
//! deflated). Every member is read through, so the zip crate checks each
//! CRC-32; nothing is written anywhere. Its end record is read first, by us
//! ([`crate::zipend`]): the zip crate reads the whole central directory and
//! allocates for every member it claims, so a crafted blob claiming millions
//! of members or a huge directory is refused before the crate sees it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::zipend;

/// Members one blob may have: Actual's have two. The central directory is held
/// in memory while a blob is read, so this keeps a hostile blob from making
/// the zip crate allocate per claimed member, or from being read member by
/// member for hours.
pub const MAX_MEMBERS: usize = 10_000;

/// The largest central directory read: [`MAX_MEMBERS`] entries with names of
/// a few hundred bytes. Actual's is about 100 bytes.
pub const MAX_DIRECTORY: u64 = 4 << 20;

/// How far a blob may expand: deflate's own limit is about 1032:1; a budget
/// compresses 4-10:1. Past this, and past [`EXPANSION_FLOOR`], it is a bomb
/// rather than a budget, and reading it through would only burn CPU.
pub const MAX_EXPANSION: u64 = 200;
/// Bytes any blob may expand to, whatever its size.
pub const EXPANSION_FLOOR: u64 = 1 << 30;

/// Read the zip at `path` (`size` bytes) through; the reason when it is not a
/// readable zip.
pub fn check(path: &Path, size: u64) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("our copy cannot be read back: {e}"))?;
    let end = zipend::read_end(&mut file, size)
        .map_err(|e| format!("our copy cannot be read back: {e}"))?
        .map_err(|why| format!("not a readable zip: {why}"))?;
    if end.members > MAX_MEMBERS as u64 {
        return Err(format!(
            "a zip claiming {} members; a budget has two (at most {MAX_MEMBERS} are read)",
            end.members
        ));
    }
    if end.directory_size > MAX_DIRECTORY {
        return Err(format!(
            "a zip whose central directory claims {} bytes; a budget's takes about 100 (at \
             most {MAX_DIRECTORY} are read)",
            end.directory_size
        ));
    }
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
        let name = crate::text::bounded(&String::from_utf8_lossy(member.name_raw()));
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

    /// A zip whose end record claims `members` and a directory of
    /// `directory` bytes (a zip64 record when they do not fit the plain one).
    fn claiming(members: u64, directory: u64) -> Vec<u8> {
        // Room for the claimed directory, made of junk, before the records.
        let mut out = b"PK\x03\x04".to_vec();
        out.resize(directory.min(8 << 20) as usize + 4, 0xee);
        let directory_offset = 4u64;
        let zip64_at = out.len() as u64;
        out.extend_from_slice(b"PK\x06\x06");
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&members.to_le_bytes());
        out.extend_from_slice(&members.to_le_bytes());
        out.extend_from_slice(&directory.to_le_bytes());
        out.extend_from_slice(&directory_offset.to_le_bytes());
        out.extend_from_slice(b"PK\x06\x07");
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&zip64_at.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&[0xff; 8]);
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn a_claimed_member_count_or_directory_too_big_is_refused_before_the_zip_crate() {
        let err = check_bytes(&claiming(u64::from(u32::MAX) * 4, 100)).unwrap_err();
        assert!(err.contains("claiming 17179869180 members"), "{err}");
        let err = check_bytes(&claiming(MAX_MEMBERS as u64 + 1, 100)).unwrap_err();
        assert!(err.contains("members"), "{err}");
        let err = check_bytes(&claiming(2, MAX_DIRECTORY + 1)).unwrap_err();
        assert!(err.contains("central directory claims"), "{err}");
        // Within both bounds it goes on to the zip crate, which finds the junk.
        let err = check_bytes(&claiming(2, 100)).unwrap_err();
        assert!(err.contains("not a readable zip"), "{err}");
        // A directory claimed past the end of the blob.
        let mut past = claiming(2, 100);
        let at = past.len() - 22 - 20 - 56 + 40;
        past[at..at + 8].copy_from_slice(&1_000_000u64.to_le_bytes());
        let err = check_bytes(&past).unwrap_err();
        assert!(err.contains("not inside the file"), "{err}");
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
