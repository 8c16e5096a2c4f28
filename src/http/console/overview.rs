//! The overview: the numbers of `GET /admin/stats`, the last 30 days of
//! `GET /admin/stats/series`, and the top courses, drawn.

use askama::Template;
use axum::{extract::State, http::StatusCode, response::Response};

use super::{
    charts::{self, Bars, Columns},
    page::{Chrome, html, when},
    session::Admin,
};
use crate::{
    admin::{DailyCounts, PlatformStats},
    http::problem::ApiResult,
    state::AppState,
};

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    stats: PlatformStats,
    oldest_waiting: Option<String>,
    top_courses: Bars,
    bar_left: u32,
    /// (title, chart) per daily series.
    daily: Vec<(&'static str, Columns)>,
    window: String,
    column_height: u32,
}

pub async fn show(State(s): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let stats = s.admin.stats().await?;
    let series = s.admin.series(None, None).await?;
    let daily_chart = |pick: fn(&DailyCounts) -> i64| {
        charts::columns(&series.days.iter().map(|d| (d.date.to_string(), pick(d))).collect::<Vec<_>>())
    };
    let daily = vec![
        ("Active students", daily_chart(|d| d.active_students)),
        ("Lessons completed", daily_chart(|d| d.lesson_completions)),
        ("Sign-ups", daily_chart(|d| d.sign_ups)),
    ];
    let rows: Vec<_> = stats.top_courses.iter().map(|c| (c.title.clone(), c.enrollments, c.completions)).collect();
    let page = OverviewPage {
        chrome: Chrome::new(&admin, "overview", None),
        oldest_waiting: stats.review_queue.oldest_submitted_at.as_ref().map(when),
        top_courses: charts::bars(&rows),
        bar_left: charts::BAR_LEFT,
        daily,
        window: format!("{} to {}", series.from, series.to),
        column_height: charts::COLUMN_HEIGHT,
        stats,
    };
    Ok(html(StatusCode::OK, &page))
}
