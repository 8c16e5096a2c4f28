//! CSV exports of personal data: users, the audit trail, a course's enrollments with progress.
//!
//! An export is read in keyset pages (by id, one query per page) and written page by page, so
//! that neither the process nor the database ever holds a whole export. Pages are separate
//! reads, not one snapshot: a row is never written twice, but one added during a long export
//! may or may not appear. Every export is audited, and the audit row is committed before the
//! caller gets the stream, so that no byte leaves without its record.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, Statement, Value};
use serde_json::json;
use uuid::Uuid;

use super::{AdminError, AdminService, AuditFilter};
use crate::{
    entities::course,
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext},
    kernel::facts::percent,
};

/// Rows read per query.
const PAGE: usize = 1000;

pub enum ExportKind {
    Users,
    AuditLog(AuditFilter),
    CourseProgress { course_id: Uuid },
}

/// A CSV file being produced: its suggested name and its bytes, page by page.
pub struct Export {
    pub filename: String,
    pub body: BoxStream<'static, Result<Bytes, AdminError>>,
}

/// A spreadsheet runs a cell starting with one of these as a formula (and a leading tab or CR
/// can hide one), so such a cell is written as text with a leading apostrophe (OWASP's advice
/// for CSV injection).
pub fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_default()
}

/// The smallest id a row written at `at` or later can have: ids are UUIDv7, whose first 48
/// bits are the creation time in milliseconds. A second of slack covers an id taken just before
/// its row's timestamp.
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = (at.timestamp_millis() - 1000).max(0) as u128;
    Uuid::from_u128(ms << 80)
}

#[derive(FromQueryResult)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    is_active: bool,
    email_verified: bool,
    created_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct AuditRow {
    id: Uuid,
    at: DateTime<Utc>,
    actor_id: Option<Uuid>,
    actor_email: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: Option<serde_json::Value>,
}

#[derive(FromQueryResult)]
struct ProgressRow {
    id: Uuid,
    user_id: Uuid,
    email: String,
    display_name: String,
    enrolled_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    lessons_completed: i64,
    last_activity_at: Option<DateTime<Utc>>,
}

/// What one export reads, page by page.
enum Source {
    Users,
    Audit(AuditFilter),
    Progress { course_id: Uuid, lessons: i64 },
}

const USER_COLUMNS: &[&str] = &["id", "email", "display_name", "role", "is_active", "email_verified", "created_at"];
const AUDIT_COLUMNS: &[&str] = &[
    "id",
    "at",
    "actor_id",
    "actor_email",
    "action",
    "target_type",
    "target_id",
    "ip",
    "user_agent",
    "request_id",
    "details",
];
const PROGRESS_COLUMNS: &[&str] = &[
    "user_id",
    "email",
    "display_name",
    "enrolled_at",
    "lessons_completed",
    "lessons_in_course",
    "percent",
    "completed_at",
    "last_activity_at",
];

type Rows = Vec<Vec<String>>;

impl Source {
    fn header(&self) -> &'static [&'static str] {
        match self {
            Source::Users => USER_COLUMNS,
            Source::Audit(_) => AUDIT_COLUMNS,
            Source::Progress { .. } => PROGRESS_COLUMNS,
        }
    }

    /// Where the first page starts.
    fn first_cursor(&self) -> Uuid {
        match self {
            Source::Audit(AuditFilter { since: Some(since), .. }) => v7_floor(*since),
            _ => Uuid::nil(),
        }
    }

    /// The next page after `after`, and the id to continue from.
    async fn page(&self, db: &DatabaseConnection, after: Uuid) -> Result<(Rows, Option<Uuid>), DbErr> {
        let backend = db.get_database_backend();
        let limit = Value::from(PAGE as i64);
        match self {
            Source::Users => {
                let sql = "SELECT id, email, display_name, role, is_active, email_verified, created_at \
                    FROM users WHERE id > $1 ORDER BY id LIMIT $2";
                let stmt = Statement::from_sql_and_values(backend, sql, [after.into(), limit]);
                let rows = UserRow::find_by_statement(stmt).all(db).await?;
                let last = rows.last().map(|r| r.id);
                let rows = rows
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.email,
                            r.display_name,
                            r.role,
                            r.is_active.to_string(),
                            r.email_verified.to_string(),
                            time(r.created_at),
                        ]
                    })
                    .collect();
                Ok((rows, last))
            }
            Source::Audit(f) => {
                let mut sql = "SELECT a.id, a.at, a.actor_id, u.email AS actor_email, a.action, a.target_type, \
                        a.target_id, a.ip, a.user_agent, a.request_id, a.details \
                    FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id WHERE a.id > $1"
                    .to_string();
                let mut values: Vec<Value> = vec![after.into()];
                let mut filter = |condition: &str, v: Value| {
                    values.push(v);
                    sql.push_str(&format!(" AND {condition} ${}", values.len()));
                };
                if let Some(s) = f.since {
                    filter("a.at >=", s.into());
                }
                if let Some(u) = f.until {
                    filter("a.at <", u.into());
                }
                if let Some(a) = f.actor_id {
                    filter("a.actor_id =", a.into());
                }
                if let Some(action) = &f.action {
                    filter("a.action =", action.clone().into());
                }
                values.push(limit);
                sql.push_str(&format!(" ORDER BY a.id LIMIT ${}", values.len()));
                let stmt = Statement::from_sql_and_values(backend, sql, values);
                let rows = AuditRow::find_by_statement(stmt).all(db).await?;
                let last = rows.last().map(|r| r.id);
                let rows = rows
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            time(r.at),
                            opt(r.actor_id, |a| a.to_string()),
                            r.actor_email.unwrap_or_default(),
                            r.action,
                            r.target_type.unwrap_or_default(),
                            r.target_id.unwrap_or_default(),
                            r.ip.unwrap_or_default(),
                            r.user_agent.unwrap_or_default(),
                            r.request_id.unwrap_or_default(),
                            opt(r.details, |d| d.to_string()),
                        ]
                    })
                    .collect();
                Ok((rows, last))
            }
            Source::Progress { course_id, lessons } => {
                // Both counts per enrollment go through idx_lesson_progress_user_course.
                let sql = "SELECT e.id, e.user_id, u.email, u.display_name, e.enrolled_at, e.completed_at, \
                        (SELECT COUNT(*) FROM lesson_progress p WHERE p.user_id = e.user_id \
                            AND p.course_id = e.course_id AND p.status = 'completed') AS lessons_completed, \
                        (SELECT MAX(p.updated_at) FROM lesson_progress p WHERE p.user_id = e.user_id \
                            AND p.course_id = e.course_id) AS last_activity_at \
                    FROM enrollments e JOIN users u ON u.id = e.user_id \
                    WHERE e.course_id = $1 AND e.id > $2 ORDER BY e.id LIMIT $3";
                let stmt = Statement::from_sql_and_values(backend, sql, [(*course_id).into(), after.into(), limit]);
                let rows = ProgressRow::find_by_statement(stmt).all(db).await?;
                let last = rows.last().map(|r| r.id);
                let lessons = *lessons;
                let rows = rows
                    .into_iter()
                    .map(|r| {
                        vec![
                            r.user_id.to_string(),
                            r.email,
                            r.display_name,
                            time(r.enrolled_at),
                            r.lessons_completed.to_string(),
                            lessons.to_string(),
                            percent(r.lessons_completed.max(0) as u64, lessons.max(0) as u64).to_string(),
                            opt(r.completed_at, time),
                            opt(r.last_activity_at, time),
                        ]
                    })
                    .collect();
                Ok((rows, last))
            }
        }
    }
}

fn csv_chunk(header: Option<&[&str]>, rows: Rows) -> Bytes {
    // RFC 4180's line ends, which every spreadsheet reads.
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(128 * (rows.len() + 1)));
    // Writing to memory has no I/O to fail, and every record of an export has the header's
    // length, so the writer has nothing to refuse.
    if let Some(h) = header {
        w.write_record(h).expect("a CSV header is written to memory");
    }
    for row in rows {
        w.write_record(row.into_iter().map(spreadsheet_safe)).expect("a CSV record is written to memory");
    }
    Bytes::from(w.into_inner().expect("a CSV buffer in memory flushes"))
}

/// The export's bytes: the header, then one chunk per page until a short page.
fn csv_stream(db: DatabaseConnection, source: Source) -> BoxStream<'static, Result<Bytes, AdminError>> {
    let source = Arc::new(source);
    let start = Some((source.first_cursor(), true));
    stream::try_unfold(start, move |state| {
        let (db, source) = (db.clone(), source.clone());
        async move {
            let Some((after, first)) = state else { return Ok(None) };
            let (rows, last) = source.page(&db, after).await?;
            if rows.is_empty() && !first {
                return Ok(None);
            }
            let next = if rows.len() < PAGE { None } else { last.map(|l| (l, false)) };
            Ok(Some((csv_chunk(first.then(|| source.header()), rows), next)))
        }
    })
    .inspect_err(|e| tracing::warn!(error = %e, "a CSV export stopped on a database error"))
    .boxed()
}

impl AdminService {
    /// Audits the export, then hands back its stream. An unknown course is `NotFound`, and
    /// nothing is audited for it.
    pub async fn export(
        &self,
        ctx: &RequestContext,
        admin: &Principal,
        kind: ExportKind,
    ) -> Result<Export, AdminError> {
        let today = Utc::now().format("%Y-%m-%d");
        let db = &self.db.conn;
        let (source, filename, event) = match kind {
            ExportKind::Users => {
                let event = Event::new("admin.export", Some(admin.user_id)).details(json!({"kind": "users"}));
                (Source::Users, format!("users-{today}.csv"), event)
            }
            ExportKind::AuditLog(f) => {
                let details = json!({
                    "kind": "audit-log",
                    "since": f.since, "until": f.until, "actor_id": f.actor_id, "action": f.action,
                });
                let event = Event::new("admin.export", Some(admin.user_id)).details(details);
                (Source::Audit(f), format!("audit-log-{today}.csv"), event)
            }
            ExportKind::CourseProgress { course_id } => {
                let c = course::Entity::find_by_id(course_id).one(db).await?.ok_or(AdminError::NotFound)?;
                let count = "SELECT COUNT(*) FROM lessons WHERE course_id = $1";
                let stmt = Statement::from_sql_and_values(db.get_database_backend(), count, [course_id.into()]);
                let lessons: i64 =
                    db.query_one_raw(stmt).await?.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
                let event = Event::new("admin.export", Some(admin.user_id))
                    .target("course", course_id)
                    .details(json!({"kind": "course-progress", "course_id": course_id}));
                let filename = format!("course-progress-{}-{today}.csv", c.slug);
                (Source::Progress { course_id, lessons }, filename, event)
            }
        };
        let txn = self.db.begin_write().await?;
        audit::record(&*txn, ctx, event).await?;
        txn.commit().await?;
        Ok(Export { filename, body: csv_stream(self.db.conn.clone(), source) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_are_written_as_text() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(spreadsheet_safe(cell.into()), format!("'{cell}"));
        }
        for cell in ["", "a=b", "ann@example.com", "2026-01-01T00:00:00Z"] {
            assert_eq!(spreadsheet_safe(cell.into()), cell);
        }
    }

    #[test]
    fn the_audit_cursor_starts_just_before_the_first_id_of_its_time() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, 0));
        assert!(v7_floor(at) < id);
        assert!(v7_floor(at + chrono::Duration::seconds(2)) > id);
    }
}
