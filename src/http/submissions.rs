//! Project submissions: hand in (a streamed multipart upload), read, download, review.

use axum::{
    Json,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiQuery, Auth, Ctx, page_request},
    idempotent, policy,
    problem::{ApiError, ApiResult, PathId, Problem},
    uploads,
};
use crate::{
    entities::enums::SubmissionStatus,
    kernel::{context::Role, pagination::Page},
    state::AppState,
    submissions::{ByteRange, ListFilter, ReviewInput, SubmissionView},
};

pub fn router() -> OpenApiRouter<AppState> {
    let upload = OpenApiRouter::new().routes(routes!(submit_project)).layer(axum::extract::DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .routes(routes!(list_my_submissions))
        .routes(routes!(get_submission))
        .routes(routes!(download_file))
        .routes(routes!(list_course_submissions))
        .routes(routes!(review_submission))
        .merge(policy::streamed_body(upload))
}

/// The form of a hand-in (multipart/form-data).
#[derive(ToSchema)]
#[allow(dead_code)]
struct SubmissionForm {
    /// One part per file, each with its file name: code and text (UTF-8), notebooks (.ipynb),
    /// images (PNG, JPEG, GIF, WebP; re-encoded without metadata), PDF, and zip archives
    /// (checked before they are accepted).
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    files: Vec<Vec<u8>>,
    /// A few words for the reviewer (up to 5000 characters).
    #[schema(schema_with = crate::kernel::input::schema::text::<5000>)]
    note: Option<String>,
}

/// Hand in a project for a `project` lesson of a course the student is enrolled in. The body
/// is streamed: limits are checked from `Content-Length` before reading and again while
/// reading; nothing is kept of a refused upload. 409 while the previous version waits for
/// review or after it was approved; a new version is welcome after `changes_requested`.
#[utoipa::path(post, path = "/lessons/{lesson_id}/submissions", tag = "submissions",
    params(("lesson_id" = Uuid, Path)), security(("bearer" = [])),
    request_body(content = SubmissionForm, content_type = "multipart/form-data"),
    responses((status = 201, body = SubmissionView), (status = 404, body = Problem),
        (status = 409, description = "The previous version waits for review or was approved, or the lesson takes no files", body = Problem),
        (status = 413, description = "A file, the submission or the student's storage quota is over its limit", body = Problem),
        (status = 415, description = "Not multipart, or a file type outside the allow-list", body = Problem),
        (status = 422, description = "A file is unacceptable (bad name, unsafe archive, broken image …), named as `files[i]`", body = Problem),
        (status = 503, description = "File storage is unavailable; nothing was kept", body = Problem)))]
async fn submit_project(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(lesson_id): PathId,
    req: Request,
) -> ApiResult<Response> {
    let p = auth.require(&[Role::Student])?.clone();
    let limits = &s.config.uploads;
    let key = idempotent::key_of(req.headers())?;
    uploads::check_headers(&req, limits)?;
    // Refused before the body is read, unless it may be a retry: its first answer (say, a 201
    // for the version that now waits for review) is replayed once the body is compared.
    let retry = match &key {
        Some(key) => {
            crate::idempotency::answered(&s.db, &p.user_id.to_string(), key).await.map_err(ApiError::internal)?
        }
        None => false,
    };
    if !retry {
        s.submissions.may_submit(&p, lesson_id).await?;
    }
    let _slot = s.submissions.slots.take(p.user_id).map_err(crate::submissions::SubmitError::Busy)?;
    let (method, target) =
        (req.method().to_string(), req.uri().path_and_query().map(|q| q.to_string()).unwrap_or_default());
    let form = uploads::read(req, &s.submissions.staging_root, limits).await?;
    // The body is on disk now: a retry with the same key and the same bytes gets the first
    // answer, without the bytes ever being held in memory.
    if let Some(key) = &key {
        let fingerprint = form.staging.fingerprint(&method, &target);
        if let Err(answer) = idempotent::claim_for(&s, &p, key, &fingerprint).await {
            return Ok(answer);
        }
    }
    let created = s.submissions.submit(&ctx, &p, lesson_id, form.staging, &form.note).await;
    let res = match created {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    Ok(match &key {
        Some(key) => idempotent::remember(&s, &p.user_id.to_string(), key, res).await,
        None => res,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubmissionQuery {
    pub status: Option<SubmissionStatus>,
    /// Only this lesson's submissions.
    pub lesson_id: Option<Uuid>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    #[param(pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

impl SubmissionQuery {
    fn filter(&self) -> ListFilter {
        ListFilter { status: self.status, lesson_id: self.lesson_id }
    }
}

/// The caller's submissions, newest first.
#[utoipa::path(get, path = "/me/submissions", tag = "submissions", params(SubmissionQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<SubmissionView>)))]
async fn list_my_submissions(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<SubmissionQuery>,
) -> ApiResult<Json<Page<SubmissionView>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(Json(s.submissions.list_mine(&auth.0, q.filter(), page).await?))
}

/// One submission with every version of the project: for its student, the course's
/// instructor and admins; 404 for others.
#[utoipa::path(get, path = "/submissions/{id}", tag = "submissions", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = SubmissionView), (status = 404, body = Problem)))]
async fn get_submission(State(s): State<AppState>, auth: Auth, PathId(id): PathId) -> ApiResult<Json<SubmissionView>> {
    Ok(Json(s.submissions.get(&auth.0, id).await?))
}

/// A course's submissions for its instructor and admins, oldest first (`?status=submitted` is
/// the review queue).
#[utoipa::path(get, path = "/courses/{id}/submissions", tag = "submissions", params(("id" = Uuid, Path), SubmissionQuery),
    security(("bearer" = [])), responses((status = 200, body = Page<SubmissionView>), (status = 404, body = Problem)))]
async fn list_course_submissions(
    State(s): State<AppState>,
    auth: Auth,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<SubmissionQuery>,
) -> ApiResult<Json<Page<SubmissionView>>> {
    let p = auth.require(&[Role::Instructor, Role::Admin])?;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(Json(s.submissions.list_course(p, id, q.filter(), page).await?))
}

/// Approve a submission or ask for changes (the course's instructor, admins). 409 when it was
/// already answered or a file still waits for its virus check.
#[utoipa::path(post, path = "/submissions/{id}/review", tag = "submissions", params(("id" = Uuid, Path)), security(("bearer" = [])),
    request_body = ReviewInput,
    responses((status = 200, body = SubmissionView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn review_submission(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ReviewInput>,
) -> ApiResult<Json<SubmissionView>> {
    let p = auth.require(&[Role::Instructor, Role::Admin])?;
    Ok(Json(s.submissions.review(&ctx, p, id, input).await?))
}

/// A file's bytes, as an attachment that runs nothing when opened; honours a single `Range`.
/// For the file's student, the course's instructor and admins; 404 for others. 409 while the
/// file waits for its virus check or after it was refused.
#[utoipa::path(get, path = "/files/{id}", tag = "submissions", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 416, description = "The range is outside the file", body = Problem)))]
async fn download_file(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    auth: Auth,
    PathId(id): PathId,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(parse_range);
    let d = match s.submissions.download(&ctx, &auth.0, id, range).await {
        Err(crate::submissions::SubmitError::RangeNotSatisfiable(size)) => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "the range is outside the file",
            )
            .into_response();
            res.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{size}")));
            return Ok(res);
        }
        other => other?,
    };
    let partial = range.is_some();
    let object = d.object;
    let mut res = Response::new(Body::from_stream(object.stream));
    *res.status_mut() = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&d.content_type));
    h.insert(header::CONTENT_LENGTH, header_value(&(object.range.end - object.range.start).to_string()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_DISPOSITION, header_value(&content_disposition(&d.filename)));
    h.insert(header::ETAG, header_value(&format!("\"{}\"", d.sha256)));
    h.insert("content-security-policy", HeaderValue::from_static("sandbox"));
    if partial {
        let (start, end) = (object.range.start, object.range.end);
        h.insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{}/{}", end - 1, object.size)));
    }
    Ok(res)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// One `bytes=` range; several ranges, other units or nonsense are ignored (the whole file is
/// sent), as RFC 9110 allows.
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match (first.trim(), last.trim()) {
        ("", n) => number(n).map(ByteRange::Last),
        (a, "") => number(a).map(ByteRange::From),
        (a, b) => match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => Some(ByteRange::Between(a, b)),
            _ => None,
        },
    }
}

/// `attachment` with an ASCII fallback name and the real one in RFC 5987 encoding (RFC 6266),
/// so that no name can break out of the header or make the browser render the file.
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%' | ';') || c == ' ' { c } else { '_' })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says_or_ignored() {
        assert_eq!(parse_range("bytes=0-99"), Some(ByteRange::Between(0, 99)));
        assert_eq!(parse_range("bytes=100-"), Some(ByteRange::From(100)));
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Last(5)));
        for ignored in
            ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=a-b", "bytes=-", "bytes=99999999999999999999-"]
        {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
        assert_eq!(ByteRange::Last(5).resolve(3), Some(0..3));
        assert_eq!(ByteRange::Between(2, 100).resolve(10), Some(2..10));
        assert_eq!(ByteRange::From(10).resolve(10), None);
    }

    #[test]
    fn attachment_names_cannot_break_the_header() {
        let d = content_disposition("my \"project\";\r\n.py");
        assert!(d.starts_with("attachment; filename=\"my _project__"), "{d}");
        assert!(d.contains("filename*=UTF-8''my%20%22project%22%3B%0D%0A.py"), "{d}");
        assert!(HeaderValue::from_str(&d).is_ok());
        let d = content_disposition("Zeichnung für Oma.png");
        assert!(d.contains("filename*=UTF-8''Zeichnung%20f%C3%BCr%20Oma.png"), "{d}");
    }
}
