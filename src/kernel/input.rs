//! Parsed input: the recurring kinds of text a request carries, each checked once here so a
//! value that exists is valid and every domain applies the same rule. A failure says which
//! rule was broken; the domain names the field, since only it knows where the value came from.

use std::fmt;

use std::sync::LazyLock;

use regex::Regex;

pub use super::input_schema as schema;

/// Why a value was refused, phrased to follow a field name in a 422 ("title must be …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("must be {min} to {max} characters")]
    Length { min: usize, max: usize },
    #[error("must not contain control characters")]
    Control,
    #[error("must be 1 to {max} printable characters")]
    NotPrintable { max: usize },
    #[error("must be 3 to 64 characters of a-z, 0-9 and '-'")]
    Slug,
    #[error("must be a valid email address")]
    Email,
}

macro_rules! text_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// A one-line human-readable name: at most `max` characters as sent, no control characters
/// anywhere (a line break in a title would break every list and email subject it appears in),
/// kept trimmed, and not only spaces. Counting what was sent, not what is kept, lets the
/// OpenAPI document state the rule exactly ([`schema::title`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);
text_newtype!(Title);

impl Title {
    pub fn parse(s: &str, max: usize) -> Result<Title, InputError> {
        if s.chars().any(char::is_control) {
            return Err(InputError::Control);
        }
        let t = s.trim();
        if t.is_empty() || s.chars().count() > max {
            return Err(InputError::Length { min: 1, max });
        }
        Ok(Title(t.to_string()))
    }
}

/// A key a client chose and will repeat (an event id, a result's external id): 1 to `max`
/// printable characters, taken exactly as sent, since a retry must match it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey(String);
text_newtype!(ClientKey);

impl ClientKey {
    pub fn parse(s: &str, max: usize) -> Result<ClientKey, InputError> {
        let n = s.chars().count();
        if n == 0 || n > max || s.chars().any(char::is_control) {
            return Err(InputError::NotPrintable { max });
        }
        Ok(ClientKey(s.to_string()))
    }
}

/// A course's address in URLs: 3 to 64 characters of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);
text_newtype!(Slug);

impl Slug {
    pub fn parse(s: &str) -> Result<Slug, InputError> {
        let ok =
            (3..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Slug(s.to_string())) } else { Err(InputError::Slug) }
    }
}

/// What a user is called on screen: a [`Title`] of at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);
text_newtype!(DisplayName);

impl DisplayName {
    pub const MAX: usize = 100;
    pub fn parse(s: &str) -> Result<DisplayName, InputError> {
        Title::parse(s, Self::MAX).map(|t| DisplayName(t.0))
    }
}

/// An email address as stored and compared: lower-cased. The rule is the WHATWG "valid email
/// address" that browsers apply to `<input type=email>` (dot-atom-like local part of at most
/// 64 characters, DNS labels), at most 254 characters, as [`schema::EMAIL`] states it; the mail
/// library must parse it too, so an address accepted anywhere can be sent to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);
text_newtype!(EmailAddress);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<EmailAddress, InputError> {
        static RULE: LazyLock<Regex> = LazyLock::new(|| Regex::new(schema::EMAIL).expect("a valid pattern"));
        if s.len() > schema::EMAIL_MAX || !RULE.is_match(s) {
            return Err(InputError::Email);
        }
        let a = s.to_lowercase();
        a.parse::<lettre::Address>().map_err(|_| InputError::Email)?;
        Ok(EmailAddress(a))
    }
}

/// Free text (a summary, a lesson's markdown body, a note): at most `max` characters; line
/// breaks and tabs are normal in such text, other control characters are not.
pub fn parse_text(text: &str, max: usize) -> Result<String, String> {
    if text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err("must not contain control characters".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  Fractions ", 200).unwrap().as_str(), "Fractions");
        assert_eq!(Title::parse("   ", 200), Err(InputError::Length { min: 1, max: 200 }));
        assert_eq!(Title::parse(&"é".repeat(200), 200).unwrap().as_str().chars().count(), 200);
        assert!(Title::parse(&"é".repeat(201), 200).is_err());
        assert_eq!(Title::parse("a\u{7}b", 200), Err(InputError::Control));
        assert_eq!(Title::parse("Fractions\n", 200), Err(InputError::Control), "refused, not trimmed away");
        assert!(Title::parse(&format!(" {}", "x".repeat(200)), 200).is_err(), "counted as sent");
        assert_eq!(InputError::Length { min: 1, max: 200 }.to_string(), "must be 1 to 200 characters");
    }

    #[test]
    fn client_keys_are_kept_exactly() {
        assert_eq!(ClientKey::parse(" k-1", 100).unwrap().as_str(), " k-1");
        assert!(ClientKey::parse("", 100).is_err());
        assert!(ClientKey::parse("a\nb", 100).is_err());
        assert_eq!(ClientKey::parse("", 128).unwrap_err().to_string(), "must be 1 to 128 printable characters");
    }

    #[test]
    fn slugs_and_names() {
        assert!(Slug::parse("intro-to-python").is_ok());
        for bad in ["ab", "Has-Caps", "under_score", &"a".repeat(65)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DisplayName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn email_addresses_are_canonical() {
        assert_eq!(EmailAddress::parse("A@Example.com").unwrap().as_str(), "a@example.com");
        assert_eq!(
            EmailAddress::parse("o'brien+cifix@mail.example-school.org").unwrap().as_str(),
            "o'brien+cifix@mail.example-school.org"
        );
        for bad in [
            "",
            "no-at",
            "a@b@c",
            "a b@example.com",
            " a@example.com",
            "a@example.com\r\nBcc: x@y.z",
            "\ta@example.com",
            "a@-example.com",
            "a@example..com",
            &format!("{}@example.com", "a".repeat(65)),
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
