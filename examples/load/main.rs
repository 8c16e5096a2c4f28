//! The CIFIX LEARN benchmark: starts the real `cifix` binary on a scratch backend, pinned to one
//! core, loads it from another core, and prints tables. Run `bench/run --help` for the options
//! and the README's "Benchmark" section for what each scenario measures.
//!
//! Numbers go in notes and issues; no test asserts them.

mod http;
mod large;
mod mix;
mod os;
mod pgbench;
mod server;
mod setup;
mod stats;
mod storm;
mod sweep;
mod ws;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

use server::{Backend, Env};

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Scenario {
    /// The open-model user mix with WebSocket listeners.
    Mix,
    /// Closed-loop and fixed-rate sweeps of GET /me, the dashboard and the progress PUT
    /// (with pgbench beside them on PostgreSQL).
    Sweep,
    /// A login storm while GET /me runs at a fixed rate.
    Storm,
    /// Idle WebSocket capacity (server RSS), then event delivery at 1,000 clients.
    Ws,
    /// Only PostgreSQL's own write-transaction rate (pgbench).
    Pgbench,
    /// Every scenario, in the order above.
    All,
}

/// Benchmark of the cifix server: one process on one core, the load from another.
#[derive(Parser, Debug)]
#[command(name = "load", after_help = "Example: bench/run all --backend postgres")]
struct Args {
    #[arg(value_enum, default_value = "mix")]
    scenario: Scenario,
    /// sqlite: a temp dir, everything in process. postgres: a fresh database and Redis.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Seed tests/api/support/large_db.sql first (PostgreSQL only) and use its students.
    #[arg(long)]
    large: bool,
    /// Students in the large database (the seed's own size is 100,000).
    #[arg(long, default_value_t = 100_000)]
    large_students: u64,

    /// Mix: virtual users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Mix: how many of them hold a WebSocket and time their progress.updated events.
    #[arg(long, default_value_t = 200)]
    ws_users: usize,
    /// Mix: seconds in all, warm-up included.
    #[arg(long, default_value_t = 70.0)]
    duration: f64,
    /// Mix: seconds at the start that are not recorded.
    #[arg(long, default_value_t = 10.0)]
    warmup: f64,
    /// Mix: think time between a user's actions, uniform in MIN..MAX seconds.
    #[arg(long, default_value_t = 2.0)]
    think_min: f64,
    #[arg(long, default_value_t = 10.0)]
    think_max: f64,
    /// Mix: weights of the actions, e.g. dashboard=30,progress=35,outline=15,notifications=19,login=1
    #[arg(long, value_parser = mix::parse_weights, default_value = "")]
    mix: [u32; 5],

    /// Sweep: the endpoints to sweep (one alone is what to profile, e.g. with `perf record -C 0`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "me,dashboard,progress")]
    endpoints: Vec<sweep::Endpoint>,
    /// Sweep: connections in the closed loops.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Sweep: seconds per closed loop (the first fifth, at most 2 s, not recorded).
    #[arg(long, default_value_t = 10.0)]
    closed_seconds: f64,
    /// Sweep: fixed rates, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000")]
    rates: Vec<f64>,
    /// Sweep: seconds per fixed rate.
    #[arg(long, default_value_t = 5.0)]
    rate_seconds: f64,
    /// Sweep and pgbench: seconds of pgbench.
    #[arg(long, default_value_t = 15)]
    pgbench_seconds: u64,

    /// Storm: sign-ins in flight at once (the server hashes one per core).
    #[arg(long, default_value_t = 8)]
    storm_logins: usize,
    /// Storm: seconds.
    #[arg(long, default_value_t = 15.0)]
    storm_seconds: f64,
    /// Storm: GET /me requests per second during it.
    #[arg(long, default_value_t = 200.0)]
    storm_me_rate: f64,

    /// Ws: idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    ws_connections: usize,
    /// Ws: connected clients while event delivery is timed.
    #[arg(long, default_value_t = 1000)]
    ws_clients: usize,
    /// Ws: progress updates per second while event delivery is timed.
    #[arg(long, default_value_t = 100.0)]
    ws_rate: f64,
    /// Ws: seconds of event-delivery timing.
    #[arg(long, default_value_t = 10.0)]
    ws_seconds: f64,

    /// The server binary.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/cifix"))]
    server_bin: PathBuf,
    /// PostgreSQL maintenance database (creates and drops cifix_bench_<random>).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

impl Args {
    fn runs(&self, s: Scenario) -> bool {
        self.scenario == s || self.scenario == Scenario::All
    }

    /// Users the chosen scenarios need.
    fn users_needed(&self) -> usize {
        let mut n = self.concurrency.max(self.storm_logins * 2);
        if self.runs(Scenario::Mix) {
            n = n.max(self.users);
        }
        if self.runs(Scenario::Ws) {
            n = n.max(self.ws_clients).max(self.ws_connections.div_ceil(cifix::state::MAX_LIVE_CONNECTIONS_PER_USER));
        }
        n
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.large && args.backend != Backend::Postgres {
        anyhow::bail!("--large needs --backend postgres");
    }
    // Server on the first allowed core, this process (and pgbench, psql) on the others.
    let cpus = os::allowed_cpus();
    let server_cpu = if cpus.len() >= 2 {
        os::pin_current(&cpus[1..])?;
        Some(cpus[0])
    } else {
        eprintln!("warning: one core only; server and load generator share it");
        None
    };
    let nofile = os::raise_nofile();
    let workers = cpus.len().saturating_sub(1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    println!(
        "cifix benchmark: backend={:?}{} server core={} load cores={:?} open-files limit={nofile}",
        args.backend,
        if args.large { " (large database)" } else { "" },
        server_cpu.map_or("shared".into(), |c| c.to_string()),
        if cpus.len() >= 2 { &cpus[1..] } else { &cpus[..] },
    );
    rt.block_on(async {
        let env = Env::create(args.backend, &args.server_bin, &args.postgres_url, &args.redis_url, server_cpu).await?;
        let result = tokio::select! {
            r = run(&env, &args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        env.cleanup().await;
        result
    })
}

async fn run(env: &Env, args: &Args) -> anyhow::Result<()> {
    env.migrate().await?;
    let users = args.users_needed();
    let plan = if args.large { setup::Plan::Large { users } } else { setup::Plan::Fresh { users } };
    if args.large {
        large::seed(&env.database_url, args.large_students, env.dir.path()).await?;
    }
    let db = env.connect().await?;
    let hashes = setup::hashes().await?;
    setup::insert_users(&db, &plan, &hashes).await?;
    let mut server = env.start().await?;
    let started = std::time::Instant::now();
    let result = async {
        let server = &mut server;
        let users = setup::sign_in(server.addr, &plan).await?;
        setup::use_real_hashes(&db, &hashes).await?;
        println!(
            "setup: {} users signed in in {:.1}s; server pid {} on {}, RSS {} MiB",
            users.len(),
            started.elapsed().as_secs_f64(),
            server.pid,
            server.addr,
            server.rss_kib() / 1024
        );
        let token = &env.metrics_token;
        if args.runs(Scenario::Mix) {
            let opts = mix::MixOpts {
                users: args.users,
                ws_users: args.ws_users,
                duration: Duration::from_secs_f64(args.duration),
                warmup: Duration::from_secs_f64(args.warmup.min(args.duration / 2.0)),
                think: (args.think_min, args.think_max.max(args.think_min)),
                weights: args.mix,
            };
            let scans = if args.large { Some(large::scans(&db).await?) } else { None };
            mix::run(server, token, &users, &opts).await?;
            if let Some(before) = scans {
                tokio::time::sleep(Duration::from_secs(2)).await;
                large::print_delta(&before, &large::scans(&db).await?);
            }
        }
        let mut put_rate = None;
        if args.runs(Scenario::Sweep) {
            let opts = sweep::SweepOpts {
                endpoints: args.endpoints.clone(),
                concurrency: args.concurrency,
                closed_seconds: args.closed_seconds,
                rates: args.rates.clone(),
                rate_seconds: args.rate_seconds,
            };
            put_rate = sweep::run(server, token, &users, &opts).await;
        }
        if args.runs(Scenario::Storm) {
            let opts = storm::StormOpts {
                logins: args.storm_logins,
                seconds: args.storm_seconds,
                me_rate: args.storm_me_rate,
            };
            storm::run(server, &users, &opts).await;
        }
        if args.runs(Scenario::Ws) {
            if args.scenario == Scenario::All {
                // A fresh process, so that its memory before the sockets is what an idle
                // instance holds, not what earlier scenarios left allocated.
                let old = std::mem::replace(server, env.start().await?);
                old.stop().await;
            }
            let opts = ws::CapacityOpts {
                connections: args.ws_connections,
                clients: args.ws_clients,
                rate: args.ws_rate,
                seconds: args.ws_seconds,
            };
            ws::capacity(server, &users, &opts).await?;
        }
        if (put_rate.is_some() || args.runs(Scenario::Pgbench))
            && let Some(name) = &env.db_name
        {
            println!("\n== pgbench: -N -c 8 -j 2 -T {} (simple-update transactions) …", args.pgbench_seconds);
            let tps = pgbench::write_tps(&args.postgres_url, name, args.pgbench_seconds).await?;
            print!("  PostgreSQL write transactions: {tps:.0}/s");
            match put_rate {
                Some(put) => {
                    println!("; progress PUT closed loop: {put:.0}/s = {:.0}% of it (target ≥ 50%)", 100.0 * put / tps)
                }
                None => println!(),
            }
        } else if args.scenario == Scenario::Pgbench {
            println!("\n== pgbench: PostgreSQL only (--backend postgres)");
        }
        anyhow::Ok(())
    }
    .await;
    server.stop().await;
    db.close().await?;
    result
}
