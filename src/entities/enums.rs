//! The closed sets of values stored in string columns. Each column is read as its enum, so a
//! value outside the set is a decode error (a logged 500), never a silent default. The stored
//! strings are the serde names, so the JSON, the OpenAPI schema and the rows all agree.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Generates `as_str` and `FromStr` from the one list of stored names.
macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(()),
                }
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[sea_orm(string_value = "student")]
    Student,
    #[sea_orm(string_value = "instructor")]
    Instructor,
    #[sea_orm(string_value = "admin")]
    Admin,
}
names!(Role { Student => "student", Instructor => "instructor", Admin => "admin" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[sea_orm(string_value = "beginner")]
    Beginner,
    #[sea_orm(string_value = "intermediate")]
    Intermediate,
    #[sea_orm(string_value = "advanced")]
    Advanced,
}
names!(Level { Beginner => "beginner", Intermediate => "intermediate", Advanced => "advanced" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum LessonKind {
    #[sea_orm(string_value = "video")]
    Video,
    #[sea_orm(string_value = "reading")]
    Reading,
    #[sea_orm(string_value = "exercise")]
    Exercise,
    #[sea_orm(string_value = "project")]
    Project,
    #[sea_orm(string_value = "quiz")]
    Quiz,
}
names!(LessonKind {
    Video => "video",
    Reading => "reading",
    Exercise => "exercise",
    Project => "project",
    Quiz => "quiz",
});

// A lesson's progress; only ever moves forward (`completed` is never undone). A plain
// comment: a doc comment would become the schema's description in the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    #[sea_orm(string_value = "in_progress")]
    InProgress,
    #[sea_orm(string_value = "completed")]
    Completed,
}
names!(ProgressStatus { InProgress => "in_progress", Completed => "completed" });

/// What is stored of an assessment's state. Expiry is not stored: a pending row past its
/// deadline is expired on read (the API's `AssessmentStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum AssessmentState {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "completed")]
    Completed,
}
names!(AssessmentState { Pending => "pending", Completed => "completed" });

/// Where a project submission stands. `rejected` is the scanner's verdict (a file carried
/// malware), never a reviewer's: reviewers approve or ask for changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    #[sea_orm(string_value = "submitted")]
    Submitted,
    #[sea_orm(string_value = "approved")]
    Approved,
    #[sea_orm(string_value = "changes_requested")]
    ChangesRequested,
    #[sea_orm(string_value = "rejected")]
    Rejected,
}
names!(SubmissionStatus {
    Submitted => "submitted",
    Approved => "approved",
    ChangesRequested => "changes_requested",
    Rejected => "rejected",
});

/// A file's malware scan. Only `clean` and `not_scanned` (scanning is off) may be downloaded;
/// `unscannable` is a file the scanner never managed to check (too large for it, say), refused
/// like an infected one rather than kept waiting for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    #[sea_orm(string_value = "not_scanned")]
    NotScanned,
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "clean")]
    Clean,
    #[sea_orm(string_value = "infected")]
    Infected,
    #[sea_orm(string_value = "unscannable")]
    Unscannable,
}
names!(ScanStatus {
    NotScanned => "not_scanned",
    Pending => "pending",
    Clean => "clean",
    Infected => "infected",
    Unscannable => "unscannable",
});

impl ScanStatus {
    pub fn downloadable(self) -> bool {
        matches!(self, ScanStatus::Clean | ScanStatus::NotScanned)
    }

    /// Refused: the file's bytes are not kept and its submission is rejected.
    pub fn refused(self) -> bool {
        matches!(self, ScanStatus::Infected | ScanStatus::Unscannable)
    }
}

/// The metric an achievement rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum AchievementKind {
    #[sea_orm(string_value = "lessons_completed")]
    LessonsCompleted,
    #[sea_orm(string_value = "modules_completed")]
    ModulesCompleted,
    #[sea_orm(string_value = "courses_completed")]
    CoursesCompleted,
    #[sea_orm(string_value = "streak_days")]
    StreakDays,
    #[sea_orm(string_value = "assessment_score")]
    AssessmentScore,
    #[sea_orm(string_value = "projects_approved")]
    ProjectsApproved,
}
names!(AchievementKind {
    LessonsCompleted => "lessons_completed",
    ModulesCompleted => "modules_completed",
    CoursesCompleted => "courses_completed",
    StreakDays => "streak_days",
    AssessmentScore => "assessment_score",
    ProjectsApproved => "projects_approved",
});

#[cfg(test)]
mod tests {
    use sea_orm::ActiveEnum;

    use super::*;

    /// The stored name, the serde name and `as_str` must be one string, or rows and JSON drift.
    #[test]
    fn stored_names_match_serde_names() {
        fn check<T: ActiveEnum<Value = String> + Serialize + Copy>(as_str: impl Fn(T) -> &'static str) {
            for v in T::iter() {
                assert_eq!(v.to_value(), as_str(v));
                assert_eq!(serde_json::to_value(v).unwrap(), as_str(v));
            }
        }
        check(Role::as_str);
        check(Level::as_str);
        check(LessonKind::as_str);
        check(ProgressStatus::as_str);
        check(AssessmentState::as_str);
        check(AchievementKind::as_str);
        check(SubmissionStatus::as_str);
        check(ScanStatus::as_str);
        assert!(Role::try_from_value(&"superuser".to_string()).is_err());
    }
}
