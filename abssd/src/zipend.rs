//! The end of a zip, read without the zip crate: the end-of-central-directory
//! record (EOCD, and its zip64 form) says where the central directory is, how
//! big it is and how many members it lists. Two callers need it before any
//! zip parser runs: a blob copy in snapshot mode (a zip cut short by a writer
//! paused mid-`writeFile` has a whole first part and no record at its end),
//! and the deep check (a crafted record must not make the zip crate allocate
//! per claimed member). Only the file's last [`TAIL`] bytes are read.

use std::io::{self, Read, Seek, SeekFrom};

/// What every zip this module cares about starts with: a local file header.
pub const LOCAL_HEADER: [u8; 4] = *b"PK\x03\x04";
const EOCD: [u8; 4] = *b"PK\x05\x06";
const EOCD_LEN: u64 = 22;
const LOCATOR: [u8; 4] = *b"PK\x06\x07";
const LOCATOR_LEN: u64 = 20;
const EOCD64: [u8; 4] = *b"PK\x06\x06";
const EOCD64_LEN: u64 = 56;
/// Where the record can be: its 22 bytes and a comment of at most 65535.
pub const TAIL: u64 = EOCD_LEN + 0xffff;

/// What a zip's end record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Members the central directory lists.
    pub members: u64,
    /// Where the central directory starts, from the start of the file.
    pub directory_offset: u64,
    /// How many bytes it takes.
    pub directory_size: u64,
}

/// Whether `file` starts with [`LOCAL_HEADER`] (a zip, as Actual's blobs are
/// unless end-to-end encrypted).
pub fn starts_as_zip(file: &mut (impl Read + Seek)) -> io::Result<bool> {
    let mut head = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    match file.read_exact(&mut head) {
        Ok(()) => Ok(head == LOCAL_HEADER),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read the end record of the zip `file` (`size` bytes): one whose comment
/// ends exactly at the end of the file, naming a central directory that lies
/// inside the file before the record. The reason when there is none (`Ok(Err)`);
/// `Err` only when reading fails.
pub fn read_end(file: &mut (impl Read + Seek), size: u64) -> io::Result<Result<End, String>> {
    let start = size.saturating_sub(TAIL);
    let mut tail = Vec::with_capacity((size - start) as usize);
    file.seek(SeekFrom::Start(start))?;
    file.by_ref().take(size - start).read_to_end(&mut tail)?;
    if (tail.len() as u64) < size - start {
        return Ok(Err(format!(
            "it ends at byte {}, not {size}",
            start + tail.len() as u64
        )));
    }
    Ok(match find_end(&tail) {
        None => Err("no end-of-central-directory record at its end (cut short?)".into()),
        Some(at) => {
            let record = start + at as u64;
            let r = &tail[at..];
            let end = End {
                members: u64::from(le16(r, 10)),
                directory_size: u64::from(le32(r, 12)),
                directory_offset: u64::from(le32(r, 16)),
            };
            let zip64 = end.members == 0xffff
                || end.directory_size == 0xffff_ffff
                || end.directory_offset == 0xffff_ffff;
            if zip64 {
                return zip64_end(file, record).map(|r| r.and_then(|e| inside(e, record)));
            }
            inside(end, record)
        }
    })
}

/// The last place in `tail` where an EOCD record starts whose comment runs
/// exactly to the end.
fn find_end(tail: &[u8]) -> Option<usize> {
    let last = tail.len().checked_sub(EOCD_LEN as usize)?;
    (0..=last).rev().find(|&at| {
        tail[at..at + 4] == EOCD
            && at + EOCD_LEN as usize + le16(tail, at + 20) as usize == tail.len()
    })
}

/// The zip64 record the locator right before the EOCD at `record` points to.
fn zip64_end(file: &mut (impl Read + Seek), record: u64) -> io::Result<Result<End, String>> {
    let Some(locator) = record.checked_sub(LOCATOR_LEN) else {
        return Ok(Err("a zip64 end record without its locator".into()));
    };
    let mut l = [0u8; LOCATOR_LEN as usize];
    file.seek(SeekFrom::Start(locator))?;
    file.read_exact(&mut l)?;
    if l[..4] != LOCATOR {
        return Ok(Err("a zip64 end record without its locator".into()));
    }
    let at = le64(&l, 8);
    if at.checked_add(EOCD64_LEN).is_none_or(|e| e > locator) {
        return Ok(Err(format!(
            "its zip64 end record (at {at}) is not inside the file"
        )));
    }
    let mut r = [0u8; EOCD64_LEN as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut r)?;
    if r[..4] != EOCD64 {
        return Ok(Err(format!("no zip64 end record at {at}")));
    }
    Ok(Ok(End {
        members: le64(&r, 32),
        directory_size: le64(&r, 40),
        directory_offset: le64(&r, 48),
    })
    .and_then(|e| inside(e, at)))
}

/// `end`, when its central directory ends at or before `limit` (where the
/// end record starts).
fn inside(end: End, limit: u64) -> Result<End, String> {
    match end.directory_offset.checked_add(end.directory_size) {
        Some(e) if e <= limit => Ok(end),
        _ => Err(format!(
            "its central directory ({} bytes at {}) is not inside the file",
            end.directory_size, end.directory_offset
        )),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn zip_of(members: usize, comment: &str) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            for i in 0..members {
                w.start_file(format!("m{i}"), opts).unwrap();
                w.write_all(&vec![i as u8; 5000]).unwrap();
            }
            w.set_comment(comment).unwrap();
            w.finish().unwrap();
        }
        out.into_inner()
    }

    fn end_of(bytes: &[u8]) -> Result<End, String> {
        read_end(&mut Cursor::new(bytes), bytes.len() as u64).unwrap()
    }

    #[test]
    fn a_whole_zip_has_its_end() {
        let z = zip_of(3, "a comment, with PK\x05\x06 inside it");
        assert!(starts_as_zip(&mut Cursor::new(&z)).unwrap());
        let end = end_of(&z).unwrap();
        assert_eq!(end.members, 3);
        assert!(
            end.directory_offset > 15_000 && end.directory_size > 0,
            "{end:?}"
        );
    }

    /// `z` (no comment) with its end record moved into zip64 form, as a
    /// writer does past 65535 members or 4 GiB (the zip crate does it only then).
    fn as_zip64(z: &[u8]) -> Vec<u8> {
        let at = z.len() - EOCD_LEN as usize;
        assert_eq!(z[at..at + 4], EOCD);
        let (members, size, offset) = (le16(z, at + 10), le32(z, at + 12), le32(z, at + 16));
        let mut out = z[..at].to_vec();
        let zip64_at = out.len() as u64;
        out.extend_from_slice(&EOCD64);
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&u64::from(members).to_le_bytes());
        out.extend_from_slice(&u64::from(members).to_le_bytes());
        out.extend_from_slice(&u64::from(size).to_le_bytes());
        out.extend_from_slice(&u64::from(offset).to_le_bytes());
        out.extend_from_slice(&LOCATOR);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&zip64_at.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&EOCD);
        out.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&[0xff; 8]);
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn a_zip64_end_is_followed() {
        let z = as_zip64(&zip_of(2, ""));
        let mut read = zip::ZipArchive::new(Cursor::new(&z)).expect("the zip crate reads it");
        assert_eq!(read.len(), 2);
        assert!(read.by_index(1).is_ok());
        let end = end_of(&z).unwrap();
        assert_eq!(end.members, 2);
        for cut in [z.len() / 2, z.len() - 30, z.len() - 1] {
            assert!(
                end_of(&z[..cut]).is_err(),
                "zip64 cut at {cut} of {}",
                z.len()
            );
        }
    }

    #[test]
    fn a_zip_cut_anywhere_has_no_end() {
        let z = zip_of(2, "a comment");
        for cut in [4, 100, z.len() / 2, z.len() - 23, z.len() - 5, z.len() - 1] {
            assert!(end_of(&z[..cut]).is_err(), "cut at {cut} of {}", z.len());
        }
    }

    #[test]
    fn a_local_header_without_an_end_or_with_a_lying_one_is_refused() {
        let mut b = LOCAL_HEADER.to_vec();
        b.extend_from_slice(&[0u8; 1000]);
        assert!(starts_as_zip(&mut Cursor::new(&b)).unwrap());
        assert!(
            end_of(&b)
                .unwrap_err()
                .contains("no end-of-central-directory")
        );
        // An end record whose directory would run past it.
        let mut lying = b.clone();
        lying.extend_from_slice(&EOCD);
        lying.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        lying.extend_from_slice(&100u32.to_le_bytes());
        lying.extend_from_slice(&950u32.to_le_bytes());
        lying.extend_from_slice(&[0, 0]);
        assert!(end_of(&lying).unwrap_err().contains("not inside the file"));
        // A zip64 marker with no locator before it.
        let mut no_locator = b.clone();
        no_locator.extend_from_slice(&EOCD);
        no_locator.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        no_locator.extend_from_slice(&[0u8; 10]);
        assert!(end_of(&no_locator).unwrap_err().contains("locator"));
    }

    #[test]
    fn encrypted_bytes_are_not_a_zip() {
        let b: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(!starts_as_zip(&mut Cursor::new(&b)).unwrap());
        assert!(!starts_as_zip(&mut Cursor::new(b"PK")).unwrap());
        assert!(end_of(&b).is_err());
        assert!(end_of(b"").is_err());
    }
}
