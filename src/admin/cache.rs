//! A few seconds of reuse for the statistics: on a large database each answer costs a scan of
//! the progress tables, and a console open in several tabs asks for the same numbers at once.
//! Per instance, because every answer says when it was computed: a number a few seconds old is
//! fine as long as the operator can see that it is.

use std::time::Duration;

use chrono::NaiveDate;
use moka::future::Cache;

use super::{PlatformStats, Series};

/// Series windows kept at once: the console's few presets, with room for custom ones.
const SERIES_WINDOWS: u64 = 64;

#[derive(Clone)]
pub struct StatsCache {
    /// `None` when caching is off.
    inner: Option<Inner>,
}

#[derive(Clone)]
struct Inner {
    stats: Cache<(), PlatformStats>,
    series: Cache<(NaiveDate, NaiveDate), Series>,
}

impl StatsCache {
    /// A zero `ttl` turns caching off: every request computes.
    pub fn new(ttl: Duration) -> StatsCache {
        if ttl.is_zero() {
            return StatsCache { inner: None };
        }
        StatsCache {
            inner: Some(Inner {
                stats: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
                series: Cache::builder().max_capacity(SERIES_WINDOWS).time_to_live(ttl).build(),
            }),
        }
    }

    pub(super) async fn stats(&self) -> Option<PlatformStats> {
        self.inner.as_ref()?.stats.get(&()).await
    }

    pub(super) async fn keep_stats(&self, stats: &PlatformStats) {
        if let Some(i) = &self.inner {
            i.stats.insert((), stats.clone()).await;
        }
    }

    pub(super) async fn series(&self, from: NaiveDate, to: NaiveDate) -> Option<Series> {
        self.inner.as_ref()?.series.get(&(from, to)).await
    }

    pub(super) async fn keep_series(&self, series: &Series) {
        if let Some(i) = &self.inner {
            i.series.insert((series.from, series.to), series.clone()).await;
        }
    }
}
