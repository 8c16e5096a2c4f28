//! The real `cifix` binary as a child process: started with only the environment a test gives
//! it, its log in its data directory, stopped (SIGTERM) as an orchestrator stops it and killed
//! when its owner is dropped, also when the test fails.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;

pub const BIN: &str = env!("CARGO_BIN_EXE_cifix");

/// A `cifix` command with only `env` (and `PATH`), run in `env["CIFIX_DATA_DIR"]`.
pub fn command(env: &HashMap<String, String>) -> Command {
    let mut c = Command::new(BIN);
    // Only what the test sets: no developer's .env or shell variables leak in.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .current_dir(env["CIFIX_DATA_DIR"].clone());
    c
}

/// A running `cifix serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
    log_path: std::path::PathBuf,
}

impl Server {
    /// `cifix serve` on a free loopback port, once it is ready.
    pub async fn start(env: &HashMap<String, String>, name: &str) -> Server {
        Self::start_on(env, name, super::free_port()).await
    }

    /// `cifix serve` on `port` (a replica started again where it was), once it is ready. Its
    /// log is appended to `{name}.log` in the data directory.
    pub async fn start_on(env: &HashMap<String, String>, name: &str, port: u16) -> Server {
        let mut env = env.clone();
        env.insert("CIFIX_BIND".into(), format!("127.0.0.1:{port}"));
        let log_path = std::path::Path::new(&env["CIFIX_DATA_DIR"]).join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let child = command(&env).arg("serve").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        // Owned by `Server` from here on, so its Drop reaps the process even if we panic below.
        let server = Server { child, base: format!("http://127.0.0.1:{port}"), port, log_path };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/health/ready", server.base)).send().await
                && r.status() == StatusCode::OK
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cifix did not become ready: {}", server.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit (blocking: call it from a blocking task when the
    /// runtime must go on meanwhile).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        sigterm(self.child.id());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM, as an orchestrator sends it.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}
