//! Rate limiting with GCRA: in-process (governor) by default, in Redis when configured so that
//! every instance spends one shared budget.
//!
//! Besides budgets that every request spends, a *failure budget* is only spent by a request
//! that failed (a wrong password, a refused registration): [`RateLimiter::peek`] asks whether
//! the next failure would still be within it, [`RateLimiter::charge`] records one afterwards.
//! So a class of thirty behind one school router is never refused for signing in correctly.
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

/// The rate-limit key of a client: its IPv4 address, or its IPv6 /64 (one subscriber usually
/// holds a whole /64 and could otherwise take a fresh budget per request).
pub fn rate_limit_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

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
    pub const fn per_hour(name: &'static str, limit: u32) -> Rule {
        Rule { name, limit, period: Duration::from_secs(3600) }
    }
    /// The same budget `factor` times larger (a school's address shared by a whole class).
    pub const fn times(self, factor: u32) -> Rule {
        Rule { limit: self.limit.saturating_mul(factor), ..self }
    }
    fn emission(&self) -> Duration {
        self.period / self.limit.max(1)
    }
    /// The emission interval in the Redis scripts' unit. A budget of more than one request per
    /// microsecond would round to zero, which the scripts divide by: it is one per microsecond.
    fn emission_micros(&self) -> u64 {
        (self.emission().as_micros() as u64).max(1)
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

impl Decision {
    /// The answer of a Redis budget script: allowed (1 or 0), remaining, and the microseconds
    /// until the budget is whole and until a retry may pass.
    fn from_script(rule: &Rule, (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64)) -> Decision {
        Decision {
            allowed: allowed == 1,
            limit: rule.limit,
            remaining: remaining.max(0) as u32,
            reset_secs: (reset_us.max(0) as u64).div_ceil(1_000_000),
            retry_after_secs: (retry_us.max(0) as u64).div_ceil(1_000_000).max(u64::from(allowed != 1)),
        }
    }
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

/// Failure budgets in process: the GCRA "theoretical arrival time" per key, advanced only by
/// [`LocalFailures::charge`] and never further than one whole budget ahead, so a flood of
/// failures costs its source one period at most, not an ever-growing debt.
#[derive(Default)]
pub struct LocalFailures {
    tats: std::sync::Mutex<HashMap<(Rule, String), std::time::Instant>>,
}

impl LocalFailures {
    fn decide(rule: &Rule, tat: std::time::Instant, now: std::time::Instant) -> Decision {
        let e = rule.emission();
        let ahead = tat.saturating_duration_since(now);
        let room = (rule.period.saturating_sub(ahead).as_micros() / e.as_micros().max(1)) as u32;
        let reset_secs = ahead.as_secs_f64().ceil() as u64;
        if room >= 1 {
            Decision {
                allowed: true,
                limit: rule.limit,
                remaining: room.min(rule.limit),
                reset_secs,
                retry_after_secs: 0,
            }
        } else {
            let wait = (ahead + e).saturating_sub(rule.period);
            let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            Decision { allowed: false, limit: rule.limit, remaining: 0, reset_secs, retry_after_secs }
        }
    }

    pub fn peek(&self, rule: &Rule, key: &str) -> Decision {
        let now = std::time::Instant::now();
        let tat = self.tats.lock().unwrap().get(&(*rule, key.to_string())).copied().unwrap_or(now).max(now);
        Self::decide(rule, tat, now)
    }

    pub fn charge(&self, rule: &Rule, key: &str) -> Decision {
        let now = std::time::Instant::now();
        let mut map = self.tats.lock().unwrap();
        let tat = map.entry((*rule, key.to_string())).or_insert(now);
        *tat = ((*tat).max(now) + rule.emission()).min(now + rule.period);
        Self::decide(rule, *tat, now)
    }

    pub fn forget(&self, rule: &Rule, key: &str) {
        self.tats.lock().unwrap().remove(&(*rule, key.to_string()));
    }

    fn retain_recent(&self) {
        let now = std::time::Instant::now();
        self.tats.lock().unwrap().retain(|_, tat| *tat > now);
    }
}

/// The failure budget in Redis: the same arithmetic as [`LocalFailures`], on Redis' clock.
/// `ARGV[3]` is `peek`, `charge` or `forget`. Times are written with `%.0f` because Lua's
/// default number formatting would round microseconds since 1970 to 14 digits.
const FAILURE_SCRIPT: &str = r#"
if ARGV[3] == 'forget' then
  redis.call('DEL', KEYS[1])
  return {1, tonumber(ARGV[2]), 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if ARGV[3] == 'charge' then
  tat = math.min(tat + emission, now + burst * emission)
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local room = math.floor((now + burst * emission - tat) / emission)
if room >= 1 then
  return {1, room, math.ceil(tat - now), 0}
end
return {0, 0, math.ceil(tat - now), math.ceil(tat + emission - burst * emission - now)}
"#;

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
    Local(LocalLimiter, LocalFailures),
    Redis {
        redis: Arc<Redis>,
        script: redis::Script,
        failures: redis::Script,
        fallback: LocalLimiter,
        fallback_failures: LocalFailures,
    },
}

#[derive(Clone, Copy)]
enum FailureOp {
    Peek,
    Charge,
    Forget,
}

impl RateLimiter {
    pub fn local() -> Self {
        RateLimiter::Local(LocalLimiter::default(), LocalFailures::default())
    }

    pub fn redis(redis: Arc<Redis>) -> Self {
        RateLimiter::Redis {
            redis,
            script: redis::Script::new(GCRA_SCRIPT),
            failures: redis::Script::new(FAILURE_SCRIPT),
            fallback: LocalLimiter::default(),
            fallback_failures: LocalFailures::default(),
        }
    }

    /// Whether one more failure would still be within `rule`; spends nothing.
    pub async fn peek(&self, rule: &Rule, key: &str) -> Decision {
        self.failure(rule, key, FailureOp::Peek).await
    }

    /// Records one failure against `rule` (never refuses); the decision is for the next one.
    pub async fn charge(&self, rule: &Rule, key: &str) -> Decision {
        self.failure(rule, key, FailureOp::Charge).await
    }

    /// Forgets every failure recorded under `rule` for `key`.
    pub async fn forget(&self, rule: &Rule, key: &str) {
        self.failure(rule, key, FailureOp::Forget).await;
    }

    async fn failure(&self, rule: &Rule, key: &str, op: FailureOp) -> Decision {
        let local = |l: &LocalFailures| match op {
            FailureOp::Peek => l.peek(rule, key),
            FailureOp::Charge => l.charge(rule, key),
            FailureOp::Forget => {
                l.forget(rule, key);
                l.peek(rule, key)
            }
        };
        let (redis, script, fallback) = match self {
            RateLimiter::Local(_, l) => return local(l),
            RateLimiter::Redis { redis, failures, fallback_failures, .. } => (redis, failures, fallback_failures),
        };
        let Some(mut conn) = redis.conn().await else {
            return local(fallback);
        };
        let op_name = match op {
            FailureOp::Peek => "peek",
            FailureOp::Charge => "charge",
            FailureOp::Forget => "forget",
        };
        let result: Result<(i64, i64, i64, i64), _> = script
            .key(redis.key(&format!("rf:{}:{}:{}", rule.name, rule.limit, key)))
            .arg(rule.emission_micros())
            .arg(rule.limit)
            .arg(op_name)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok(reply) => Decision::from_script(rule, reply),
            Err(e) => {
                redis.trip(&e);
                local(fallback)
            }
        }
    }

    pub async fn check(&self, rule: &Rule, key: &str) -> Decision {
        match self {
            RateLimiter::Local(l, _) => l.check(rule, key),
            RateLimiter::Redis { redis, script, fallback, .. } => {
                let Some(mut conn) = redis.conn().await else {
                    return fallback.check(rule, key);
                };
                let redis_key = redis.key(&format!("rl:{}:{}", rule.name, key));
                let result: Result<(i64, i64, i64, i64), _> =
                    script.key(redis_key).arg(rule.emission_micros()).arg(rule.limit).invoke_async(&mut conn).await;
                match result {
                    Ok(reply) => Decision::from_script(rule, reply),
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
            RateLimiter::Local(l, f) => {
                l.retain_recent();
                f.retain_recent();
            }
            RateLimiter::Redis { fallback, fallback_failures, .. } => {
                fallback.retain_recent();
                fallback_failures.retain_recent();
            }
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

    #[test]
    fn a_failure_budget_is_spent_only_by_charges_and_holds_no_debt() {
        let f = LocalFailures::default();
        let rule = Rule::per_minute("f", 3);
        for _ in 0..10 {
            assert!(f.peek(&rule, "ip").allowed, "peeking spends nothing");
        }
        let after: Vec<_> = (0..5).map(|_| f.charge(&rule, "ip")).collect();
        assert_eq!(after.iter().map(|d| d.remaining).collect::<Vec<_>>(), vec![2, 1, 0, 0, 0]);
        assert!(!f.peek(&rule, "ip").allowed);
        assert!((1..=20).contains(&f.peek(&rule, "ip").retry_after_secs), "capped at one period");
        assert!(f.peek(&rule, "other").allowed);
        f.forget(&rule, "ip");
        assert!(f.peek(&rule, "ip").allowed);
    }
}
