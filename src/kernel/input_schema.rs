//! The rules of [`super::input`] as JSON Schema, for the OpenAPI document: a client generated
//! from it, or a fuzzer reading it, learns exactly what the parsers accept. The patterns use
//! only `\xHH` and `\uHHHH` escapes, which ECMA-262, Python and Rust regexes read alike, and
//! each is tested against its parser below. Fields take them with `#[schema(schema_with = …)]`.

use utoipa::openapi::{
    Object, ObjectBuilder,
    schema::{SchemaType, Type},
};

/// No control character (Unicode Cc: C0, DEL and C1).
pub const NO_CONTROLS: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// No control character but line breaks and tabs (markdown text).
pub const TEXT: &str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";
/// No control character, and at least one that is not white space (what `str::trim` removes).
pub const TITLE: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";
/// WHATWG's "valid email address" with the local part bounded as SMTP bounds it. Nothing
/// around it: a browser's `<input type=email>` already strips what a paste brings along.
pub const EMAIL: &str = r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$";
pub const EMAIL_MAX: usize = 254;
pub const SLUG: &str = r"^[a-z0-9-]{3,64}$";
/// Any password of 8 to 128 characters; which ones are too common only the server knows.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

fn string(nullable: bool) -> ObjectBuilder {
    let ty: SchemaType = if nullable { [Type::String, Type::Null].into_iter().collect() } else { Type::String.into() };
    ObjectBuilder::new().schema_type(ty)
}

/// A [`super::input::Title`] of at most `MAX` characters.
pub fn title<const MAX: usize>() -> Object {
    string(false).max_length(Some(MAX)).pattern(Some(TITLE)).build()
}

pub fn title_or_null<const MAX: usize>() -> Object {
    string(true).max_length(Some(MAX)).pattern(Some(TITLE)).build()
}

/// Free text (markdown) of at most `MAX` characters.
pub fn text<const MAX: usize>() -> Object {
    string(false).max_length(Some(MAX)).pattern(Some(TEXT)).build()
}

/// Free text of 1 to `MAX` characters.
pub fn required_text<const MAX: usize>() -> Object {
    string(false).min_length(Some(1)).max_length(Some(MAX)).pattern(Some(TEXT)).build()
}

pub fn text_or_null<const MAX: usize>() -> Object {
    string(true).max_length(Some(MAX)).pattern(Some(TEXT)).build()
}

/// A [`super::input::ClientKey`] of at most `MAX` characters.
pub fn client_key<const MAX: usize>() -> Object {
    string(false).min_length(Some(1)).max_length(Some(MAX)).pattern(Some(NO_CONTROLS)).build()
}

pub fn email() -> Object {
    string(false).max_length(Some(EMAIL_MAX)).pattern(Some(EMAIL)).build()
}

pub fn slug() -> Object {
    string(false).pattern(Some(SLUG)).build()
}

pub fn new_password() -> Object {
    string(false).min_length(Some(PASSWORD_MIN)).max_length(Some(PASSWORD_MAX)).build()
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::kernel::input::{EmailAddress, Slug, Title};

    fn matches(pattern: &str, s: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(s)
    }

    const SAMPLES: &[&str] = &[
        "Fractions",
        " Fractions ",
        "",
        " ",
        "\u{3000}\u{a0}",
        "\u{feff}",
        "a\tb",
        "a\nb",
        "Ada\n",
        "\u{85}x",
        "x\u{7f}",
        "Zoë 🦊",
        "\u{202e}evil",
        "\u{200b}",
    ];

    #[test]
    fn the_title_pattern_is_the_title_rule() {
        for s in SAMPLES {
            assert_eq!(matches(TITLE, s), Title::parse(s, 200).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn the_email_pattern_is_the_email_rule() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        let samples = [
            "a@example.com",
            "A.B+tag@sub.example-school.org",
            "o'brien@example.com",
            "a@localhost",
            " a@example.com",
            "a@example.com ",
            "\u{a0}a@example.com",
            "a@@example.com",
            "a@-x.com",
            "a@x-.com",
            "a@x..com",
            "ä@example.com",
            "a@exämple.com",
            "a\n@example.com",
            long_local.as_str(),
            long.as_str(),
        ];
        for s in samples {
            let by_schema = matches(EMAIL, s) && s.len() <= EMAIL_MAX;
            assert_eq!(by_schema, EmailAddress::parse(s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn the_slug_pattern_is_the_slug_rule() {
        for s in ["intro-to-python", "ab", "abc", "Has-Caps", "under_score", "ü-ber", &"a".repeat(64), &"a".repeat(65)]
        {
            assert_eq!(matches(SLUG, s), Slug::parse(s).is_ok(), "{s:?}");
        }
    }
}
