//! Helpers the other modules' tests share, and the tests of the dispatch itself.

use std::path::PathBuf;

use tempfile::TempDir;

use super::*;

/// Writes `bytes` into a fresh directory and returns both: the directory must live as long as
/// the test reads what was written beside the upload. The student's name is never a path.
pub(super) fn upload(bytes: &[u8]) -> (TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("upload");
    std::fs::write(&path, bytes).unwrap();
    (directory, path)
}

pub(super) fn inspect_bytes(declared_name: &str, bytes: &[u8]) -> Result<Inspected, Refusal> {
    let (_directory, path) = upload(bytes);
    inspect(&path, declared_name, &ArchiveLimits::default())
}

#[track_caller]
pub(super) fn expect_unsupported(declared_name: &str, bytes: &[u8]) -> String {
    match inspect_bytes(declared_name, bytes) {
        Err(Refusal::Unsupported { filename, reason }) => {
            assert_eq!(filename, declared_name.trim());
            reason
        }
        other => panic!("expected Unsupported for {declared_name}, got {other:?}"),
    }
}

#[track_caller]
pub(super) fn expect_invalid(declared_name: &str, bytes: &[u8]) -> String {
    match inspect_bytes(declared_name, bytes) {
        Err(Refusal::Invalid { filename, reason }) => {
            assert_eq!(filename, declared_name.trim());
            reason
        }
        other => panic!("expected Invalid for {declared_name}, got {other:?}"),
    }
}

#[test]
fn the_name_is_checked_before_the_bytes() {
    let (_directory, path) = upload(b"hello");
    match inspect(&path, "bad\nname.txt", &ArchiveLimits::default()) {
        Err(Refusal::Invalid { filename, reason }) => {
            assert_eq!(filename, "bad\u{FFFD}name.txt");
            assert!(reason.contains("control characters"));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn the_cleaned_name_is_returned() {
    let inspected = inspect_bytes("  notes.txt  ", b"hello").unwrap();
    assert_eq!(inspected.filename, "notes.txt");
}

#[test]
fn a_pdf_needs_its_magic() {
    let pdf = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
    let inspected = inspect_bytes("poster.pdf", pdf).unwrap();
    assert_eq!(inspected.kind, FileKind::Pdf);
    assert_eq!(inspected.content_type, "application/pdf");
    assert_eq!(inspected.rewritten, None);

    let reason = expect_unsupported("poster.pdf", b"just words");
    assert!(reason.contains("not really a PDF document"), "{reason}");
    let reason = expect_unsupported("notes.txt", pdf);
    assert!(reason.contains("looks like a PDF document"), "{reason}");
}

#[test]
fn programs_with_their_own_names_are_unsupported() {
    let mut windows = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xFF\xFF".to_vec();
    windows.resize(128, 0);
    let reason = expect_unsupported("game.exe", &windows);
    assert!(reason.contains("looks like a Windows program"), "{reason}");
    // The bytes decide: a Windows program is one whatever it is called.
    let reason = expect_unsupported("game.zip", &windows);
    assert!(reason.contains("looks like a Windows program"), "{reason}");
}

#[test]
fn unknown_kinds_are_unsupported_naming_the_extension() {
    let reason = expect_unsupported("run.bat", b"@echo off\r\necho hi\r\n");
    assert!(reason.contains("cannot accept .bat files"), "{reason}");
    assert!(reason.contains("You can send"), "{reason}");
    let reason = expect_unsupported("data.bin", &[0x13, 0x37, 0xFF, 0x00, 0x42]);
    assert!(reason.contains(".bin"), "{reason}");
    let reason = expect_unsupported("song.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00");
    assert!(reason.contains("looks like a sound file"), "{reason}");
}

#[test]
fn refusals_show_name_and_reason_and_hide_io_details() {
    let refusal = Refusal::invalid("a.txt", "This file is empty.");
    assert_eq!(refusal.to_string(), "a.txt: This file is empty.");
    let missing = std::env::temp_dir().join("no-such-upload-for-inspection");
    match inspect(&missing, "a.txt", &ArchiveLimits::default()) {
        Err(refusal @ Refusal::Io { .. }) => {
            assert_eq!(refusal.filename(), "a.txt");
            assert!(!refusal.reason().contains("no-such-upload"));
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn default_archive_limits() {
    let limits = ArchiveLimits::default();
    assert_eq!(limits.max_entries, 1000);
    assert_eq!(limits.max_total_uncompressed, 200 * 1024 * 1024);
    assert_eq!(limits.max_ratio, 100);
}
