//! Templates: files under `templates/email/`, compiled into the binary so it stays
//! self-contained. A deliberately tiny `{{name}}` renderer: templates are ours, values are not,
//! so values are HTML-escaped in the HTML part and never interpreted as template syntax.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("template variable `{0}` is not set")]
    Missing(String),
    #[error("unterminated `{{{{` in template")]
    Unterminated,
}

pub fn render(src: &str, vars: &Map<String, Value>, html: bool) -> Result<String, RenderError> {
    let mut out = String::with_capacity(src.len() + 256);
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(RenderError::Unterminated)?;
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| RenderError::Missing(name.to_string()))?;
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if html {
            escape_html_into(&text, &mut out);
        } else {
            out.push_str(&text);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn escape_html_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

/// A header-safe single line: control characters (CR/LF above all) become spaces.
pub fn one_line(s: &str, max_chars: usize) -> String {
    // Bidirectional controls can make "moc.live" read as "evil.com"; they never belong in a
    // name or a subject.
    let bidi =
        |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let cleaned: String = s.chars().filter(|c| !bidi(*c)).map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn substitutes_and_escapes_only_in_html() {
        let v = vars(json!({"name": "<b>Tom & \"Jerry\"</b>", "n": 3}));
        assert_eq!(render("Hi {{name}} x{{ n }}", &v, false).unwrap(), "Hi <b>Tom & \"Jerry\"</b> x3");
        assert_eq!(
            render("<p>{{name}}</p>", &v, true).unwrap(),
            "<p>&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;</p>"
        );
    }

    #[test]
    fn values_are_not_re_interpreted_and_missing_ones_fail() {
        let v = vars(json!({"a": "{{b}}", "b": "secret"}));
        assert_eq!(render("{{a}}", &v, false).unwrap(), "{{b}}");
        assert_eq!(render("{{c}}", &v, false).unwrap_err(), RenderError::Missing("c".into()));
        assert_eq!(render("{{a", &v, false).unwrap_err(), RenderError::Unterminated);
    }

    #[test]
    fn one_line_drops_line_breaks() {
        assert_eq!(one_line("Eve\r\nBcc: victim@example.com", 100), "Eve Bcc: victim@example.com");
        assert_eq!(one_line("abcdef", 3), "abc");
        assert_eq!(one_line("Eve\u{202E}moc.live", 100), "Evemoc.live");
    }
}
