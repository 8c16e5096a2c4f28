//! A real clamd for the scanning tests: the one at `CIFIX_TEST_CLAMD_ADDR` (`host:port` or
//! `unix:/path`), or else a private `clamd` (Debian's `clamav-daemon`) started once per test
//! process on a free loopback port and a unix socket in a temporary directory, stopped when the
//! process exits. It starts in well under a second because its database holds one signature:
//! the EICAR test file's, written here (the signature mirror is out of reach in CI, and the
//! tests need no other).

use std::{
    io::{Read, Write},
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use cifix::{
    config::{ClamdAddress, ScannerConfig},
    infra::scanner::Scanner,
};

use super::services::{Watched, on_path, private_dir};

/// The EICAR anti-virus test file: harmless, and detected by every scanner as if it were not.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The name the private clamd reports for it (with ClamAV's `.UNOFFICIAL` suffix, as for any
/// signature outside its official databases); ClamAV's own database uses the same name.
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";

/// A clamd the tests may use.
pub struct Clamd {
    pub address: ClamdAddress,
    /// The private clamd's unix socket (it listens on both), to test that way of connecting.
    pub socket: Option<PathBuf>,
    pub private: Option<Watched>,
}

static CLAMD: OnceLock<Clamd> = OnceLock::new();

/// The process's clamd, started on first use.
pub fn clamd() -> &'static Clamd {
    CLAMD.get_or_init(|| match std::env::var("CIFIX_TEST_CLAMD_ADDR").ok().filter(|a| !a.is_empty()) {
        Some(address) => Clamd { address: parse_address(&address), socket: None, private: None },
        None => Clamd::start_private(),
    })
}

fn parse_address(address: &str) -> ClamdAddress {
    match address.strip_prefix("unix:").or(address.starts_with('/').then_some(address)) {
        Some(path) => ClamdAddress::Unix(path.into()),
        None => ClamdAddress::Tcp(address.into()),
    }
}

impl Clamd {
    fn start_private() -> Clamd {
        Self::start_private_with_stream_limit("120M")
    }

    /// A clamd of the caller's own that refuses streams longer than `limit` (clamd's
    /// `StreamMaxLength`, e.g. `1M`); it stops when dropped.
    pub fn start_private_with_stream_limit(limit: &str) -> Clamd {
        assert!(
            on_path("clamd"),
            "this test needs clamd: apt-get install clamav-daemon (or set CIFIX_TEST_CLAMD_ADDR)"
        );
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start(limit) {
                Ok(clamd) => return clamd,
                Err(log) => last_log = log,
            }
        }
        panic!("clamd did not start:\n{last_log}");
    }

    fn try_start(stream_limit: &str) -> Result<Clamd, String> {
        let dir = private_dir("cifix-clamd-");
        let database = dir.join("db");
        std::fs::create_dir_all(&database).unwrap();
        // A body signature (name, any file type, at offset 0, the bytes in hex): it also matches
        // the file inside an archive, which clamd unpacks before matching.
        std::fs::write(database.join("eicar.ndb"), format!("{EICAR_SIGNATURE}:0:0:{}\n", hex::encode(EICAR))).unwrap();
        let port = super::free_port();
        let socket = dir.join("clamd.sock");
        let config = format!(
            "Foreground yes\nTCPAddr 127.0.0.1\nTCPSocket {port}\nLocalSocket {}\nDatabaseDirectory {}\n\
             StreamMaxLength {stream_limit}\nMaxThreads 4\nLogTime yes\n",
            socket.display(),
            database.display()
        );
        let config_path = dir.join("clamd.conf");
        std::fs::write(&config_path, config).unwrap();
        let args = ["-c".to_string(), config_path.display().to_string()];
        let clamd = Watched::start(dir, "clamd", "clamd", &args, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !clamd.running() {
                let log = clamd.log_text();
                clamd.stop();
                return Err(log);
            }
            if ping(port) {
                return Ok(Clamd {
                    address: ClamdAddress::Tcp(format!("127.0.0.1:{port}")),
                    socket: Some(socket),
                    private: Some(clamd),
                });
            }
            if Instant::now() > deadline {
                let log = clamd.log_text();
                clamd.stop();
                return Err(format!("no PONG after 30 s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Scanner settings for this clamd with the given timeout.
    pub fn config(&self, timeout: Duration) -> ScannerConfig {
        ScannerConfig { clamd: Some(self.address.clone()), timeout }
    }

    /// A scanner on this clamd (10 s timeout: a test file takes milliseconds).
    pub fn scanner(&self) -> Scanner {
        Scanner::from_config(&self.config(Duration::from_secs(10)))
    }

    /// The environment that turns scanning on in an application, for `TestApp::spawn_with`.
    pub fn env(&self) -> Vec<(String, String)> {
        let address = match &self.address {
            ClamdAddress::Tcp(address) => address.clone(),
            ClamdAddress::Unix(path) => format!("unix:{}", path.display()),
        };
        vec![("CLAMD_ADDR".into(), address), ("CIFIX_CLAMD_TIMEOUT_SECS".into(), "10".into())]
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        if let Some(private) = self.private.take() {
            private.stop();
        }
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    stream.write_all(b"zPING\0").is_ok() && stream.read_to_end(&mut reply).is_ok() && reply.starts_with(b"PONG")
}

/// A zip archive holding the EICAR file, deflated, at `docs/readme.com`.
pub fn eicar_zip() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("docs/readme.com", options).unwrap();
    zip.write_all(EICAR).unwrap();
    zip.start_file("docs/notes.txt", options).unwrap();
    zip.write_all(b"my project notes\n").unwrap();
    zip.finish().unwrap().into_inner()
}
