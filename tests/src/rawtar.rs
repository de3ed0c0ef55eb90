//! Tar streams written header by header, for the archives no honest tool
//! makes: absolute names, `..`, device nodes, duplicate entries, links that
//! escape, oversized name records.

/// A tar stream under construction (GNU headers, GNU long-name records when a
/// name or link target exceeds 100 bytes).
#[derive(Debug, Default, Clone)]
pub struct RawTar {
    bytes: Vec<u8>,
}

/// Entry type flags.
pub mod kind {
    /// Regular file.
    pub const FILE: u8 = b'0';
    /// Hardlink.
    pub const HARDLINK: u8 = b'1';
    /// Symlink.
    pub const SYMLINK: u8 = b'2';
    /// Character device.
    pub const CHAR: u8 = b'3';
    /// Block device.
    pub const BLOCK: u8 = b'4';
    /// Directory.
    pub const DIR: u8 = b'5';
    /// FIFO.
    pub const FIFO: u8 = b'6';
    /// Contiguous file.
    pub const CONTIGUOUS: u8 = b'7';
    /// pax global header.
    pub const PAX_GLOBAL: u8 = b'g';
    /// GNU sparse file.
    pub const SPARSE: u8 = b'S';
    /// GNU long name record.
    pub const LONG_NAME: u8 = b'L';
}

impl RawTar {
    /// An empty stream.
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// A regular file, mode 0644.
    pub fn file(self, name: &str, data: &[u8]) -> RawTar {
        self.entry(name.as_bytes(), kind::FILE, data, b"", 0o644)
    }

    /// A directory, mode 0755.
    pub fn dir(self, name: &str) -> RawTar {
        self.entry(name.as_bytes(), kind::DIR, b"", b"", 0o755)
    }

    /// A symlink.
    pub fn symlink(self, name: &str, target: &str) -> RawTar {
        self.entry(
            name.as_bytes(),
            kind::SYMLINK,
            b"",
            target.as_bytes(),
            0o777,
        )
    }

    /// A hardlink to `target` (an archive name).
    pub fn hardlink(self, name: &str, target: &str) -> RawTar {
        self.entry(
            name.as_bytes(),
            kind::HARDLINK,
            b"",
            target.as_bytes(),
            0o644,
        )
    }

    /// Any entry: header (after long-name records when needed), data, padding.
    pub fn entry(mut self, name: &[u8], kind: u8, data: &[u8], link: &[u8], mode: u32) -> RawTar {
        if name.len() > 100 {
            self = self.long_record(kind::LONG_NAME, name);
        }
        if link.len() > 100 {
            self = self.long_record(b'K', link);
        }
        let header = header(name, kind, data.len() as u64, link, mode);
        self.bytes.extend_from_slice(&header);
        self.push_data(data);
        self
    }

    /// A GNU long-name record of `len` bytes (a hostile one when huge), with
    /// no entry after it.
    pub fn long_name_record(mut self, len: usize) -> RawTar {
        let name = vec![b'a'; len];
        self = self.long_record(kind::LONG_NAME, &name);
        self
    }

    /// Raw bytes, appended as they are.
    pub fn raw(mut self, bytes: &[u8]) -> RawTar {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// The stream with its end-of-archive marker (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }

    /// The stream as it is, without an end-of-archive marker.
    pub fn unfinished(self) -> Vec<u8> {
        self.bytes
    }

    fn long_record(mut self, kind: u8, value: &[u8]) -> RawTar {
        let mut data = value.to_vec();
        data.push(0);
        let h = header(b"././@LongLink", kind, data.len() as u64, b"", 0o644);
        self.bytes.extend_from_slice(&h);
        self.push_data(&data);
        self
    }

    fn push_data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }
}

/// One GNU header block (names and link targets cut at 100 bytes: the long
/// record before it carries the whole value).
pub fn header(name: &[u8], kind: u8, size: u64, link: &[u8], mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    if kind == kind::SPARSE {
        // The real size of a sparse file with no data blocks.
        octal(&mut h[483..495], size);
    }
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let cksum = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(cksum.as_bytes());
    h
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}
