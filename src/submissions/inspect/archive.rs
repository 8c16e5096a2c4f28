//! Zip files (and Scratch projects, which are zip files) are opened and every entry is
//! decompressed before the archive is accepted. Nothing is extracted to disk: the output is
//! counted and thrown away. Programs inside are fine (it is a student's project); archives
//! inside are not, because they could not be checked without unpacking them in turn.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use super::names::is_unsafe_to_show;
use super::sniff::{ARCHIVE_SIGNATURE_LENGTH, looks_like_archive};
use super::{ArchiveLimits, Refusal};

/// Room for the few bytes of framing a tiny entry adds, so a ten-byte file stored in a
/// three-byte deflate stream is not mistaken for a bomb.
const RATIO_SLACK: u64 = 1024;

/// Names inside that end like an archive are refused even when their bytes are not checked
/// (an empty or unreadable one still says what it is meant to be).
const ARCHIVE_ENDINGS: &[&str] = &[".zip", ".gz", ".tgz", ".7z", ".rar", ".tar", ".jar", ".sb3", ".bz2", ".xz"];

/// Entry names are repeated to the student only up to this many characters.
const MAX_ECHOED_CHARS: usize = 60;

const UNIX_FILE_TYPE: u32 = 0o170000;
const UNIX_SYMLINK: u32 = 0o120000;

pub fn check_zip(path: &Path, filename: &str, limits: &ArchiveLimits) -> Result<(), Refusal> {
    let invalid = |reason: String| Refusal::invalid(filename, reason);
    let file = File::open(path).map_err(|error| Refusal::io(filename, error))?;
    // The whole central directory is read before the entries can be counted; its size, and so
    // the memory it takes, is bounded by the upload size limit the caller enforces.
    let mut archive = ZipArchive::new(BufReader::new(file))
        .map_err(|_| invalid("This zip file is damaged, so we cannot open it.".into()))?;
    // The index keeps one entry per name, so a repeated name would hide an entry from the
    // checks below, and two programs may disagree on which copy is the real one.
    if archive.has_duplicate_names() {
        return Err(invalid("This zip file has two files with the same name inside.".into()));
    }
    if archive.is_empty() {
        return Err(invalid("This zip file has nothing inside.".into()));
    }
    if archive.len() > limits.max_entries {
        return Err(invalid(format!(
            "This zip file has more than {} files inside. Please send fewer files.",
            limits.max_entries
        )));
    }
    let mut budget = Budget { limits, total: 0 };
    for index in 0..archive.len() {
        let compressed_size = check_entry(&archive, index).map_err(invalid)?;
        let mut entry = archive.by_index(index).map_err(|_| invalid(damaged_inside()))?;
        let name = entry.name().map(|name| echoed(&name)).unwrap_or_default();
        let start = budget.drain(&mut entry, compressed_size).map_err(|problem| match problem {
            Drained::Bomb => invalid(
                "This zip file looks like a zip bomb: it unpacks into far more data than it \
                 holds. Please send the files themselves."
                    .into(),
            ),
            Drained::Damaged => invalid(damaged_inside()),
        })?;
        if looks_like_archive(&start) {
            return Err(invalid(nested(&name)));
        }
    }
    Ok(())
}

/// Everything that can be judged from the central directory alone, before any data is read.
/// Returns the entry's compressed size, which bounds how much it may unpack to.
fn check_entry<Source: Read + io::Seek>(archive: &ZipArchive<Source>, index: usize) -> Result<u64, String> {
    let entry = archive.by_index_data(index).map_err(|_| damaged_inside())?;
    // The raw bytes and the decoded name can differ (a Unicode path field overrides the raw
    // one), and unzip tools pick one or the other, so both must be harmless.
    let raw = String::from_utf8_lossy(entry.name_raw());
    let decoded = entry.name().map_err(|_| damaged_inside())?;
    for name in [raw.as_ref(), decoded.as_ref()] {
        check_entry_name(name)?;
    }
    let name = echoed(&decoded);
    let unix_type = (entry.external_attributes() >> 16) & UNIX_FILE_TYPE;
    if entry.is_symlink() || unix_type == UNIX_SYMLINK {
        return Err(format!(
            "This zip file has a shortcut (a symbolic link) inside: “{name}”. Please send the \
             real file instead."
        ));
    }
    if entry.encrypted() {
        return Err(format!(
            "This zip file has a file protected by a password inside: “{name}”. Please send \
             it without a password."
        ));
    }
    if !matches!(entry.compression(), CompressionMethod::Stored | CompressionMethod::Deflated) {
        return Err(format!(
            "This zip file uses a compression method we cannot check, for “{name}”. Please \
             make the zip again with your computer's built-in zip tool."
        ));
    }
    let lowercase = decoded.to_lowercase();
    let lowercase = lowercase.trim_end_matches('/');
    if ARCHIVE_ENDINGS.iter().any(|ending| lowercase.ends_with(ending)) {
        return Err(nested(&name));
    }
    Ok(entry.compressed_size())
}

/// Names that would land outside the folder they are unpacked into, or that cannot be shown.
fn check_entry_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(is_unsafe_to_show) {
        return Err("This zip file has a file with a broken name inside.".into());
    }
    if name.contains('\\') {
        return Err("This zip file has a file name with a backslash (\\) inside. Please make the zip \
             again with your computer's built-in zip tool."
            .into());
    }
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.starts_with('/') || drive {
        return Err("This zip file has a file inside that would be unpacked outside its folder (its \
             path starts at the top of the disk)."
            .into());
    }
    if name.split('/').any(|segment| segment == "..") {
        return Err("This zip file has a file inside that would be unpacked outside its folder (its \
             path uses \"..\")."
            .into());
    }
    Ok(())
}

struct Budget<'limits> {
    limits: &'limits ArchiveLimits,
    total: u64,
}

enum Drained {
    Bomb,
    Damaged,
}

impl Budget<'_> {
    /// Decompresses one entry into nothing, stopping as soon as it outgrows its own ratio or
    /// the archive outgrows its total: the declared sizes are the attacker's to choose, so
    /// only the bytes actually produced are counted. Returns the entry's first bytes.
    fn drain(&mut self, entry: &mut impl Read, compressed_size: u64) -> Result<Vec<u8>, Drained> {
        let entry_cap = compressed_size.saturating_mul(self.limits.max_ratio).saturating_add(RATIO_SLACK);
        let mut start = Vec::with_capacity(ARCHIVE_SIGNATURE_LENGTH);
        let mut buffer = vec![0; 64 * 1024];
        let mut produced: u64 = 0;
        loop {
            let read = match entry.read(&mut buffer) {
                Ok(0) => return Ok(start),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // Bad deflate data and a wrong checksum both end up here.
                Err(_) => return Err(Drained::Damaged),
            };
            if start.len() < ARCHIVE_SIGNATURE_LENGTH {
                let wanted = (ARCHIVE_SIGNATURE_LENGTH - start.len()).min(read);
                start.extend_from_slice(&buffer[..wanted]);
            }
            produced += read as u64;
            self.total += read as u64;
            if produced > entry_cap || self.total > self.limits.max_total_uncompressed {
                return Err(Drained::Bomb);
            }
        }
    }
}

fn damaged_inside() -> String {
    "This zip file is damaged inside, so we cannot check it.".into()
}

fn nested(name: &str) -> String {
    format!(
        "This zip file has another packed file inside: “{name}”. Please unpack it, or send it \
         on its own."
    )
}

/// Entry names have already passed [`check_entry_name`], so they hold nothing unsafe to show;
/// they are only cut short.
fn echoed(name: &str) -> String {
    let mut shown: String = name.chars().take(MAX_ECHOED_CHARS).collect();
    if name.chars().count() > MAX_ECHOED_CHARS {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
