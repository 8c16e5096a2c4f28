//! Malware scanning through clamd's INSTREAM command, over TCP or a unix socket.
//!
//! The protocol is spoken here rather than through a client crate because the scan must read
//! from any `AsyncRead` (a temporary file, or an object read back from storage) under one
//! deadline, and must tell clamd's refusals ("size limit exceeded") from a verdict: anything
//! that is not a clear verdict is `Unavailable`, never `Clean`.
//!
//! INSTREAM: `zINSTREAM\0`, then chunks each prefixed by its length (4 bytes, big-endian), then
//! a zero length; clamd answers one NUL-terminated line, `stream: OK`,
//! `stream: <signature> FOUND` or `<reason> ERROR`, and closes the connection.

use std::time::Duration;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UnixStream},
};

use crate::config::{ClamdAddress, ScannerConfig};

/// Sent to clamd per chunk; clamd's own default is the same order of magnitude.
const CHUNK: usize = 64 * 1024;
/// Longer than any answer clamd gives, so that a peer that is not clamd cannot make us buffer.
const MAX_REPLY: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Infected { signature: String },
}

#[derive(thiserror::Error, Debug)]
pub enum ScanError {
    #[error("scanner unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct Scanner {
    /// `None` when scanning is off.
    clamd: Option<Clamd>,
}

#[derive(Debug, Clone)]
struct Clamd {
    address: ClamdAddress,
    timeout: Duration,
}

/// A connection to clamd, whichever way it listens.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl Scanner {
    pub fn from_config(cfg: &ScannerConfig) -> Scanner {
        Scanner { clamd: cfg.clamd.clone().map(|address| Clamd { address, timeout: cfg.timeout }) }
    }

    /// Scanning switched off: every `scan` and `ping` is `Unavailable`.
    pub fn off() -> Scanner {
        Scanner { clamd: None }
    }

    pub fn enabled(&self) -> bool {
        self.clamd.is_some()
    }

    /// Streams everything `reader` yields to clamd and returns its verdict. A timeout (the
    /// configured one, for the whole scan), a refused connection, clamd's "INSTREAM size limit
    /// exceeded" or any unexpected reply is `Unavailable`, never `Clean`.
    pub async fn scan(&self, reader: impl AsyncRead + Unpin + Send) -> Result<Verdict, ScanError> {
        let clamd = self.clamd()?;
        match tokio::time::timeout(clamd.timeout, clamd.scan(reader)).await {
            Ok(verdict) => verdict,
            Err(_) => Err(ScanError::Unavailable(format!("clamd gave no verdict within {:?}", clamd.timeout))),
        }
    }

    /// Whether clamd answers `PING` with `PONG` within the timeout.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let clamd = self.clamd()?;
        let reply = tokio::time::timeout(clamd.timeout, async {
            let mut connection = clamd.connect().await?;
            connection.write_all(b"zPING\0").await.map_err(|e| clamd.io("sending PING", e))?;
            clamd.reply(&mut connection).await
        })
        .await
        .map_err(|_| ScanError::Unavailable(format!("clamd did not answer PING within {:?}", clamd.timeout)))??;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(ScanError::Unavailable(format!("clamd answered PING with {reply:?}")))
        }
    }

    fn clamd(&self) -> Result<&Clamd, ScanError> {
        self.clamd.as_ref().ok_or_else(|| ScanError::Unavailable("scanning is off (CLAMD_ADDR is not set)".into()))
    }
}

impl Clamd {
    async fn connect(&self) -> Result<Box<dyn Connection>, ScanError> {
        match &self.address {
            ClamdAddress::Tcp(address) => match TcpStream::connect(address.as_str()).await {
                Ok(stream) => Ok(Box::new(stream)),
                Err(e) => Err(ScanError::Unavailable(format!("connecting to clamd at {address}: {e}"))),
            },
            ClamdAddress::Unix(path) => match UnixStream::connect(path).await {
                Ok(stream) => Ok(Box::new(stream)),
                Err(e) => Err(ScanError::Unavailable(format!("connecting to clamd at {}: {e}", path.display()))),
            },
        }
    }

    async fn scan(&self, mut reader: impl AsyncRead + Unpin + Send) -> Result<Verdict, ScanError> {
        let mut connection = self.connect().await?;
        let sent = async {
            connection.write_all(b"zINSTREAM\0").await?;
            let mut chunk = vec![0u8; CHUNK];
            loop {
                let read = match reader.read(&mut chunk).await {
                    Ok(read) => read,
                    Err(e) => return Ok(Err(ScanError::Unavailable(format!("reading the file to scan: {e}")))),
                };
                connection.write_all(&(read as u32).to_be_bytes()).await?;
                if read == 0 {
                    connection.flush().await?;
                    return Ok(Ok(()));
                }
                connection.write_all(&chunk[..read]).await?;
            }
        }
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(reading)) => return Err(reading),
            // clamd stops reading and closes when the stream passes its StreamMaxLength; what
            // it said before closing is a better reason than the broken pipe.
            Err(e) => {
                return Err(match self.reply(&mut connection).await {
                    Ok(reply) if !reply.is_empty() => {
                        ScanError::Unavailable(format!("clamd refused the stream: {reply}"))
                    }
                    _ => self.io("streaming to clamd", e),
                });
            }
        }
        let reply = self.reply(&mut connection).await?;
        verdict(&reply)
    }

    /// clamd's one-line answer, without the terminating NUL.
    async fn reply(&self, connection: &mut Box<dyn Connection>) -> Result<String, ScanError> {
        let mut reply = Vec::new();
        let mut limited = connection.take(MAX_REPLY as u64);
        limited.read_to_end(&mut reply).await.map_err(|e| self.io("reading clamd's answer", e))?;
        let end = reply.iter().position(|&b| b == 0 || b == b'\n').unwrap_or(reply.len());
        Ok(String::from_utf8_lossy(&reply[..end]).trim().to_string())
    }

    fn io(&self, doing: &str, e: std::io::Error) -> ScanError {
        let at = match &self.address {
            ClamdAddress::Tcp(address) => address.clone(),
            ClamdAddress::Unix(path) => path.display().to_string(),
        };
        ScanError::Unavailable(format!("{doing} ({at}): {e}"))
    }
}

/// The verdict in clamd's answer to INSTREAM; anything but a clear one is `Unavailable`.
fn verdict(reply: &str) -> Result<Verdict, ScanError> {
    let Some(result) = reply.strip_prefix("stream: ") else {
        return Err(ScanError::Unavailable(format!("unexpected answer from clamd: {reply:?}")));
    };
    if result == "OK" {
        return Ok(Verdict::Clean);
    }
    match result.strip_suffix(" FOUND") {
        Some(signature) if !signature.trim().is_empty() => Ok(Verdict::Infected { signature: signature.trim().into() }),
        _ => Err(ScanError::Unavailable(format!("clamd could not scan the file: {reply:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clear_answer_is_a_verdict() {
        assert_eq!(verdict("stream: OK").unwrap(), Verdict::Clean);
        let found = verdict("stream: Eicar-Test-Signature FOUND").unwrap();
        assert_eq!(found, Verdict::Infected { signature: "Eicar-Test-Signature".into() });
        for unclear in [
            "INSTREAM size limit exceeded. ERROR",
            "stream: Can't allocate memory ERROR",
            "stream: ",
            "stream:  FOUND",
            "stream: OK but not really",
            "",
            "UNKNOWN COMMAND",
        ] {
            assert!(verdict(unclear).is_err(), "{unclear:?}");
        }
    }

    #[tokio::test]
    async fn switched_off_it_never_says_clean() {
        let off = Scanner::from_config(&ScannerConfig::default());
        assert!(!off.enabled());
        assert!(off.scan(&b"anything"[..]).await.is_err());
        assert!(off.ping().await.is_err());
    }
}
