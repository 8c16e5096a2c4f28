//! Courses (publishing, owner, each course's drop-off funnel) and the submission review queue.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    charts::{self, Bars},
    page::{self, Chrome, Confirm, Notice, html, when},
    see_other,
    session::{Admin, AdminForm},
};
use crate::{
    catalog::{CoursePatch, CourseSummary},
    entities::enums::SubmissionStatus,
    http::{
        extract::{ApiQuery, Ctx, page_request},
        problem::{ApiResult, PathId},
    },
    state::AppState,
    submissions::{ListFilter, SubmissionView},
};

const PAGE_SIZE: u64 = 25;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseFilter {
    cursor: Option<String>,
    notice: Option<String>,
}

pub struct CourseRow {
    pub course: CourseSummary,
    pub owner: String,
}

#[derive(Template)]
#[template(path = "admin/courses.html")]
struct CoursesPage {
    chrome: Chrome,
    courses: Vec<CourseRow>,
    next: Option<String>,
    first: Option<String>,
}

async fn with_owners(s: &AppState, courses: Vec<CourseSummary>) -> ApiResult<Vec<CourseRow>> {
    let ids: Vec<Uuid> = courses.iter().map(|c| c.instructor_id).collect();
    let names = s.admin.names(&ids).await?;
    Ok(courses
        .into_iter()
        .map(|course| {
            let owner = names.get(&course.instructor_id).map(|(email, _)| email.clone()).unwrap_or_default();
            CourseRow { course, owner }
        })
        .collect())
}

pub async fn courses(
    State(s): State<AppState>,
    admin: Admin,
    ApiQuery(f): ApiQuery<CourseFilter>,
) -> ApiResult<Response> {
    let list = s.catalog.list_courses(&admin.principal, page_request(Some(PAGE_SIZE), f.cursor.as_deref())?).await?;
    let page = CoursesPage {
        chrome: Chrome::new(&admin, "courses", f.notice.as_deref()),
        next: list.next_cursor.map(|c| page::query(&[("cursor", Some(c))])),
        first: f.cursor.is_some().then(String::new),
        courses: with_owners(&s, list.items).await?,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "admin/course.html")]
struct CoursePage {
    chrome: Chrome,
    id: Uuid,
    title: String,
    published: bool,
    owner: String,
    modules: u64,
    lessons: u64,
    funnel: Bars,
    bar_left: u32,
}

pub async fn course(
    State(s): State<AppState>,
    admin: Admin,
    PathId(id): PathId,
    ApiQuery(n): ApiQuery<Notice>,
) -> ApiResult<Response> {
    let course = s.catalog.get_course(&admin.principal, id).await?;
    let funnel = s.admin.funnel(id).await?;
    let owner = s.admin.names(&[course.instructor_id]).await?.remove(&course.instructor_id).map(|n| n.0);
    let rows: Vec<_> = funnel.iter().map(|m| (m.title.clone(), m.started, m.completed)).collect();
    let page = CoursePage {
        chrome: Chrome::new(&admin, "courses", n.notice.as_deref()),
        id,
        published: course.published,
        owner: owner.unwrap_or_default(),
        modules: course.module_count,
        lessons: course.lesson_count,
        title: course.title,
        funnel: charts::bars(&rows),
        bar_left: charts::BAR_LEFT,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishForm {
    published: bool,
    confirm: Option<String>,
}

pub async fn set_published(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    PathId(id): PathId,
    AdminForm { admin, form }: AdminForm<PublishForm>,
) -> ApiResult<Response> {
    if !form.published && !page::confirmed(&form.confirm) {
        let course = s.catalog.get_course(&admin.principal, id).await?;
        let question = format!("Unpublish “{}”? Students no longer see it in the catalog.", course.title);
        let ask = Confirm::ask(&admin, "courses", question, format!("/admin/courses/{id}/published"), "Unpublish");
        return Ok(ask
            .back_to(format!("/admin/courses/{id}"))
            .resending(vec![("published".into(), "false".into())])
            .show());
    }
    let patch = CoursePatch { published: Some(form.published), ..CoursePatch::default() };
    s.catalog.update_course(&ctx, &admin.principal, id, patch).await?;
    let notice = if form.published { "published" } else { "unpublished" };
    Ok(see_other(&format!("/admin/courses/{id}?notice={notice}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewFilter {
    course_id: Option<Uuid>,
    cursor: Option<String>,
}

pub struct Waiting {
    pub submission: SubmissionView,
    pub student: String,
    pub submitted: String,
    pub waited_hours: i64,
}

#[derive(Template)]
#[template(path = "admin/reviews.html")]
struct ReviewsPage {
    chrome: Chrome,
    courses: Vec<CourseSummary>,
    /// The chosen course's id, or empty.
    selected: String,
    waiting: Vec<Waiting>,
    next: Option<String>,
}

/// The review queue of one course, oldest first, as its instructor sees it.
pub async fn reviews(
    State(s): State<AppState>,
    admin: Admin,
    ApiQuery(f): ApiQuery<ReviewFilter>,
) -> ApiResult<Response> {
    // The picker lists the first hundred courses; a platform with more picks by link.
    let courses = s.catalog.list_courses(&admin.principal, page_request(Some(100), None)?).await?.items;
    let (mut waiting, mut next) = (Vec::new(), None);
    if let Some(course_id) = f.course_id {
        let filter = ListFilter { status: Some(SubmissionStatus::Submitted), lesson_id: None };
        let page_req = page_request(Some(PAGE_SIZE), f.cursor.as_deref())?;
        let queue = s.submissions.list_course(&admin.principal, course_id, filter, page_req).await?;
        let ids: Vec<Uuid> = queue.items.iter().map(|w| w.user_id).collect();
        let names = s.admin.names(&ids).await?;
        let now = chrono::Utc::now();
        waiting = queue
            .items
            .into_iter()
            .map(|submission| Waiting {
                student: names.get(&submission.user_id).map(|n| n.0.clone()).unwrap_or_default(),
                submitted: when(&submission.created_at),
                waited_hours: (now - submission.created_at).num_hours(),
                submission,
            })
            .collect();
        next =
            queue.next_cursor.map(|c| page::query(&[("course_id", Some(course_id.to_string())), ("cursor", Some(c))]));
    }
    let selected = f.course_id.map(|id| id.to_string()).unwrap_or_default();
    let page = ReviewsPage { chrome: Chrome::new(&admin, "reviews", None), courses, selected, waiting, next };
    Ok(html(StatusCode::OK, &page))
}
