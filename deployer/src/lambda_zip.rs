//! The function's deployment package: a zip holding `bootstrap`, written so that the same
//! binary always gives the same bytes (fixed timestamp, fixed mode, one entry), and read back
//! to check a prebuilt package's binary before it is uploaded.
//!
//! Lambda compares `CodeSha256`, so a reproducible zip makes a redeploy of unchanged code,
//! even from a fresh checkout whose files are all new, upload nothing. Format: PKWARE's
//! APPNOTE.TXT (local file header, central directory, end of central directory; no ZIP64,
//! since Lambda's direct upload stops at 50 MB).

use std::io::{Read, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;

/// The name Lambda's `provided.al2023` runtime runs.
pub const ENTRY: &str = "bootstrap";

/// MS-DOS date of 1980-01-01, the zip format's earliest: every entry carries it.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;
/// Deflate level 4: on the api's 6.5 MB binary it takes about half the time of level 6
/// (a code change waits for it) for a zip 2% larger; an upload of the difference costs a few
/// milliseconds.
const ZIP_LEVEL: u32 = 4;
/// A regular file, rwxr-xr-x, in the upper half of the external attributes (Unix host).
const UNIX_MODE: u32 = 0o100_755;

/// The zip of one executable `bootstrap`, the same bytes for the same `binary`.
pub fn zip_bootstrap(binary: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::new(ZIP_LEVEL));
    encoder
        .write_all(binary)
        .expect("writing to memory cannot fail");
    let compressed = encoder.finish().expect("writing to memory cannot fail");
    let crc = crc32fast::hash(binary);
    let name = ENTRY.as_bytes();
    let mut out = Vec::with_capacity(compressed.len() + 128);

    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0 (deflate)
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&8u16.to_le_bytes()); // method: deflate
    out.extend_from_slice(&DOS_TIME.to_le_bytes());
    out.extend_from_slice(&DOS_DATE.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    out.extend_from_slice(&(binary.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    out.extend_from_slice(name);
    out.extend_from_slice(&compressed);

    // Central directory: one entry.
    let directory_at = out.len();
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&DOS_TIME.to_le_bytes());
    out.extend_from_slice(&DOS_DATE.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    out.extend_from_slice(&(binary.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out.extend_from_slice(&0u16.to_le_bytes()); // disk number
    out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    out.extend_from_slice(&(UNIX_MODE << 16).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name);
    let directory_len = out.len() - directory_at;

    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(directory_len as u32).to_le_bytes());
    out.extend_from_slice(&(directory_at as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Why a zip's `bootstrap` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("it is not a zip file (no end of central directory)")]
    NotZip,
    #[error("it has no `bootstrap` at its top level, which Lambda's provided.al2023 runtime runs")]
    NoBootstrap,
    #[error(
        "its `bootstrap` is stored with compression method {0}; only stored and deflate are read"
    )]
    Method(u16),
    #[error("it is truncated or malformed")]
    Malformed,
    #[error("its `bootstrap` cannot be inflated")]
    Inflate(#[source] std::io::Error),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ZipError::Malformed)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ZipError::Malformed)
}

/// Where the zip's end record is: the last 22 bytes, before a comment of at most 64 KiB.
fn end_record(zip: &[u8]) -> Result<usize, ZipError> {
    let floor = zip.len().saturating_sub(22 + 0xFFFF);
    (floor..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| zip[i..].starts_with(&0x0605_4b50u32.to_le_bytes()))
        .ok_or(ZipError::NotZip)
}

/// What the zip's entries add up to unzipped, as its central directory says (what
/// Lambda's 250 MB limit counts); 0 for what is not a zip (refused elsewhere).
pub fn unzipped_size(zip: &[u8]) -> usize {
    let sizes = || -> Result<usize, ZipError> {
        let end = end_record(zip)?;
        let entries = u16_at(zip, end + 10)?;
        let mut at = u32_at(zip, end + 16)? as usize;
        let mut total = 0usize;
        for _ in 0..entries {
            if u32_at(zip, at)? != 0x0201_4b50 {
                return Err(ZipError::Malformed);
            }
            total += u32_at(zip, at + 24)? as usize;
            at += 46
                + u16_at(zip, at + 28)? as usize
                + u16_at(zip, at + 30)? as usize
                + u16_at(zip, at + 32)? as usize;
        }
        Ok(total)
    };
    sizes().unwrap_or(0)
}

/// The first `len` bytes of the zip's `bootstrap` (enough for its ELF header).
pub fn bootstrap_head(zip: &[u8], len: usize) -> Result<Vec<u8>, ZipError> {
    let end = end_record(zip)?;
    let entries = u16_at(zip, end + 10)?;
    let mut at = u32_at(zip, end + 16)? as usize;
    for _ in 0..entries {
        if u32_at(zip, at)? != 0x0201_4b50 {
            return Err(ZipError::Malformed);
        }
        let method = u16_at(zip, at + 10)?;
        let compressed = u32_at(zip, at + 20)? as usize;
        let name_len = u16_at(zip, at + 28)? as usize;
        let extra_len = u16_at(zip, at + 30)? as usize;
        let comment_len = u16_at(zip, at + 32)? as usize;
        let local = u32_at(zip, at + 42)? as usize;
        let name = zip
            .get(at + 46..at + 46 + name_len)
            .ok_or(ZipError::Malformed)?;
        at += 46 + name_len + extra_len + comment_len;
        if name != ENTRY.as_bytes() {
            continue;
        }
        let data_at =
            local + 30 + u16_at(zip, local + 26)? as usize + u16_at(zip, local + 28)? as usize;
        let data = zip
            .get(data_at..data_at + compressed)
            .ok_or(ZipError::Malformed)?;
        let mut head = Vec::with_capacity(len);
        match method {
            0 => head.extend_from_slice(&data[..len.min(data.len())]),
            8 => {
                flate2::read::DeflateDecoder::new(data)
                    .take(len as u64)
                    .read_to_end(&mut head)
                    .map_err(ZipError::Inflate)?;
            }
            m => return Err(ZipError::Method(m)),
        }
        return Ok(head);
    }
    Err(ZipError::NoBootstrap)
}

/// The CPU an ELF executable is for, from its header's `e_machine` (System V ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    X86_64,
    Aarch64,
    Other(u16),
    /// Not a 64-bit little-endian ELF file at all (a script, a Mach-O binary...).
    NotElf,
}

impl Machine {
    pub fn of(head: &[u8]) -> Machine {
        if head.len() < 20 || !head.starts_with(b"\x7fELF") || head[4] != 2 || head[5] != 1 {
            return Machine::NotElf;
        }
        match u16::from_le_bytes([head[18], head[19]]) {
            62 => Machine::X86_64,
            183 => Machine::Aarch64,
            m => Machine::Other(m),
        }
    }

    /// As infra.toml's `architecture` names it.
    pub fn label(self) -> String {
        match self {
            Machine::X86_64 => "x86_64".to_owned(),
            Machine::Aarch64 => "arm64".to_owned(),
            Machine::Other(m) => format!("ELF machine {m}"),
            Machine::NotElf => "not a 64-bit Linux executable".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16) -> Vec<u8> {
        let mut b = b"\x7fELF\x02\x01\x01".to_vec();
        b.resize(18, 0);
        b.extend_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(&[0xAB; 4096]);
        b
    }

    #[test]
    fn the_unzipped_size_is_what_lambdas_250_mb_limit_counts() {
        let binary = elf(62);
        let zip = zip_bootstrap(&binary);
        assert!(zip.len() < binary.len(), "it compresses");
        assert_eq!(unzipped_size(&zip), binary.len());
        assert_eq!(unzipped_size(b"not a zip"), 0);
    }

    #[test]
    fn the_same_binary_gives_the_same_zip_and_reads_back() {
        let binary = elf(62);
        let zip = zip_bootstrap(&binary);
        assert_eq!(zip, zip_bootstrap(&binary));
        assert_ne!(zip, zip_bootstrap(&elf(183)));
        let head = bootstrap_head(&zip, 20).unwrap();
        assert_eq!(head, binary[..20]);
        assert_eq!(Machine::of(&head), Machine::X86_64);
        assert_eq!(
            Machine::of(&bootstrap_head(&zip_bootstrap(&elf(183)), 64).unwrap()),
            Machine::Aarch64
        );
    }

    #[test]
    fn what_is_not_an_executable_says_so() {
        assert_eq!(Machine::of(b"#!/bin/sh\necho hi\n"), Machine::NotElf);
        assert!(matches!(
            bootstrap_head(b"hello", 20),
            Err(ZipError::NotZip)
        ));
    }
}
