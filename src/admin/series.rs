//! The platform's activity per UTC day over a window: sign-ups, lesson completions and active
//! students. One grouped query per figure, whatever the window's length; the days without a
//! row are filled with zeros here, so a chart has every day of the window in order.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AdminError, AdminService};
use crate::kernel::fields::FieldErrors;

/// The window when none is asked for: the last 30 days, today included.
pub const DEFAULT_SERIES_DAYS: u64 = 30;
/// The longest window: a year, leap day included.
pub const MAX_SERIES_DAYS: u64 = 366;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct DailyCounts {
    /// A UTC day.
    pub date: NaiveDate,
    /// Accounts created that day, whatever their role now: everyone signs up as a student and
    /// instructors and admins are promoted later.
    pub sign_ups: i64,
    /// Lessons completed that day (a lesson counts once per student, on the day it was first
    /// completed).
    pub lesson_completions: i64,
    /// Students with any learning activity that day.
    pub active_students: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Series {
    /// First day of the window (UTC).
    pub from: NaiveDate,
    /// Last day of the window, included.
    pub to: NaiveDate,
    /// When these numbers were computed; they may be reused for a few seconds.
    pub generated_at: DateTime<Utc>,
    /// Every day of the window, oldest first.
    pub days: Vec<DailyCounts>,
}

#[derive(FromQueryResult)]
struct DayText {
    day: String,
    n: i64,
}

#[derive(FromQueryResult)]
struct DayNumber {
    day: i64,
    n: i64,
}

/// The window asked for, with its defaults: `to` is today, `from` the 30th day ending at `to`.
pub fn series_window(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), FieldErrors> {
    let to = to.unwrap_or(today);
    let from = match from {
        Some(f) => f,
        None => to.checked_sub_days(Days::new(DEFAULT_SERIES_DAYS - 1)).unwrap_or(NaiveDate::MIN),
    };
    if from > to {
        return Err(FieldErrors::one("from", "must not be after `to`"));
    }
    if (to - from).num_days() >= MAX_SERIES_DAYS as i64 {
        return Err(FieldErrors::one("from", format!("the window may span at most {MAX_SERIES_DAYS} days")));
    }
    Ok((from, to))
}

/// The UTC calendar day of a timestamp column, grouped on, and how the group's day is written
/// as `YYYY-MM-DD`. SQLite stores timestamps as RFC 3339 text in UTC: the day is the text's
/// first ten characters. PostgreSQL groups on a date (cheaper than formatting every row).
fn day_of(backend: DbBackend, column: &str) -> (String, &'static str) {
    match backend {
        DbBackend::Postgres => (format!("({column} AT TIME ZONE 'UTC')::date"), "to_char(d, 'YYYY-MM-DD')"),
        _ => (format!("substr({column}, 1, 10)"), "d"),
    }
}

impl AdminService {
    /// Counts per UTC day from `from` to `to` (both included, defaults as [`series_window`]).
    pub async fn series(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<Series, AdminError> {
        let (from, to) = series_window(from, to, Utc::now().date_naive())?;
        if let Some(hit) = self.cache.series(from, to).await {
            return Ok(hit);
        }
        let series = self.compute_series(from, to).await?;
        self.cache.keep_series(&series).await;
        Ok(series)
    }

    async fn compute_series(&self, from: NaiveDate, to: NaiveDate) -> Result<Series, AdminError> {
        let generated_at = Utc::now();
        let db = &self.db.conn;
        let [sign_ups, completions, active] = series_statements(db.get_database_backend(), from, to)?;
        let by_text = |rows: Vec<DayText>| -> HashMap<NaiveDate, i64> {
            rows.into_iter().filter_map(|r| Some((r.day.parse().ok()?, r.n))).collect()
        };
        let sign_ups = by_text(DayText::find_by_statement(sign_ups).all(db).await?);
        let completions = by_text(DayText::find_by_statement(completions).all(db).await?);
        let active: HashMap<i64, i64> =
            DayNumber::find_by_statement(active).all(db).await?.into_iter().map(|r| (r.day, r.n)).collect();

        let days = from
            .iter_days()
            .take_while(|d| *d <= to)
            .map(|date| DailyCounts {
                date,
                sign_ups: sign_ups.get(&date).copied().unwrap_or(0),
                lesson_completions: completions.get(&date).copied().unwrap_or(0),
                active_students: active.get(&epoch_day(date)).copied().unwrap_or(0),
            })
            .collect();
        Ok(Series { from, to, generated_at, days })
    }
}

fn epoch_day(d: NaiveDate) -> i64 {
    (d - DateTime::UNIX_EPOCH.date_naive()).num_days()
}

/// Sign-ups and completions per day (the day as `YYYY-MM-DD` text), active students per day
/// (the day as days since the epoch).
pub(super) fn series_statements(
    backend: DbBackend,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<[Statement; 3], FieldErrors> {
    let end = to.checked_add_days(Days::new(1)).ok_or_else(|| FieldErrors::one("to", "is out of range"))?;
    let start_at = from.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let end_at = end.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    // Completions come from idx_lesson_progress_completed; sign-ups scan the users.
    let per_day = |table: &str, column: &str| {
        let (day, text) = day_of(backend, column);
        let sql = format!(
            "SELECT {text} AS day, n FROM (SELECT {day} AS d, COUNT(*) AS n FROM {table} \
             WHERE {column} >= $1 AND {column} < $2 GROUP BY 1) x"
        );
        Statement::from_sql_and_values(backend, sql, [start_at.into(), end_at.into()])
    };
    // Activity is kept per user and UTC hour since the epoch: hour / 24 is the UTC day. The
    // (day, student) pairs come from a range of idx_activity_hours_hour before the role join.
    let active = "SELECT a.day, COUNT(*) AS n \
        FROM (SELECT DISTINCT hour / 24 AS day, user_id FROM activity_hours WHERE hour >= $1 AND hour < $2) a \
        JOIN users u ON u.id = a.user_id WHERE u.role = 'student' GROUP BY a.day";
    let hours = [(epoch_day(from) * 24).into(), (epoch_day(end) * 24).into()];
    Ok([
        per_day("users", "created_at"),
        per_day("lesson_progress", "completed_at"),
        Statement::from_sql_and_values(backend, active, hours),
    ])
}
