//! Field errors: what a 422 names. Every domain's `Validation` variant carries a
//! [`FieldErrors`], so all of them render one way and an input reports every bad field at
//! once instead of the first one only.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path in the request, e.g. `title` or `events[3].score`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        FieldErrors(Vec::new())
    }

    /// One error, for a check that stops at the first failure.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldErrors(vec![FieldError::new(field, message)])
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Keeps a parsed value, or records why `field` failed to parse and yields `None`, so
    /// that every field of an input is checked before any error is returned.
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// Adds `other`'s errors under `prefix`: `score` under `events[3]` becomes `events[3].score`.
    pub fn nest(&mut self, prefix: &str, other: FieldErrors) {
        self.0.extend(other.0.into_iter().map(|e| FieldError { field: format!("{prefix}.{}", e.field), ..e }));
    }

    pub fn extend(&mut self, other: FieldErrors) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// `Ok` when nothing was pushed, so a validator ends with `errors.into_result()?`.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl From<FieldError> for FieldErrors {
    fn from(e: FieldError) -> Self {
        FieldErrors(vec![e])
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for e in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_in_order_and_nests_paths() {
        let mut inner = FieldErrors::new();
        inner.push("score", "must be between 0 and 100");
        let mut all = FieldErrors::one("events", "must not be empty");
        all.nest("events[3]", inner);
        let v = all.into_result().unwrap_err().into_vec();
        assert_eq!(v[0], FieldError::new("events", "must not be empty"));
        assert_eq!(v[1], FieldError::new("events[3].score", "must be between 0 and 100"));
    }

    #[test]
    fn empty_is_ok_and_check_records_failures() {
        let mut e = FieldErrors::new();
        assert_eq!(e.check::<u8, &str>("a", Ok(1)), Some(1));
        assert!(e.clone().into_result().is_ok());
        assert_eq!(e.check::<u8, &str>("b", Err("is wrong")), None);
        assert_eq!(e.to_string(), "b: is wrong");
    }
}
