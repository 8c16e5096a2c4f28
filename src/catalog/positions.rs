//! Dense, 1-based positions inside a parent (modules in a course, lessons in a module).
//!
//! Callers hold the parent course's write lock (a row lock on PostgreSQL, the writer lock on
//! SQLite), so two edits of one outline never interleave.

use sea_orm::{ConnectionTrait, DbErr, Statement, Value};
use uuid::Uuid;

/// The two tables whose rows are ordered; the names are constants, never user input.
#[derive(Clone, Copy)]
pub enum Ordered {
    Modules,
    Lessons,
}

impl Ordered {
    fn table(self) -> &'static str {
        match self {
            Ordered::Modules => "modules",
            Ordered::Lessons => "lessons",
        }
    }
    fn parent(self) -> &'static str {
        match self {
            Ordered::Modules => "course_id",
            Ordered::Lessons => "module_id",
        }
    }
}

async fn exec<C: ConnectionTrait>(db: &C, sql: String, values: Vec<Value>) -> Result<u64, DbErr> {
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    Ok(db.execute_raw(stmt).await?.rows_affected())
}

/// How many rows `parent` holds.
pub async fn count<C: ConnectionTrait>(db: &C, what: Ordered, parent: Uuid) -> Result<i32, DbErr> {
    let (t, p) = (what.table(), what.parent());
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT COUNT(*) FROM {t} WHERE {p} = $1"),
        vec![parent.into()],
    );
    let row = db.query_one_raw(stmt).await?.ok_or_else(|| DbErr::Custom("COUNT returned no row".into()))?;
    Ok(row.try_get_by_index::<i64>(0)? as i32)
}

/// Moves every sibling at `from` or after by `delta` (+1 opens a gap, -1 closes one).
///
/// Two passes through negative numbers: unique indexes are checked row by row on both
/// backends, so a single `position = position + 1` collides with the neighbour mid-statement.
pub async fn shift<C: ConnectionTrait>(
    db: &C,
    what: Ordered,
    parent: Uuid,
    from: i32,
    delta: i32,
) -> Result<(), DbErr> {
    let (t, p) = (what.table(), what.parent());
    exec(
        db,
        format!("UPDATE {t} SET position = -(position + $1) WHERE {p} = $2 AND position >= $3"),
        vec![delta.into(), parent.into(), from.into()],
    )
    .await?;
    exec(db, format!("UPDATE {t} SET position = -position WHERE {p} = $1 AND position < 0"), vec![parent.into()])
        .await?;
    Ok(())
}

/// Moves one row from `old` to `new` (both within 1..=count), shifting the rows between.
pub async fn move_to<C: ConnectionTrait>(
    db: &C,
    what: Ordered,
    parent: Uuid,
    id: Uuid,
    old: i32,
    new: i32,
) -> Result<(), DbErr> {
    if old == new {
        return Ok(());
    }
    let t = what.table();
    // Position 0 is never used by a placed row, so it parks the moving one.
    exec(db, format!("UPDATE {t} SET position = 0 WHERE id = $1"), vec![id.into()]).await?;
    shift(db, what, parent, old + 1, -1).await?;
    shift(db, what, parent, new, 1).await?;
    exec(db, format!("UPDATE {t} SET position = $1 WHERE id = $2"), vec![new.into(), id.into()]).await?;
    Ok(())
}
