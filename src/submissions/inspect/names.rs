//! The declared file name: only ever shown and offered as a download name, never used as a
//! path, so it has to be safe to display rather than safe to open. Windows device names such
//! as `CON` are therefore harmless and allowed.
//!
//! Names are kept as the student typed them (not normalised to NFC): doing so needs a Unicode
//! table we do not otherwise depend on, and the name is only compared for display.

use super::Refusal;

/// Most file systems stop at 255 bytes, so a longer name cannot be saved back to disk as is.
const MAX_NAME_BYTES: usize = 255;

/// How much of a refused name is repeated back to the student.
const MAX_ECHOED_CHARS: usize = 80;

/// Returns the cleaned name: what the student sent, trimmed of surrounding whitespace.
pub fn check_filename(declared: &str) -> Result<String, Refusal> {
    // Control characters are looked for before trimming, so a trailing newline is refused
    // rather than quietly removed.
    if declared.chars().any(char::is_control) {
        return Err(refuse(declared, "The file name contains invisible control characters. Please rename the file."));
    }
    if declared.chars().any(is_direction_control) {
        return Err(refuse(
            declared,
            "The file name contains invisible characters that change the direction of the text, \
             which can hide its real ending. Please rename the file.",
        ));
    }
    if declared.chars().any(is_line_break) {
        return Err(refuse(declared, "The file name contains a line break. Please rename the file."));
    }
    let name = declared.trim();
    if name.is_empty() {
        return Err(refuse(declared, "The file has no name."));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(refuse(declared, "The file name is too long. Please use a name shorter than 255 letters."));
    }
    if name.contains(['/', '\\']) {
        return Err(refuse(declared, "The file name must not contain a slash (/ or \\). Please rename the file."));
    }
    if name == "." || name == ".." {
        return Err(refuse(declared, "The file name must be more than just dots."));
    }
    Ok(name.to_owned())
}

/// The lowercased text after the last dot, if the name has one after its first character:
/// `.gitignore` and `Makefile` have none.
pub fn extension(filename: &str) -> Option<String> {
    let (stem, extension) = filename.rsplit_once('.')?;
    if stem.is_empty() || extension.is_empty() {
        return None;
    }
    Some(extension.to_lowercase())
}

/// Characters that reorder how the rest of the name is drawn: "photo\u{202E}gnp.exe" shows as
/// "photoexe.png".
fn is_direction_control(character: char) -> bool {
    matches!(
        character,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Unicode's own line and paragraph separators: not control characters, but they break a name
/// over two lines just the same.
fn is_line_break(character: char) -> bool {
    matches!(character, '\u{2028}' | '\u{2029}')
}

/// Characters that must never be echoed back: they are invisible or rearrange what follows.
pub fn is_unsafe_to_show(character: char) -> bool {
    character.is_control() || is_direction_control(character) || is_line_break(character)
}

/// A refused name may hold exactly the characters we refuse, so what is echoed back replaces
/// them and is cut short.
fn displayable(declared: &str) -> String {
    let mut shown: String = declared
        .chars()
        .take(MAX_ECHOED_CHARS)
        .map(|character| if is_unsafe_to_show(character) { '\u{FFFD}' } else { character })
        .collect();
    if declared.chars().count() > MAX_ECHOED_CHARS {
        shown.push('…');
    }
    shown.trim().to_owned()
}

fn refuse(declared: &str, reason: &str) -> Refusal {
    Refusal::invalid(&displayable(declared), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal_reason(declared: &str) -> (String, String) {
        match check_filename(declared) {
            Err(Refusal::Invalid { filename, reason }) => (filename, reason),
            other => panic!("expected Invalid for {declared:?}, got {other:?}"),
        }
    }

    #[test]
    fn ordinary_names_are_kept_and_trimmed() {
        assert_eq!(check_filename("main.py").unwrap(), "main.py");
        assert_eq!(check_filename("  My Game.sb3 ").unwrap(), "My Game.sb3");
        assert_eq!(check_filename("ダンス.png").unwrap(), "ダンス.png");
        assert_eq!(check_filename(".gitignore").unwrap(), ".gitignore");
        assert_eq!(check_filename("CON").unwrap(), "CON");
        assert_eq!(check_filename("...hmm").unwrap(), "...hmm");
    }

    #[test]
    fn empty_and_blank_names_are_refused() {
        assert!(refusal_reason("").1.contains("no name"));
        assert!(refusal_reason("   ").1.contains("no name"));
    }

    #[test]
    fn names_over_255_bytes_are_refused() {
        let exactly = format!("{}.txt", "a".repeat(251));
        assert!(check_filename(&exactly).is_ok());
        let (shown, reason) = refusal_reason(&format!("{}.txt", "a".repeat(252)));
        assert!(reason.contains("too long"));
        assert!(shown.chars().count() <= MAX_ECHOED_CHARS + 1);
        // Letters count by their bytes: 128 two-byte letters are 256 bytes.
        assert!(refusal_reason(&"é".repeat(128)).1.contains("too long"));
    }

    #[test]
    fn control_characters_are_refused_and_never_echoed() {
        for declared in [
            "a\0b.txt",
            "a\rb.txt",
            "a\nb.txt",
            "a\tb.txt",
            "report.txt\n",
            "\u{7}bell.txt",
            "a\u{7F}.txt",
            "a\u{85}.txt",
        ] {
            let (shown, reason) = refusal_reason(declared);
            assert!(reason.contains("control characters"), "{declared:?}: {reason}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }

    #[test]
    fn direction_controls_are_refused_and_never_echoed() {
        for character in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let declared = format!("photo{character}gnp.exe");
            let (shown, reason) = refusal_reason(&declared);
            assert!(reason.contains("direction"), "{declared:?}: {reason}");
            assert!(!shown.contains(character));
            assert_eq!(shown, "photo\u{FFFD}gnp.exe");
        }
    }

    #[test]
    fn unicode_line_separators_are_refused() {
        assert!(refusal_reason("a\u{2028}b.txt").1.contains("line break"));
        assert!(refusal_reason("a\u{2029}b.txt").1.contains("line break"));
    }

    #[test]
    fn slashes_are_refused() {
        for declared in ["../etc/passwd", "dir/file.txt", "C:\\Users\\me.txt", "/abs.txt"] {
            assert!(refusal_reason(declared).1.contains("slash"), "{declared}");
        }
    }

    #[test]
    fn lone_dots_are_refused() {
        assert!(refusal_reason(".").1.contains("dots"));
        assert!(refusal_reason(" .. ").1.contains("dots"));
    }

    #[test]
    fn extensions_are_lowercased_and_optional() {
        assert_eq!(extension("Photo.JPG").as_deref(), Some("jpg"));
        assert_eq!(extension("archive.tar.gz").as_deref(), Some("gz"));
        assert_eq!(extension(".gitignore"), None);
        assert_eq!(extension("Makefile"), None);
        assert_eq!(extension("trailing."), None);
    }
}
