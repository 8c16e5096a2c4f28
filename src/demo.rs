//! `cifix seed-demo`: a small, realistic catalog so that a newcomer sees a living system.
//!
//! Everything goes through the same services as the API (validation, positions, audit), as a
//! demo instructor would. Running it twice changes nothing.

use rand::RngCore;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    auth::{AuthError, AuthService},
    catalog::{CatalogService, CoursePatch, LessonKind, Level, NewCourse, NewLesson, NewModule},
    entities::course,
    kernel::context::{Principal, RequestContext, Role},
    progress::{ProgressService, ProgressStatus, ProgressUpdate},
};

pub const INSTRUCTOR_EMAIL: &str = "demo-instructor@cifix.example";
pub const STUDENT_EMAILS: [&str; 2] = ["demo-student1@cifix.example", "demo-student2@cifix.example"];

type Outline = &'static [(&'static str, &'static [(&'static str, LessonKind)])];

const COURSES: &[(&str, &str, &str, Level, Outline)] = &[
    (
        "ai-for-young-explorers",
        "AI for Young Explorers",
        "What artificial intelligence is, how computers learn from examples, and how to use AI tools wisely.",
        Level::Beginner,
        &[
            (
                "What is AI?",
                &[
                    ("Robots, assistants and recommendations", LessonKind::Video),
                    ("How computers learn from examples", LessonKind::Reading),
                    ("Quiz: spot the AI", LessonKind::Quiz),
                ],
            ),
            (
                "Teach a computer",
                &[
                    ("Sorting pictures with a classifier", LessonKind::Exercise),
                    ("When AI gets it wrong: bias", LessonKind::Reading),
                    ("Project: train your own classifier", LessonKind::Project),
                ],
            ),
        ],
    ),
    (
        "python-first-steps",
        "Python First Steps",
        "Write your first programs: variables, loops and functions, by making small games.",
        Level::Beginner,
        &[
            (
                "Hello, Python",
                &[
                    ("Your first program", LessonKind::Video),
                    ("Variables are boxes", LessonKind::Reading),
                    ("Practice: a greeting machine", LessonKind::Exercise),
                ],
            ),
            (
                "Loops and decisions",
                &[
                    ("if, else and friends", LessonKind::Reading),
                    ("Repeat with for and while", LessonKind::Video),
                    ("Project: guess the number", LessonKind::Project),
                ],
            ),
        ],
    ),
    (
        "build-a-chatbot",
        "Build a Chatbot",
        "Design a friendly chatbot step by step and learn how language models answer.",
        Level::Intermediate,
        &[
            (
                "How chatbots talk",
                &[("Rules versus language models", LessonKind::Reading), ("Prompts and answers", LessonKind::Video)],
            ),
            (
                "Make your bot",
                &[
                    ("Plan the conversation", LessonKind::Exercise),
                    ("Quiz: safe and kind bots", LessonKind::Quiz),
                    ("Project: your own chatbot", LessonKind::Project),
                ],
            ),
        ],
    ),
];

pub struct DemoReport {
    /// `None` when the demo data was already there.
    pub password: Option<String>,
    pub courses: usize,
}

fn principal(user_id: Uuid, role: Role) -> Principal {
    Principal { user_id, session_id: Uuid::nil(), role }
}

pub async fn seed(
    auth: &AuthService,
    catalog: &CatalogService,
    progress: &ProgressService,
) -> anyhow::Result<DemoReport> {
    let first_slug = COURSES[0].0;
    let seeded = course::Entity::find().filter(course::Column::Slug.eq(first_slug)).count(&catalog.db.conn).await? > 0;
    if seeded {
        return Ok(DemoReport { password: None, courses: COURSES.len() });
    }
    // A fresh random password per run: demo accounts must never share a guessable one, in
    // case this is run against a database that is reachable from outside.
    let mut bytes = [0u8; 9];
    rand::rng().fill_bytes(&mut bytes);
    let password = format!("demo-{}", hex::encode(bytes));
    let create = |email: &'static str, role: Role| {
        let password = password.clone();
        async move {
            match auth.create_user(email, &password, role).await {
                Ok(u) => Ok(u.id),
                Err(AuthError::EmailTaken) => {
                    anyhow::bail!("{email} exists but the demo courses do not; remove it first")
                }
                Err(e) => Err(anyhow::anyhow!("creating {email}: {e}")),
            }
        }
    };
    let teacher = principal(create(INSTRUCTOR_EMAIL, Role::Instructor).await?, Role::Instructor);
    let mut students = Vec::new();
    for email in STUDENT_EMAILS {
        students.push(principal(create(email, Role::Student).await?, Role::Student));
    }
    let ctx = RequestContext { user_agent: Some("cifix seed-demo".into()), ..Default::default() };
    let err = |e: crate::catalog::CatalogError| anyhow::anyhow!("seeding the catalog: {e}");
    let mut first_lessons = Vec::new();
    for (slug, title, summary, level, outline) in COURSES {
        let c = catalog
            .create_course(
                &ctx,
                &teacher,
                NewCourse {
                    slug: slug.to_string(),
                    title: title.to_string(),
                    summary: summary.to_string(),
                    level: *level,
                },
            )
            .await
            .map_err(err)?;
        let mut lessons = Vec::new();
        for (module_title, module_lessons) in *outline {
            let m = catalog
                .create_module(&ctx, &teacher, c.id, NewModule { title: module_title.to_string(), position: None })
                .await
                .map_err(err)?;
            for (lesson_title, kind) in *module_lessons {
                let l = catalog
                    .create_lesson(
                        &ctx,
                        &teacher,
                        m.id,
                        NewLesson {
                            title: lesson_title.to_string(),
                            kind: *kind,
                            position: None,
                            content: Some(format!("# {lesson_title}\n\nLesson notes go here.")),
                        },
                    )
                    .await
                    .map_err(err)?;
                lessons.push(l.id);
            }
        }
        catalog
            .update_course(&ctx, &teacher, c.id, CoursePatch { published: Some(true), ..Default::default() })
            .await
            .map_err(err)?;
        first_lessons.push((c.id, lessons));
    }

    // Student 1 is well into the first course and has started the second; student 2 just
    // enrolled. Dashboards and instructor views then have something to show.
    let perr = |e: crate::progress::ProgressError| anyhow::anyhow!("seeding progress: {e}");
    let (ai, ai_lessons) = &first_lessons[0];
    let (py, py_lessons) = &first_lessons[1];
    for (course_id, s) in [(ai, &students[0]), (py, &students[0]), (ai, &students[1])] {
        progress.enroll(&ctx, s, *course_id).await.map_err(perr)?;
    }
    for (i, lesson_id) in ai_lessons.iter().take(4).enumerate() {
        let done = i < 3;
        progress
            .put_lesson_progress(
                &ctx,
                &students[0],
                *lesson_id,
                ProgressUpdate {
                    status: if done { ProgressStatus::Completed } else { ProgressStatus::InProgress },
                    progress: Some(if done { 1.0 } else { 0.4 }),
                    time_spent_seconds: Some(300 + 60 * i as i64),
                    score: (i == 2).then_some(85.0),
                },
            )
            .await
            .map_err(perr)?;
    }
    progress
        .put_lesson_progress(
            &ctx,
            &students[0],
            py_lessons[0],
            ProgressUpdate {
                status: ProgressStatus::InProgress,
                progress: Some(0.5),
                time_spent_seconds: Some(240),
                score: None,
            },
        )
        .await
        .map_err(perr)?;
    Ok(DemoReport { password: Some(password), courses: COURSES.len() })
}
