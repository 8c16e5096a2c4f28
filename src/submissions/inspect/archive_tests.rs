use std::io::{Cursor, Write};

use zip::ZipWriter;
use zip::unstable::write::FileOptionsExt;
use zip::write::SimpleFileOptions;

use super::super::tests::{expect_invalid, upload};
use super::super::{ArchiveLimits, FileKind, Refusal, inspect};
use super::*;

type Writer = ZipWriter<Cursor<Vec<u8>>>;

fn zip_of(build: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut writer);
    writer.finish().unwrap().into_inner()
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn stored() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
}

fn add(writer: &mut Writer, name: &str, options: SimpleFileOptions, bytes: &[u8]) {
    writer.start_file(name, options).unwrap();
    writer.write_all(bytes).unwrap();
}

fn zip_with(name: &str, bytes: &[u8]) -> Vec<u8> {
    zip_of(|writer| add(writer, name, deflated(), bytes))
}

fn invalid_with_limits(bytes: &[u8], limits: &ArchiveLimits) -> String {
    let (_directory, path) = upload(bytes);
    match inspect(&path, "project.zip", limits) {
        Err(Refusal::Invalid { reason, .. }) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Bytes that change in place, the same length before and after, wherever they occur.
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut found = 0;
    let mut index = 0;
    while index + from.len() <= bytes.len() {
        if &bytes[index..index + from.len()] == from {
            bytes[index..index + from.len()].copy_from_slice(to);
            found += 1;
            index += from.len();
        } else {
            index += 1;
        }
    }
    assert!(found > 0, "nothing to replace");
}

fn position(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|window| window == needle).unwrap()
}

#[test]
fn a_project_zip_with_a_program_inside_is_accepted() {
    let mut elf = b"\x7FELF\x02\x01\x01\x00".to_vec();
    elf.resize(256, 0);
    let bytes = zip_of(|writer| {
        writer.add_directory("game/", deflated()).unwrap();
        add(writer, "game/main.py", deflated(), b"print('hello')\n");
        add(writer, "game/run", stored(), &elf);
        add(writer, "game/tiny.txt", deflated(), b"x");
        add(writer, "game/notes.md", stored(), b"");
        add(writer, "game/..hidden..txt", deflated(), b"dots are fine in a name");
    });
    let (_directory, path) = upload(&bytes);
    let inspected = inspect(&path, "game.zip", &ArchiveLimits::default()).unwrap();
    assert_eq!(inspected.kind, FileKind::Zip);
    assert_eq!(inspected.content_type, "application/zip");
    assert_eq!(inspected.rewritten, None);
}

#[test]
fn a_scratch_project_is_a_zip() {
    let bytes = zip_of(|writer| {
        add(writer, "project.json", deflated(), br#"{"targets": []}"#);
        add(writer, "83a9787d4cb6f3b7632b4ddfebf74367.wav", stored(), b"RIFF....WAVE");
    });
    let (_directory, path) = upload(&bytes);
    let inspected = inspect(&path, "My Game.sb3", &ArchiveLimits::default()).unwrap();
    assert_eq!(inspected.kind, FileKind::Zip);
}

#[test]
fn a_zip_bomb_is_stopped_by_the_ratio() {
    // 200 MB of zeros deflate to about 200 KB; it is written a megabyte at a time.
    let megabyte = vec![0u8; 1_000_000];
    let bytes = zip_of(|writer| {
        writer.start_file("zeros.bin", deflated()).unwrap();
        for _ in 0..200 {
            writer.write_all(&megabyte).unwrap();
        }
    });
    assert!(bytes.len() < 1_000_000, "{} bytes", bytes.len());
    let reason = expect_invalid("bomb.zip", &bytes);
    assert!(reason.contains("looks like a zip bomb"), "{reason}");
}

#[test]
fn a_zip_over_the_total_is_stopped_even_when_nothing_is_compressed() {
    let noise: Vec<u8> = (0..600 * 1024u64).map(|index| (index * 7919 % 251) as u8).collect();
    let bytes = zip_of(|writer| {
        add(writer, "one.bin", stored(), &noise);
        add(writer, "two.bin", stored(), &noise);
    });
    let limits = ArchiveLimits { max_total_uncompressed: 1024 * 1024, ..ArchiveLimits::default() };
    let reason = invalid_with_limits(&bytes, &limits);
    assert!(reason.contains("looks like a zip bomb"), "{reason}");
}

#[test]
fn an_entry_that_unpacks_past_its_declared_size_is_invalid() {
    // The central directory says 10 bytes; the entry really unpacks to 200 KB of zeros. (A
    // truthful large size is the bomb above: the counters, not the declaration, stop it.)
    let mut bytes = zip_with("small.txt", &vec![0; 200_000]);
    let central = position(&bytes, b"PK\x01\x02");
    bytes[central + 24..central + 28].copy_from_slice(&10u32.to_le_bytes());
    let reason = expect_invalid("liar.zip", &bytes);
    assert!(reason.contains("damaged inside"), "{reason}");
}

#[test]
fn paths_that_climb_out_are_invalid() {
    for name in ["../../etc/passwd", "game/../../escape.txt", ".."] {
        let reason = expect_invalid("project.zip", &zip_with(name, b"root:x:0:0"));
        assert!(reason.contains("outside its folder"), "{name}: {reason}");
        assert!(reason.contains(".."), "{name}: {reason}");
    }
}

#[test]
fn absolute_paths_are_invalid() {
    for name in ["/etc/passwd", "C:/Windows/System32/evil.dll", "c:evil.txt"] {
        let reason = expect_invalid("project.zip", &zip_with(name, b"x"));
        assert!(reason.contains("top of the disk"), "{name}: {reason}");
    }
}

#[test]
fn backslashes_are_invalid() {
    for name in ["..\\..\\evil.txt", "C:\\evil.txt", "folder\\file.txt"] {
        let reason = expect_invalid("project.zip", &zip_with(name, b"x"));
        assert!(reason.contains("backslash"), "{name}: {reason}");
    }
}

#[test]
fn control_and_direction_characters_in_names_are_invalid() {
    for name in ["bad\u{1}name.txt", "line\nbreak.txt", "photo\u{202E}gnp.exe"] {
        let reason = expect_invalid("project.zip", &zip_with(name, b"x"));
        assert!(reason.contains("broken name"), "{name:?}: {reason}");
        assert!(!reason.contains(name), "the name is not echoed");
    }
}

#[test]
fn symbolic_links_are_invalid() {
    let linked = zip_of(|writer| {
        writer.add_symlink("passwords", "/etc/shadow", deflated()).unwrap();
    });
    let reason = expect_invalid("project.zip", &linked);
    assert!(reason.contains("symbolic link"), "{reason}");
    assert!(reason.contains("passwords"), "{reason}");

    // The same mode bits written by hand into the external attributes of an ordinary entry.
    let by_mode = zip_of(|writer| {
        let options = deflated().external_attributes(0o120777 << 16);
        add(writer, "link", options, b"/etc/shadow");
    });
    let reason = expect_invalid("project.zip", &by_mode);
    assert!(reason.contains("symbolic link"), "{reason}");
}

#[test]
fn encrypted_entries_are_invalid() {
    let bytes = zip_of(|writer| {
        let options = deflated().with_deprecated_encryption(b"secret").unwrap();
        add(writer, "diary.txt", options, b"dear diary");
    });
    let reason = expect_invalid("project.zip", &bytes);
    assert!(reason.contains("password"), "{reason}");
    assert!(reason.contains("diary.txt"), "{reason}");
}

#[test]
fn compression_methods_we_cannot_check_are_invalid() {
    let mut bytes = zip_of(|writer| add(writer, "data.txt", stored(), b"hello"));
    // Rewrite the method (stored, 0) as bzip2 (12) in the local and the central header.
    bytes[8..10].copy_from_slice(&12u16.to_le_bytes());
    let central = position(&bytes, b"PK\x01\x02");
    bytes[central + 10..central + 12].copy_from_slice(&12u16.to_le_bytes());
    let reason = expect_invalid("project.zip", &bytes);
    assert!(reason.contains("compression method we cannot check"), "{reason}");
}

#[test]
fn archives_inside_are_invalid_by_name() {
    for name in ["inner.zip", "backup.TAR.GZ", "lib/tool.jar", "old.sb3", "x.7z", "y.rar"] {
        let reason = expect_invalid("project.zip", &zip_with(name, b"just text"));
        assert!(reason.contains("another packed file"), "{name}: {reason}");
        assert!(reason.contains(name), "{name}: {reason}");
    }
}

#[test]
fn archives_inside_are_invalid_by_content() {
    let inner = zip_with("hello.txt", b"hello");
    let mut tar = vec![0u8; 1024];
    tar[..9].copy_from_slice(b"hello.txt");
    tar[257..263].copy_from_slice(b"ustar\0");
    for (name, bytes) in
        [("inner.dat", inner.as_slice()), ("data.bin", b"\x1F\x8B\x08\x00\x00\x00\x00\x00\x00\x03"), ("notes", &tar)]
    {
        let reason = expect_invalid("project.zip", &zip_with(name, bytes));
        assert!(reason.contains("another packed file"), "{name}: {reason}");
    }
}

#[test]
fn too_many_entries_are_invalid() {
    let many = |count: usize| {
        zip_of(|writer| {
            for index in 0..count {
                add(writer, &format!("file{index}.txt"), stored(), b"x");
            }
        })
    };
    let (_directory, path) = upload(&many(1000));
    assert!(inspect(&path, "ok.zip", &ArchiveLimits::default()).is_ok());
    let reason = expect_invalid("many.zip", &many(1001));
    assert!(reason.contains("more than 1000 files"), "{reason}");

    let limits = ArchiveLimits { max_entries: 2, ..ArchiveLimits::default() };
    let reason = invalid_with_limits(&many(3), &limits);
    assert!(reason.contains("more than 2 files"), "{reason}");
}

#[test]
fn repeated_names_are_invalid() {
    let mut bytes = zip_of(|writer| {
        add(writer, "a.txt", stored(), b"harmless");
        add(writer, "b.txt", stored(), b"the other one");
    });
    replace_all(&mut bytes, b"b.txt", b"a.txt");
    let reason = expect_invalid("project.zip", &bytes);
    assert!(reason.contains("same name"), "{reason}");
}

#[test]
fn an_empty_zip_is_invalid() {
    let reason = expect_invalid("empty.zip", &zip_of(|_| {}));
    assert!(reason.contains("nothing inside"), "{reason}");
}

#[test]
fn a_damaged_zip_is_invalid() {
    let reason = expect_invalid("broken.zip", b"PK\x03\x04 and then nothing that makes sense");
    assert!(reason.contains("damaged"), "{reason}");

    // A stored entry whose bytes no longer match its checksum.
    let mut bytes = zip_of(|writer| add(writer, "data.txt", stored(), b"hello world"));
    replace_all(&mut bytes, b"hello world", b"jello world");
    let reason = expect_invalid("project.zip", &bytes);
    assert!(reason.contains("damaged inside"), "{reason}");
}
