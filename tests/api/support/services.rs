//! Private servers (SeaweedFS, clamd) that live as long as the test process.
//!
//! One is started the first time a test asks for it and shared by every test of the process
//! (`cargo test` runs them all in one process; nextest gives each test a process, so each pays
//! the start once). Rust never drops statics, so nothing in the process could stop the server
//! at exit: a small shell watchdog beside it does, as soon as the test process is gone, and
//! removes its directory, whether the tests passed, failed or were killed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The watchdog: runs the command in the background with its output in the log and its pid in
/// `dir/pid`; when the test process (`$1`) is gone it stops the server (killed after 2 s: its
/// data is thrown away, a clean shutdown buys nothing) and removes the directory (`$2`) and the
/// files the server leaves outside it (`$LEFTOVERS`, paths without spaces). A server that exits on its own keeps its directory until the test process
/// ends, so that the test can show its log.
/// A process that has exited but is not reaped yet still answers `kill -0`, hence `/proc`.
const WATCHDOG: &str = r#"
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
parent=$1 dir=$2 log=$3
shift 3
"$@" >"$log" 2>&1 &
child=$!
echo "$child" >"$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"
while alive "$child"; do
  if ! alive "$parent"; then
    kill "$child" 2>/dev/null
    for _ in 1 2 3 4; do alive "$child" && sleep 0.5; done
    kill -9 "$child" 2>/dev/null
    wait "$child" 2>/dev/null
    break
  fi
  sleep 0.5
done
while alive "$parent"; do sleep 1; done
rm -rf "$dir" $LEFTOVERS
"#;

/// A server process watched on behalf of the test process.
pub struct Watched {
    pub dir: PathBuf,
    log: PathBuf,
    pid: u32,
    leftovers: Vec<PathBuf>,
}

impl Watched {
    /// Starts `program args` with its output in `dir/{name}.log`; `dir` (which the caller
    /// created and filled) and `leftovers` (files the program makes elsewhere) are removed once
    /// the test process has exited.
    #[allow(clippy::zombie_processes, reason = "the watchdog must outlive the test process, which cannot wait for it")]
    pub fn start(dir: PathBuf, name: &str, program: &str, args: &[String], leftovers: Vec<PathBuf>) -> Watched {
        let log = dir.join(format!("{name}.log"));
        let listed: Vec<String> = leftovers.iter().map(|p| p.display().to_string()).collect();
        assert!(listed.iter().all(|p| !p.contains(char::is_whitespace)), "{listed:?}");
        Command::new("sh")
            .env("LEFTOVERS", listed.join(" "))
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(&dir)
            .arg(&log)
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: sh: {e}"));
        let pid_file = dir.join("pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the watchdog of {name} never started it");
            std::thread::sleep(Duration::from_millis(10));
        };
        Watched { dir, log, pid, leftovers }
    }

    /// Whether the server runs (an exited one the watchdog has not reaped yet does not).
    pub fn running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid)).is_ok_and(|status| {
            status.lines().find_map(|l| l.strip_prefix("State:")).is_some_and(|state| !state.trim().starts_with('Z'))
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 2 s) and removes its directory at once.
    pub fn stop(self) {
        let signal = |name: &str| {
            let _ =
                Command::new("kill").arg(format!("-{name}")).arg(self.pid.to_string()).stderr(Stdio::null()).status();
        };
        signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.running() {
            if Instant::now() > deadline {
                signal("KILL");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for leftover in &self.leftovers {
            let _ = std::fs::remove_file(leftover);
        }
    }
}

/// A fresh directory in the system's temporary directory, kept when this function returns
/// (the watchdog removes it).
pub fn private_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("a temporary directory").keep()
}

/// Whether `program` is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Two free loopback ports `p` and `p + 10000`: SeaweedFS's workers find a gRPC port that way
/// whatever the flags say.
pub fn free_port_pair() -> (u16, u16) {
    loop {
        let high = super::free_port();
        if high > 11_000
            && let Ok(low) = std::net::TcpListener::bind(("127.0.0.1", high - 10_000))
        {
            return (low.local_addr().unwrap().port(), high);
        }
    }
}
