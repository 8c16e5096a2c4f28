//! Decides whether an uploaded file may be kept, before anything is stored.
//!
//! The bytes decide what a file is; the name only has to agree with them. Everything here is
//! blocking std I/O on a file that is already on local disk, so the caller runs it on the
//! blocking pool and maps a [`Refusal`] to 415 or 422.

mod archive;
mod images;
mod names;
mod sniff;
mod text;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use names::check_filename;
use sniff::{Family, Head};

/// Limits for archives, from configuration (the caller passes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    pub max_entries: usize,
    pub max_total_uncompressed: u64,
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self { max_entries: 1000, max_total_uncompressed: 200 * 1024 * 1024, max_ratio: 100 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Text,
    Notebook,
    Image,
    Pdf,
    Zip,
}

impl FileKind {
    /// A stable lowercase word, for storage and API bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Notebook => "notebook",
            Self::Image => "image",
            Self::Pdf => "pdf",
            Self::Zip => "zip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub kind: FileKind,
    /// The media type the file is served with: e.g. "text/plain; charset=utf-8",
    /// "application/x-ipynb+json", "image/png", "application/pdf", "application/zip".
    pub content_type: &'static str,
    /// The cleaned display name.
    pub filename: String,
    /// Some(path) when the content was rewritten (images re-encoded without metadata): the
    /// caller stores this file instead of the upload. It lives in the same directory as the
    /// input, and the caller deletes it.
    pub rewritten: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Refusal {
    /// 415: the type is not allowed (executables, unknown binaries, extension and content
    /// disagree).
    Unsupported { filename: String, reason: String },
    /// 422: the type is allowed but the content is unacceptable.
    Invalid { filename: String, reason: String },
    /// 500: the file could not be read or the cleaned copy could not be written. This is the
    /// server's fault, never the student's, so it must not be shown as a refusal of the file.
    Io { filename: String, error: io::Error },
}

impl Refusal {
    /// The name to show beside the reason; never contains control characters.
    pub fn filename(&self) -> &str {
        match self {
            Self::Unsupported { filename, .. } | Self::Invalid { filename, .. } | Self::Io { filename, .. } => filename,
        }
    }

    /// A short sentence a child can read. For `Io` it stays generic: paths and system errors
    /// are for the log, not for the student.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unsupported { reason, .. } | Self::Invalid { reason, .. } => reason,
            Self::Io { .. } => "Something went wrong on our side while checking this file.",
        }
    }

    pub(crate) fn unsupported(filename: &str, reason: impl Into<String>) -> Self {
        Self::Unsupported { filename: filename.to_owned(), reason: reason.into() }
    }

    pub(crate) fn invalid(filename: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { filename: filename.to_owned(), reason: reason.into() }
    }

    pub(crate) fn io(filename: &str, error: io::Error) -> Self {
        Self::Io { filename: filename.to_owned(), error }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.filename(), self.reason())
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

const TEXT_TYPE: &str = "text/plain; charset=utf-8";
const NOTEBOOK_TYPE: &str = "application/x-ipynb+json";
const PDF_TYPE: &str = "application/pdf";
const ZIP_TYPE: &str = "application/zip";

/// Told to a student whose file is of a kind we never take.
const WHAT_WE_ACCEPT: &str = "You can send code or text files, notebooks, pictures (PNG, JPEG, \
                              GIF or WebP), PDF documents and zip files.";

/// Checks the declared name first (cheap), then the bytes at `path`. Blocking: the caller runs
/// it on the blocking pool.
pub fn inspect(path: &Path, declared_name: &str, limits: &ArchiveLimits) -> Result<Inspected, Refusal> {
    let filename = check_filename(declared_name)?;
    let head = read_head(path).map_err(|error| Refusal::io(&filename, error))?;
    if head.bytes.is_empty() {
        return Err(Refusal::invalid(&filename, "This file is empty."));
    }
    let family = Family::from_filename(&filename);
    let (kind, content_type, rewritten) = match family {
        Family::Text | Family::Notebook => {
            refuse_binary_as_text(&filename, &head)?;
            text::refuse_utf16(&filename, &head.bytes)?;
            if family == Family::Text {
                text::check_text(path, &filename)?;
                (FileKind::Text, TEXT_TYPE, None)
            } else {
                text::check_notebook(path, &filename)?;
                (FileKind::Notebook, NOTEBOOK_TYPE, None)
            }
        }
        Family::Image(expected) => {
            let format = images::expect_format(&filename, &head, expected)?;
            let rewritten = images::reencode(path, &filename, format)?;
            (FileKind::Image, format.content_type(), Some(rewritten))
        }
        Family::Pdf => {
            if !head.bytes.starts_with(b"%PDF-") {
                return Err(mismatch(&filename, &head, "a PDF document"));
            }
            (FileKind::Pdf, PDF_TYPE, None)
        }
        Family::Zip => {
            if !sniff::starts_like_zip(&head.bytes) {
                return Err(mismatch(&filename, &head, "a zip file"));
            }
            archive::check_zip(path, &filename, limits)?;
            (FileKind::Zip, ZIP_TYPE, None)
        }
        Family::Unknown => return Err(unknown_kind(&filename, &head)),
    };
    Ok(Inspected { kind, content_type, filename, rewritten })
}

/// Enough of the start of the file for every signature `infer` and we look for.
const HEAD_LENGTH: u64 = 8 * 1024;

fn read_head(path: &Path) -> io::Result<Head> {
    let mut bytes = Vec::with_capacity(HEAD_LENGTH as usize);
    File::open(path)?.take(HEAD_LENGTH).read_to_end(&mut bytes)?;
    Ok(Head::new(bytes))
}

/// A program or a picture renamed to `.py` is refused before its bytes are read as text, so the
/// student hears what the file really is rather than "not UTF-8".
fn refuse_binary_as_text(filename: &str, head: &Head) -> Result<(), Refusal> {
    match head.binary_description() {
        Some(looks_like) => {
            Err(Refusal::unsupported(filename, format!("This file looks like {looks_like}, not a text or code file.")))
        }
        None => Ok(()),
    }
}

fn mismatch(filename: &str, head: &Head, expected: &str) -> Refusal {
    let reason = match head.description() {
        Some(looks_like) => {
            format!("This file looks like {looks_like}, but its name says it is {expected}.")
        }
        None => format!("This file is not really {expected}, even though its name says so."),
    };
    Refusal::unsupported(filename, reason)
}

fn unknown_kind(filename: &str, head: &Head) -> Refusal {
    let reason = match (head.description(), names::extension(filename)) {
        (Some(looks_like), _) => {
            format!("This file looks like {looks_like}, which we cannot accept. {WHAT_WE_ACCEPT}")
        }
        (None, Some(extension)) => {
            format!("We cannot accept .{extension} files. {WHAT_WE_ACCEPT}")
        }
        (None, None) => format!("We cannot accept this kind of file. {WHAT_WE_ACCEPT}"),
    };
    Refusal::unsupported(filename, reason)
}

#[cfg(test)]
mod tests;
