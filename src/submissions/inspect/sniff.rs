//! What a file claims to be (its extension) and what its first bytes say it is.

use infer::MatcherType;

use super::images::Picture;
use super::names;

/// What the extension promises; the content still has to agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Text,
    Notebook,
    Image(Picture),
    Pdf,
    Zip,
    Unknown,
}

/// Source code and plain text a student is likely to hand in. Everything is served as
/// `text/plain` and as an attachment, so a `.html` or `.sh` is never rendered or run by us.
const TEXT_EXTENSIONS: &[&str] = &[
    "txt", "md", "markdown", "rst", "csv", "tsv", "log", "json", "yaml", "yml", "toml", "ini", "cfg", "xml", "html",
    "htm", "css", "scss", "js", "mjs", "jsx", "ts", "tsx", "py", "pyw", "r", "rb", "go", "rs", "java", "kt", "scala",
    "swift", "c", "h", "cpp", "cc", "cxx", "hpp", "cs", "php", "lua", "pl", "hs", "dart", "sql", "sh", "bash", "ino",
    "pde",
];

impl Family {
    /// A name without an extension (`Makefile`, `.gitignore`, `README`) is taken as text: such
    /// files are common in code projects, and the content is checked as text all the same.
    pub fn from_filename(filename: &str) -> Self {
        let Some(extension) = names::extension(filename) else {
            return Self::Text;
        };
        match extension.as_str() {
            "ipynb" => Self::Notebook,
            "png" => Self::Image(Picture::Png),
            "jpg" | "jpeg" => Self::Image(Picture::Jpeg),
            "gif" => Self::Image(Picture::Gif),
            "webp" => Self::Image(Picture::WebP),
            "pdf" => Self::Pdf,
            // Scratch saves its projects as zip files with this extension.
            "zip" | "sb3" => Self::Zip,
            other if TEXT_EXTENSIONS.contains(&other) => Self::Text,
            _ => Self::Unknown,
        }
    }
}

/// The start of a file and what `infer` recognises in it.
pub struct Head {
    pub bytes: Vec<u8>,
    pub sniffed: Option<infer::Type>,
}

impl Head {
    pub fn new(bytes: Vec<u8>) -> Self {
        let sniffed = infer::get(&bytes);
        Self { bytes, sniffed }
    }

    /// `infer`'s extension for what it recognised, e.g. "png", "exe".
    pub fn sniffed_extension(&self) -> Option<&'static str> {
        self.sniffed.as_ref().map(infer::Type::extension)
    }

    /// What the file looks like, in words for a child, when `infer` recognises it.
    pub fn description(&self) -> Option<&'static str> {
        self.sniffed.as_ref().map(describe)
    }

    /// Like [`Self::description`], but silent for formats that are themselves plain text:
    /// `infer` calls a `.py` starting with `#!` a shell script, and an `.html` HTML.
    pub fn binary_description(&self) -> Option<&'static str> {
        let sniffed = self.sniffed.as_ref()?;
        let is_text = sniffed.matcher_type() == MatcherType::Text || matches!(sniffed.extension(), "pem" | "ps");
        if is_text { None } else { Some(describe(sniffed)) }
    }
}

fn describe(sniffed: &infer::Type) -> &'static str {
    match sniffed.extension() {
        "exe" | "dll" => return "a Windows program",
        "msi" => return "a Windows installer or an old Office document",
        "elf" => return "a Linux program",
        "mach" => return "a Mac program",
        "class" => return "a compiled Java program",
        "dex" | "dey" => return "an Android program",
        "wasm" => return "a WebAssembly program",
        "obj" | "bc" => return "compiled program code",
        "deb" | "rpm" => return "a software package",
        "png" => return "a PNG picture",
        "jpg" => return "a JPEG photo",
        "gif" => return "a GIF picture",
        "webp" => return "a WebP picture",
        "pdf" => return "a PDF document",
        "zip" => return "a zip file",
        "epub" | "mobi" => return "an e-book",
        "sqlite" => return "a database file",
        "swf" => return "a Flash animation",
        _ => {}
    }
    match sniffed.matcher_type() {
        MatcherType::App => "a program",
        MatcherType::Archive => "a packed archive",
        MatcherType::Audio => "a sound file",
        MatcherType::Book => "an e-book",
        MatcherType::Doc => "an office document",
        MatcherType::Font => "a font",
        MatcherType::Image => "a picture in a format we do not take",
        MatcherType::Video => "a video",
        MatcherType::Text => "a text file",
        MatcherType::Custom => "a kind of file we do not take",
    }
}

/// A zip starts with a local file header, or with the end record when it holds nothing.
pub fn starts_like_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// How many leading bytes [`looks_like_archive`] needs: tar's marker sits at offset 257.
pub const ARCHIVE_SIGNATURE_LENGTH: usize = 512;

/// Whether these first bytes start another archive or compressed stream.
pub fn looks_like_archive(bytes: &[u8]) -> bool {
    const SIGNATURES: &[&[u8]] = &[
        b"PK\x03\x04",         // zip (also jar, sb3, docx)
        b"PK\x05\x06",         // empty zip
        b"PK\x07\x08",         // split zip
        b"\x1F\x8B",           // gzip
        b"\xFD7zXZ\x00",       // xz
        b"7z\xBC\xAF\x27\x1C", // 7z
        b"Rar!\x1A\x07",       // rar 4 and 5
        b"\x28\xB5\x2F\xFD",   // zstd
    ];
    SIGNATURES.iter().any(|signature| bytes.starts_with(signature))
        || is_bzip2(bytes)
        || bytes.get(257..262) == Some(b"ustar")
}

/// "BZh" alone also starts ordinary words, so the block size digit and the magic of the first
/// block (or of the end of an empty stream) are required too.
fn is_bzip2(bytes: &[u8]) -> bool {
    const BLOCK: &[u8] = b"\x31\x41\x59\x26\x53\x59";
    const END: &[u8] = b"\x17\x72\x45\x38\x50\x90";
    bytes.len() >= 10
        && bytes.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&bytes[3])
        && (&bytes[4..10] == BLOCK || &bytes[4..10] == END)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_to_families() {
        assert_eq!(Family::from_filename("main.PY"), Family::Text);
        assert_eq!(Family::from_filename("Makefile"), Family::Text);
        assert_eq!(Family::from_filename("run.sh"), Family::Text);
        assert_eq!(Family::from_filename("lab.ipynb"), Family::Notebook);
        assert_eq!(Family::from_filename("a.JPEG"), Family::Image(Picture::Jpeg));
        assert_eq!(Family::from_filename("game.sb3"), Family::Zip);
        assert_eq!(Family::from_filename("setup.exe"), Family::Unknown);
        assert_eq!(Family::from_filename("run.bat"), Family::Unknown);
    }

    #[test]
    fn text_formats_that_infer_knows_are_not_binary() {
        assert_eq!(Head::new(b"#!/usr/bin/env python3\n".to_vec()).binary_description(), None);
        assert_eq!(Head::new(b"<html> </html>".to_vec()).binary_description(), None);
        let program = Head::new(b"MZ\x90\x00\x03\x00\x00\x00".to_vec());
        assert_eq!(program.binary_description(), Some("a Windows program"));
    }

    #[test]
    fn archive_signatures_are_recognised() {
        assert!(looks_like_archive(b"\x1F\x8B\x08\x00"));
        assert!(looks_like_archive(b"BZh91AY&SY...."));
        assert!(!looks_like_archive(b"BZhello there"));
        let mut tar = vec![b'a'; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(looks_like_archive(&tar));
        assert!(!looks_like_archive(b"just some text"));
    }
}
