//! Learning streaks: consecutive days with any progress. Activity is stored per user per UTC
//! hour (`activity_hours`, written by progress), so a day in any whole-hour offset is exact.

use std::collections::HashSet;

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::entities::activity_hour;

/// Longest streak ever counted: it bounds the read of activity rows.
pub const MAX_STREAK_DAYS: u32 = 400;

/// Consecutive days with activity ending today, or yesterday when nothing happened yet today
/// (a streak is not broken until a whole day passes without learning), in the given offset
/// from UTC, counting at most `max_days`.
pub async fn streak_days<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    utc_offset_minutes: i32,
    max_days: u32,
) -> Result<u32, DbErr> {
    let now = Utc::now().timestamp();
    let max_days = max_days.min(MAX_STREAK_DAYS);
    let since_hour = (now - (i64::from(max_days) + 2) * 86_400).div_euclid(3600);
    let hours: Vec<i64> = activity_hour::Entity::find()
        .select_only()
        .column(activity_hour::Column::Hour)
        .filter(activity_hour::Column::UserId.eq(user_id))
        .filter(activity_hour::Column::Hour.gte(since_hour))
        .into_tuple::<i64>()
        .all(db)
        .await?;
    let offset = i64::from(utc_offset_minutes) * 60;
    let day = |secs: i64| (secs + offset).div_euclid(86_400);
    let days: HashSet<i64> = hours.iter().map(|h| day(h * 3600)).collect();
    Ok(consecutive_days(&days, day(now), max_days))
}

/// The run of consecutive days in `days` ending at `today` (or at yesterday when `today` has no
/// activity), at most `max` long.
pub fn consecutive_days(days: &HashSet<i64>, today: i64, max: u32) -> u32 {
    let mut d = if days.contains(&today) { today } else { today - 1 };
    let mut streak = 0;
    while streak < max && days.contains(&d) {
        streak += 1;
        d -= 1;
    }
    streak
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_survives_until_a_whole_day_is_missed() {
        let days: HashSet<i64> = [10, 9, 8, 5].into_iter().collect();
        assert_eq!(consecutive_days(&days, 10, 400), 3);
        assert_eq!(consecutive_days(&days, 11, 400), 3, "nothing yet today: yesterday's streak holds");
        assert_eq!(consecutive_days(&days, 12, 400), 0);
        assert_eq!(consecutive_days(&days, 10, 2), 2, "bounded");
    }
}
