//! Text and notebooks: read once, in chunks, so a large file is never held in memory whole.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::Refusal;

const CHUNK: usize = 64 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Editors on Windows sometimes save text as UTF-16, which is full of zero bytes; saying so is
/// more helpful than "not UTF-8".
pub fn refuse_utf16(filename: &str, head: &[u8]) -> Result<(), Refusal> {
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Err(Refusal::invalid(
            filename,
            "This text file is saved as UTF-16. Please save it as UTF-8 and send it again.",
        ));
    }
    Ok(())
}

/// Valid UTF-8 (a byte-order mark is fine) without a single zero byte. A zero byte is what
/// makes tools treat a file as binary, and no source file or note needs one.
pub fn check_text(path: &Path, filename: &str) -> Result<(), Refusal> {
    let file = File::open(path).map_err(|error| Refusal::io(filename, error))?;
    let mut reader = Utf8Reader::new(file);
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(not_utf8(filename));
            }
            Err(error) => return Err(Refusal::io(filename, error)),
        };
        if buffer[..read].contains(&0) {
            return Err(Refusal::invalid(filename, "This file contains zero bytes, so it is not plain text."));
        }
    }
}

/// UTF-8 JSON whose top level is an object, which is all a notebook viewer relies on before it
/// looks inside. The file is read once and its contents are skipped without being kept.
pub fn check_notebook(path: &Path, filename: &str) -> Result<(), Refusal> {
    let mut file = File::open(path).map_err(|error| Refusal::io(filename, error))?;
    let mut start = [0; 3];
    let started = read_some(&mut file, &mut start).map_err(|error| Refusal::io(filename, error))?;
    // serde_json refuses a byte-order mark, which some editors write; anything else read ahead
    // is fed back in front of the rest.
    let replay = if start[..started] == *UTF8_BOM { &start[..0] } else { &start[..started] };
    // serde_json skips the strings it ignores without checking their UTF-8, so the bytes are
    // checked on their way in.
    let reader = BufReader::new(Utf8Reader::new(replay.chain(file)));
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let outcome = deserializer.deserialize_any(TopLevelObject).and_then(|()| deserializer.end());
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if error.is_io() => match error.io_error_kind() {
            Some(io::ErrorKind::InvalidData) => Err(not_utf8(filename)),
            _ => Err(Refusal::io(filename, io::Error::other(error))),
        },
        Err(error) if error.is_data() => {
            Err(Refusal::invalid(filename, "This file is not a Jupyter notebook: a notebook must be a JSON object."))
        }
        Err(_) => Err(Refusal::invalid(filename, "This notebook is damaged: it is not valid JSON.")),
    }
}

fn not_utf8(filename: &str) -> Refusal {
    Refusal::invalid(filename, "This file is not saved as UTF-8 text. Please save it as UTF-8 and send it again.")
}

/// Reads until the buffer is full or the input ends.
fn read_some(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Passes bytes through unchanged and fails with `InvalidData` as soon as they stop being
/// UTF-8, including a character cut short by the end of the input. A character split between
/// two reads is held back until its last byte arrives.
struct Utf8Reader<Inner> {
    inner: Inner,
    partial: [u8; 4],
    partial_length: usize,
}

impl<Inner: Read> Utf8Reader<Inner> {
    fn new(inner: Inner) -> Self {
        Self { inner, partial: [0; 4], partial_length: 0 }
    }

    fn check(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.partial_length > 0 {
            let needed = utf8_width(self.partial[0]) - self.partial_length;
            let taken = needed.min(bytes.len());
            self.partial[self.partial_length..self.partial_length + taken].copy_from_slice(&bytes[..taken]);
            self.partial_length += taken;
            bytes = &bytes[taken..];
            match std::str::from_utf8(&self.partial[..self.partial_length]) {
                Ok(_) => self.partial_length = 0,
                Err(error) if error.error_len().is_none() => return Ok(()),
                Err(_) => return Err(invalid_utf8()),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(error) if error.error_len().is_none() => {
                let rest = &bytes[error.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_length = rest.len();
                Ok(())
            }
            Err(_) => Err(invalid_utf8()),
        }
    }
}

impl<Inner: Read> Read for Utf8Reader<Inner> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if read == 0 && self.partial_length > 0 {
            return Err(invalid_utf8());
        }
        self.check(&buffer[..read])?;
        Ok(read)
    }
}

/// The length of the character a lead byte starts; only called on the lead byte of a valid,
/// incomplete character.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

fn invalid_utf8() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not UTF-8")
}

/// Accepts any JSON object and throws its contents away as they are read.
struct TopLevelObject;

impl<'de> Visitor<'de> for TopLevelObject {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<Entries: MapAccess<'de>>(self, mut entries: Entries) -> Result<(), Entries::Error> {
        while entries.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::FileKind;
    use super::super::tests::{expect_invalid, expect_unsupported, inspect_bytes};

    #[test]
    fn source_code_is_text_served_as_plain_text() {
        for (name, bytes) in [
            ("main.py", &b"#!/usr/bin/env python3\nprint('hi')\n"[..]),
            ("index.html", b"<html><body>hi</body></html>"),
            ("notes.md", b"# Notes\n\xC3\xA9t\xC3\xA9\n"),
            ("Makefile", b"all:\n\tcc main.c\n"),
            ("bom.txt", b"\xEF\xBB\xBFhello"),
            ("run.sh", b"#!/bin/sh\necho hi\n"),
        ] {
            let inspected = inspect_bytes(name, bytes).unwrap();
            assert_eq!(inspected.kind, FileKind::Text, "{name}");
            assert_eq!(inspected.content_type, "text/plain; charset=utf-8");
            assert_eq!(inspected.rewritten, None);
        }
    }

    #[test]
    fn the_eicar_test_string_is_just_text_here() {
        let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        assert_eq!(inspect_bytes("eicar.txt", eicar).unwrap().kind, FileKind::Text);
    }

    #[test]
    fn characters_cut_by_a_chunk_boundary_are_joined() {
        // Two-byte letters shifted by one byte put one across every 64 KiB boundary.
        let mut text = b"a".to_vec();
        text.extend("é".repeat(100_000).as_bytes());
        assert_eq!(inspect_bytes("long.txt", &text).unwrap().kind, FileKind::Text);
    }

    #[test]
    fn a_program_named_as_code_is_unsupported() {
        let mut elf = b"\x7FELF\x02\x01\x01\x00".to_vec();
        elf.resize(64, 0);
        let reason = expect_unsupported("homework.py", &elf);
        assert!(reason.contains("Linux program"), "{reason}");

        let mut windows = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xFF\xFF".to_vec();
        windows.extend(b"This program cannot be run in DOS mode.");
        let reason = expect_unsupported("essay.txt", &windows);
        assert!(reason.contains("Windows program"), "{reason}");
    }

    #[test]
    fn a_picture_named_as_text_is_unsupported() {
        let reason = expect_unsupported("notes.txt", b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR");
        assert!(reason.contains("PNG picture"), "{reason}");
    }

    #[test]
    fn a_zero_byte_makes_it_invalid() {
        let reason = expect_invalid("main.c", b"int main() {\0}");
        assert!(reason.contains("zero bytes"), "{reason}");
        // Also far past the part that is sniffed.
        let mut late = vec![b'x'; 200_000];
        late[150_000] = 0;
        assert!(expect_invalid("data.csv", &late).contains("zero bytes"));
    }

    #[test]
    fn invalid_utf8_is_invalid() {
        let reason = expect_invalid("essay.txt", b"caf\xE9 au lait");
        assert!(reason.contains("UTF-8"), "{reason}");
        // A character cut short by the end of the file.
        assert!(expect_invalid("cut.txt", b"abc\xC3").contains("UTF-8"));
        let reason = expect_invalid("wide.txt", b"\xFF\xFEh\0i\0");
        assert!(reason.contains("UTF-16"), "{reason}");
    }

    #[test]
    fn an_empty_file_is_invalid() {
        assert!(expect_invalid("empty.py", b"").contains("is empty"));
        assert!(expect_invalid("empty.png", b"").contains("is empty"));
    }

    #[test]
    fn a_notebook_is_a_json_object() {
        let notebook = br#"{"cells": [{"cell_type": "code", "source": ["print(1)"]}], "nbformat": 4}"#;
        let inspected = inspect_bytes("lab.ipynb", notebook).unwrap();
        assert_eq!(inspected.kind, FileKind::Notebook);
        assert_eq!(inspected.content_type, "application/x-ipynb+json");

        let with_bom = b"\xEF\xBB\xBF { } ";
        assert_eq!(inspect_bytes("bom.ipynb", with_bom).unwrap().kind, FileKind::Notebook);
        assert_eq!(inspect_bytes("t.ipynb", b"{}").unwrap().kind, FileKind::Notebook);
    }

    #[test]
    fn a_notebook_that_is_not_a_json_object_is_invalid() {
        assert!(expect_invalid("list.ipynb", b"[1, 2]").contains("JSON object"));
        assert!(expect_invalid("word.ipynb", b"\"cells\"").contains("JSON object"));
        assert!(expect_invalid("cut.ipynb", b"{\"cells\": [").contains("not valid JSON"));
        assert!(expect_invalid("two.ipynb", b"{} {}").contains("not valid JSON"));
        assert!(expect_invalid("bytes.ipynb", b"{\"a\": \"\xE9\"}").contains("UTF-8"));
    }

    #[test]
    fn a_program_named_as_a_notebook_is_unsupported() {
        let mut elf = b"\x7FELF\x02\x01\x01\x00".to_vec();
        elf.resize(64, 0);
        assert!(expect_unsupported("lab.ipynb", &elf).contains("Linux program"));
    }
}
