//! Limits that keep one client (or one address) from using up what everyone shares: sign-in
//! budgets, connections, and the per-user caps on things that are cheap to create.

use std::time::Duration;

use ipnet::IpNet;

use super::{ConfigError, err, list, parse};

#[derive(Clone, Debug)]
pub struct Limits {
    /// Failed `/auth` requests (wrong password, refused registration, bad token) per client IP
    /// per minute; successes do not spend it.
    pub auth_failures_per_minute: u32,
    /// Registrations per client IP per hour.
    pub registrations_per_hour: u32,
    /// Addresses known to carry many people (a school's router): their per-IP auth budgets are
    /// `shared_network_factor` times larger. Per-account limits are the same everywhere.
    pub shared_networks: Vec<IpNet>,
    pub shared_network_factor: u32,
    /// A connection must deliver a whole request head within this time from when it opened or
    /// sent its previous response; so it is also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Open connections at most; `None` derives it from the process's file-descriptor limit.
    pub max_connections: Option<usize>,
    /// Pending (unfinished, unexpired) assessments per student.
    pub max_pending_assessments: u32,
    /// Unspent realtime tickets per user.
    pub max_live_tickets: u32,
}

impl Limits {
    /// The factor for a client at `ip`.
    pub fn factor_for(&self, ip: std::net::IpAddr) -> u32 {
        let ip = ip.to_canonical();
        if self.shared_networks.iter().any(|n| n.contains(&ip)) { self.shared_network_factor } else { 1 }
    }
}

pub(super) fn limits(
    var: &impl Fn(&str) -> Option<String>,
    positive: &impl Fn(&'static str, u64) -> Result<u64, ConfigError>,
) -> Result<Limits, ConfigError> {
    let shared_networks = list(var, "CIFIX_AUTH_SHARED_NETWORKS")
        .into_iter()
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| err("CIFIX_AUTH_SHARED_NETWORKS", format!("{p:?} is not an IP address or CIDR")))
        })
        .collect::<Result<_, _>>()?;
    let factor = positive("CIFIX_AUTH_SHARED_NETWORK_FACTOR", parse(var, "CIFIX_AUTH_SHARED_NETWORK_FACTOR", 10)?)?;
    if factor > 1000 {
        return Err(err("CIFIX_AUTH_SHARED_NETWORK_FACTOR", "must be at most 1000"));
    }
    let max_connections = match var("CIFIX_MAX_CONNECTIONS") {
        None => None,
        Some(_) => Some(positive("CIFIX_MAX_CONNECTIONS", parse(var, "CIFIX_MAX_CONNECTIONS", 0)?)? as usize),
    };
    let header_read_timeout =
        positive("CIFIX_HEADER_READ_TIMEOUT_SECS", parse(var, "CIFIX_HEADER_READ_TIMEOUT_SECS", 10)?)?;
    Ok(Limits {
        auth_failures_per_minute: positive(
            "CIFIX_AUTH_FAILURES_PER_MINUTE",
            parse(var, "CIFIX_AUTH_FAILURES_PER_MINUTE", 30)?,
        )? as u32,
        registrations_per_hour: positive(
            "CIFIX_REGISTRATIONS_PER_HOUR",
            parse(var, "CIFIX_REGISTRATIONS_PER_HOUR", 100)?,
        )? as u32,
        shared_networks,
        shared_network_factor: factor as u32,
        header_read_timeout: Duration::from_secs(header_read_timeout),
        max_connections,
        max_pending_assessments: positive(
            "CIFIX_MAX_PENDING_ASSESSMENTS",
            parse(var, "CIFIX_MAX_PENDING_ASSESSMENTS", 5)?,
        )? as u32,
        max_live_tickets: positive("CIFIX_MAX_LIVE_TICKETS", parse(var, "CIFIX_MAX_LIVE_TICKETS", 20)?)? as u32,
    })
}
