//! The overview: the numbers of `GET /admin/stats`, with the top courses drawn.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};

use super::{
    charts::{self, Bars},
    page::{Chrome, html, when},
    session::Admin,
};
use crate::{admin::PlatformStats, http::problem::ApiResult, state::AppState};

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    stats: PlatformStats,
    oldest_waiting: Option<String>,
    top_courses: Bars,
    bar_left: u32,
}

pub async fn show(State(s): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let stats = s.admin.stats().await?;
    let rows: Vec<_> = stats.top_courses.iter().map(|c| (c.title.clone(), c.enrollments, c.completions)).collect();
    let page = OverviewPage {
        chrome: Chrome::new(&admin, "overview", None),
        oldest_waiting: stats.review_queue.oldest_submitted_at.as_ref().map(when),
        top_courses: charts::bars(&rows),
        bar_left: charts::BAR_LEFT,
        stats,
    };
    Ok(html(StatusCode::OK, &page))
}
