//! Which emails exist, what each is about (and so whether a user may switch it off), and
//! rendering one from its template files.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{EmailError, EmailService, render};

/// What a message is about, which decides whether a user may switch it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Verification and password reset: always sent, no unsubscribe link.
    Security,
    NewSignIn,
    Achievements,
    ProgressDigest,
    AssessmentResults,
    ProjectReviews,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Security => "security",
            Category::NewSignIn => "new_sign_in",
            Category::Achievements => "achievements",
            Category::ProgressDigest => "progress_digest",
            Category::AssessmentResults => "assessment_results",
            Category::ProjectReviews => "project_reviews",
        }
    }
    pub fn parse(s: &str) -> Option<Category> {
        [
            Category::Security,
            Category::NewSignIn,
            Category::Achievements,
            Category::ProgressDigest,
            Category::AssessmentResults,
            Category::ProjectReviews,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
    pub fn optional(self) -> bool {
        self != Category::Security
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    VerifyEmail,
    PasswordReset,
    NewSignIn,
    AchievementAwarded,
    AssessmentResults,
    SubmissionReviewed,
}

impl Template {
    pub const ALL: [Template; 6] = [
        Template::VerifyEmail,
        Template::PasswordReset,
        Template::NewSignIn,
        Template::AchievementAwarded,
        Template::AssessmentResults,
        Template::SubmissionReviewed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::VerifyEmail => "verify_email",
            Template::PasswordReset => "password_reset",
            Template::NewSignIn => "new_sign_in",
            Template::AchievementAwarded => "achievement_awarded",
            Template::AssessmentResults => "assessment_results",
            Template::SubmissionReviewed => "submission_reviewed",
        }
    }

    pub fn category(self) -> Category {
        match self {
            Template::VerifyEmail | Template::PasswordReset => Category::Security,
            Template::NewSignIn => Category::NewSignIn,
            Template::AchievementAwarded => Category::Achievements,
            Template::AssessmentResults => Category::AssessmentResults,
            Template::SubmissionReviewed => Category::ProjectReviews,
        }
    }

    /// Whether the message carries a secret (a one-time link); its body is erased once sent.
    pub fn carries_secret(self) -> bool {
        self.category() == Category::Security
    }

    /// (text with the subject on its first line, HTML)
    fn sources(self) -> (&'static str, &'static str) {
        match self {
            Template::VerifyEmail => (
                include_str!("../../templates/email/verify_email.txt"),
                include_str!("../../templates/email/verify_email.html"),
            ),
            Template::PasswordReset => (
                include_str!("../../templates/email/password_reset.txt"),
                include_str!("../../templates/email/password_reset.html"),
            ),
            Template::NewSignIn => (
                include_str!("../../templates/email/new_sign_in.txt"),
                include_str!("../../templates/email/new_sign_in.html"),
            ),
            Template::AchievementAwarded => (
                include_str!("../../templates/email/achievement_awarded.txt"),
                include_str!("../../templates/email/achievement_awarded.html"),
            ),
            Template::AssessmentResults => (
                include_str!("../../templates/email/assessment_results.txt"),
                include_str!("../../templates/email/assessment_results.html"),
            ),
            Template::SubmissionReviewed => (
                include_str!("../../templates/email/submission_reviewed.txt"),
                include_str!("../../templates/email/submission_reviewed.html"),
            ),
        }
    }
}

/// A rendered message: what the outbox row's payload holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// RFC 8058 one-click unsubscribe URL for optional mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_unsubscribe: Option<String>,
}

impl EmailService {
    /// Renders a template with the common variables filled in.
    pub fn render(
        &self,
        template: Template,
        vars: &Value,
        display_name: Option<&str>,
        unsubscribe_url: Option<&str>,
    ) -> Result<Rendered, EmailError> {
        let mut v: Map<String, Value> = vars.as_object().cloned().unwrap_or_default();
        v.entry("product").or_insert_with(|| json!(self.settings.product));
        v.entry("public_url").or_insert_with(|| json!(self.settings.public_url));
        v.insert(
            "display_name".into(),
            json!(display_name.map(|n| render::one_line(n, 100)).unwrap_or("there".into())),
        );
        v.insert("unsubscribe_url".into(), json!(unsubscribe_url.unwrap_or_default()));
        let (text_src, html_src) = template.sources();
        let (subject_line, body) = text_src.split_once('\n').unwrap_or((text_src, ""));
        let subject_src = subject_line.strip_prefix("Subject:").unwrap_or(subject_line).trim();
        Ok(Rendered {
            subject: render::one_line(&render::render(subject_src, &v, false)?, 250),
            text: render::render(body, &v, false)?,
            html: render::render(html_src, &v, true)?,
            list_unsubscribe: unsubscribe_url.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_a_subject_and_parts() {
        for t in Template::ALL {
            let (text, html) = t.sources();
            assert!(text.starts_with("Subject: "), "{}", t.name());
            assert!(html.contains("<html"), "{}", t.name());
            // Optional mail must show its unsubscribe link in the body too.
            assert_eq!(t.category().optional(), text.contains("{{unsubscribe_url}}"), "{}", t.name());
            assert_eq!(t.category().optional(), html.contains("{{unsubscribe_url}}"), "{}", t.name());
        }
    }
}
