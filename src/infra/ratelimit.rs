//! Rate limiting with GCRA: in-process (governor) by default, in Redis when configured so that
//! every instance spends one shared budget.
//!
//! Redis down: we fail open *to the local limiter*, not to "unlimited". An outage of a cache
//! must not take the API down with it, and each instance still enforces the per-instance budget,
//! so an attacker gains at most a factor of the instance count for the outage's duration.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota, RateLimiter as Governor,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DashMapStateStore,
};

use super::redis::Redis;

/// A named budget: `limit` requests per `period`, keyed by whatever the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    pub name: &'static str,
    pub limit: u32,
    pub period: Duration,
}

impl Rule {
    pub const fn per_minute(name: &'static str, limit: u32) -> Rule {
        Rule { name, limit, period: Duration::from_secs(60) }
    }
    fn emission(&self) -> Duration {
        self.period / self.limit.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the budget is whole again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (only meaningful when refused).
    pub retry_after_secs: u64,
}

type Keyed = Governor<String, DashMapStateStore<String>, DefaultClock, StateInformationMiddleware>;

pub struct LocalLimiter {
    limiters: std::sync::Mutex<HashMap<Rule, Arc<Keyed>>>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter { limiters: std::sync::Mutex::new(HashMap::new()) }
    }
}

impl LocalLimiter {
    fn limiter(&self, rule: &Rule) -> Arc<Keyed> {
        let mut map = self.limiters.lock().unwrap();
        map.entry(*rule)
            .or_insert_with(|| {
                let burst = NonZeroU32::new(rule.limit.max(1)).unwrap();
                let quota = Quota::with_period(rule.emission()).unwrap().allow_burst(burst);
                Arc::new(Governor::dashmap(quota).with_middleware::<StateInformationMiddleware>())
            })
            .clone()
    }

    pub fn check(&self, rule: &Rule, key: &str) -> Decision {
        let limiter = self.limiter(rule);
        let emission = rule.emission();
        match limiter.check_key(&key.to_string()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = rule.limit.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: rule.limit,
                    remaining,
                    reset_secs: (emission * used).as_secs_f64().ceil() as u64,
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit: rule.limit,
                    remaining: 0,
                    reset_secs: rule.period.as_secs(),
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }

    /// Forget idle keys so that memory does not grow with every IP ever seen.
    pub fn retain_recent(&self) {
        for limiter in self.limiters.lock().unwrap().values() {
            limiter.retain_recent();
        }
    }
}

/// GCRA over a single Redis key holding the "theoretical arrival time" in microseconds.
/// Redis' own clock is used so that instances with skewed clocks still share one budget.
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - burst * emission
if allow_at > now then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now - allow_at) / emission)
return {1, remaining, math.ceil(new_tat - now), 0}
"#;

pub enum RateLimiter {
    Local(LocalLimiter),
    Redis { redis: Arc<Redis>, script: redis::Script, fallback: LocalLimiter },
}

impl RateLimiter {
    pub fn local() -> Self {
        RateLimiter::Local(LocalLimiter::default())
    }

    pub fn redis(redis: Arc<Redis>) -> Self {
        RateLimiter::Redis { redis, script: redis::Script::new(GCRA_SCRIPT), fallback: LocalLimiter::default() }
    }

    pub async fn check(&self, rule: &Rule, key: &str) -> Decision {
        match self {
            RateLimiter::Local(l) => l.check(rule, key),
            RateLimiter::Redis { redis, script, fallback } => {
                let Some(mut conn) = redis.conn().await else {
                    return fallback.check(rule, key);
                };
                let redis_key = redis.key(&format!("rl:{}:{}", rule.name, key));
                let result: Result<(i64, i64, i64, i64), _> = script
                    .key(redis_key)
                    .arg(rule.emission().as_micros() as u64)
                    .arg(rule.limit)
                    .invoke_async(&mut conn)
                    .await;
                match result {
                    Ok((allowed, remaining, reset_us, retry_us)) => Decision {
                        allowed: allowed == 1,
                        limit: rule.limit,
                        remaining: remaining.max(0) as u32,
                        reset_secs: (reset_us.max(0) as u64).div_ceil(1_000_000),
                        retry_after_secs: (retry_us.max(0) as u64).div_ceil(1_000_000).max(u64::from(allowed != 1)),
                    },
                    Err(e) => {
                        redis.trip(&e);
                        fallback.check(rule, key)
                    }
                }
            }
        }
    }

    pub fn retain_recent(&self) {
        match self {
            RateLimiter::Local(l) => l.retain_recent(),
            RateLimiter::Redis { fallback, .. } => fallback.retain_recent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_limiter_refuses_after_the_burst_and_counts_down() {
        let l = LocalLimiter::default();
        let rule = Rule::per_minute("t", 3);
        let d: Vec<_> = (0..4).map(|_| l.check(&rule, "ip")).collect();
        assert_eq!(d.iter().map(|d| d.remaining).collect::<Vec<_>>(), vec![2, 1, 0, 0]);
        assert!(d[..3].iter().all(|d| d.allowed));
        assert!(!d[3].allowed);
        assert!(d[3].retry_after_secs >= 1 && d[3].retry_after_secs <= 20);
        assert!(l.check(&rule, "other-ip").allowed, "keys have separate budgets");
    }
}
