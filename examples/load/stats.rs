//! Latency recording (HDR histograms, microseconds), the printed tables, and the server's
//! SQL-statement counters read from `/metrics`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use hdrhistogram::Histogram;

/// One endpoint's latencies and errors. Errors are counted by reason (a status code,
/// `timeout`, `connect`…), never dropped, and are not in the histogram.
pub struct Series {
    pub hist: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Series {
    pub fn new() -> Series {
        // 1 µs to 10 min at 3 significant digits: any latency this tool can see.
        Series { hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds"), errors: BTreeMap::new() }
    }

    pub fn record(&mut self, latency: Duration, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.hist.saturating_record(latency.as_micros().max(1) as u64),
            Err(reason) => *self.errors.entry(reason).or_default() += 1,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn count(&self) -> u64 {
        self.hist.len() + self.error_count()
    }

    pub fn ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() { f64::NAN } else { self.hist.value_at_quantile(q) as f64 / 1000.0 }
    }

    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() { f64::NAN } else { self.hist.max() as f64 / 1000.0 }
    }
}

/// Series by endpoint name, shared by every task of a scenario.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<HashMap<&'static str, Series>>>);

impl Recorder {
    pub fn record(&self, name: &'static str, latency: Duration, outcome: Result<(), String>) {
        self.0.lock().unwrap().entry(name).or_insert_with(Series::new).record(latency, outcome);
    }

    pub fn count(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).map_or(0, Series::count)
    }

    pub fn take(&self) -> HashMap<&'static str, Series> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub fn header() {
    println!(
        "  {:<34} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "endpoint", "n", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "SQL/req"
    );
}

/// One table row; `sql` is the server's mean statements per request over the same window.
pub fn row(name: &str, s: &Series, sql: Option<f64>) {
    println!(
        "  {:<34} {:>8} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9}",
        name,
        s.count(),
        s.error_count(),
        s.ms(0.50),
        s.ms(0.90),
        s.ms(0.99),
        s.max_ms(),
        sql.map_or("-".to_string(), |v| format!("{v:.2}"))
    );
    if !s.errors.is_empty() {
        let reasons: Vec<String> = s.errors.iter().map(|(r, n)| format!("{r}×{n}")).collect();
        println!("  {:<34} errors: {}", "", reasons.join(", "));
    }
}

/// `http_request_db_statements` sum and count per route template, with path parameters
/// written `{}` so that a renamed parameter still matches.
#[derive(Clone, Default)]
pub struct Statements(HashMap<String, (f64, f64)>);

impl Statements {
    pub fn parse(metrics: &str) -> Statements {
        let mut out: HashMap<String, (f64, f64)> = HashMap::new();
        for line in metrics.lines() {
            let (is_sum, rest) = if let Some(r) = line.strip_prefix("http_request_db_statements_sum{") {
                (true, r)
            } else if let Some(r) = line.strip_prefix("http_request_db_statements_count{") {
                (false, r)
            } else {
                continue;
            };
            let Some(route) = rest.split("route=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
            let entry = out.entry(normalise(route)).or_default();
            if is_sum {
                entry.0 = value;
            } else {
                entry.1 = value;
            }
        }
        Statements(out)
    }

    /// Mean statements per request on `route` between `before` and `self`.
    pub fn mean_since(&self, before: &Statements, route: &str) -> Option<f64> {
        let route = normalise(route);
        let (sum, count) = self.0.get(&route)?;
        let (sum0, count0) = before.0.get(&route).copied().unwrap_or_default();
        let n = count - count0;
        (n > 0.0).then(|| (sum - sum0) / n)
    }
}

fn normalise(route: &str) -> String {
    let mut out = String::with_capacity(route.len());
    let mut in_param = false;
    for c in route.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The server's statement counters now.
pub async fn scrape(addr: std::net::SocketAddr, token: &str) -> Statements {
    let mut conn = crate::http::Conn::new(addr);
    match conn.send(hyper::Method::GET, "/metrics", Some(token), None).await {
        Ok(r) if r.status.is_success() => Statements::parse(&String::from_utf8_lossy(&r.body)),
        _ => Statements::default(),
    }
}

pub fn rate_header() {
    println!(
        "  {:<32} {:<13} {:>9} {:>8} {:>7} {:>9} {:>9} {:>9} {:>8}",
        "endpoint", "load", "req/s", "n", "errors", "p50 ms", "p99 ms", "max ms", "SQL/req"
    );
}

/// A sweep row: `rps` is what the server completed (successes and errors) per second.
pub fn rate_row(name: &str, load: &str, rps: f64, s: &Series, sql: Option<f64>) {
    println!(
        "  {:<32} {:<13} {:>9.1} {:>8} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>8}",
        name,
        load,
        rps,
        s.count(),
        s.error_count(),
        s.ms(0.50),
        s.ms(0.99),
        s.max_ms(),
        sql.map_or("-".to_string(), |v| format!("{v:.2}"))
    );
    if !s.errors.is_empty() {
        let reasons: Vec<String> = s.errors.iter().map(|(r, n)| format!("{r}×{n}")).collect();
        println!("  {:<32} errors: {}", "", reasons.join(", "));
    }
}
