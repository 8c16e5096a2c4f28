//! A real SMTP server for the email tests, in the test process: it speaks enough of RFC 5321 for
//! an SMTP client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and keeps every accepted
//! message, headers and all, for the test to read.
//!
//! A test scripts it like a real server misbehaving: some recipients are refused at RCPT with
//! 550 (as a server refuses an unknown mailbox), DATA may be slow to be accepted, and the server
//! can go away (listener and every open connection closed) and come back on the same port.
//!
//! No SMTP server crate fits: the embeddable ones either block a thread pool with no way to stop
//! them, or are whole applications without scripted refusals.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

/// How the server behaves while it runs.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Recipients refused at RCPT TO with 550 (compared case-insensitively).
    pub reject: Vec<String>,
    /// How long the server takes to accept a message once its data has arrived.
    pub delay: Duration,
}

impl Script {
    pub fn rejecting(recipients: &[&str]) -> Script {
        Script { reject: recipients.iter().map(|r| r.to_lowercase()).collect(), delay: Duration::ZERO }
    }
}

/// One message as the server accepted it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as sent after DATA (dot-unstuffed, CRLF line ends, without the final dot).
    pub data: String,
}

impl Received {
    /// Unfolded header lines of the top-level message.
    pub fn headers(&self) -> Vec<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n", "\n");
        let mut out: Vec<String> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t'])
                && let Some(last) = out.last_mut()
            {
                last.push_str(line.trim_end());
                continue;
            }
            out.push(line.to_string());
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_lowercase());
        self.headers()
            .into_iter()
            .find(|h| h.to_lowercase().starts_with(&prefix))
            .map(|h| h[prefix.len()..].trim().to_string())
    }

    /// The body with quoted-printable soft breaks and `=3D` undone: enough to read links.
    pub fn decoded(&self) -> String {
        self.data.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
    }

    /// The token in the first link starting with `marker`.
    pub fn link_token(&self, marker: &str) -> String {
        let d = self.decoded();
        let at = d.find(marker).unwrap_or_else(|| panic!("no {marker} in message:\n{}", self.data)) + marker.len();
        d[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.').collect()
    }
}

pub struct SmtpServer {
    port: u16,
    /// Every message accepted since the server was created, across restarts, in arrival order.
    received: Arc<watch::Sender<Vec<Received>>>,
    running: Option<Running>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SmtpServer {
    /// A server on a free port.
    pub async fn start(script: Script) -> SmtpServer {
        Self::start_on(0, script).await
    }

    /// A server on `port` (0: any free port).
    pub async fn start_on(port: u16, script: Script) -> SmtpServer {
        let mut server = SmtpServer { port, received: Arc::new(watch::Sender::new(Vec::new())), running: None };
        server.restart(script).await;
        server
    }

    /// Listens again on the same port (stopping first if it runs), keeping what it received.
    pub async fn restart(&mut self, script: Script) {
        self.stop().await;
        let socket = TcpSocket::new_v4().unwrap();
        // The connections the last run closed linger in TIME_WAIT on this port.
        socket.set_reuseaddr(true).unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], self.port))).unwrap();
        let listener = socket.listen(64).unwrap();
        self.port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let (received, script, token) = (self.received.clone(), Arc::new(script), stop.clone());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(session(stream, script.clone(), received.clone()));
                    }
                }
            }
            drop(listener);
            // Aborting a session drops its socket: the client sees the connection closed.
            connections.shutdown().await;
        });
        self.running = Some(Running { stop, task });
    }

    /// Closes the listener and every open connection; returns once the port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.borrow().clone()
    }

    /// Waits until at least `n` messages arrived and returns them all; fails after 20 s.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let mut updates = self.received.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(20), updates.wait_for(|m| m.len() >= n)).await;
        match waited {
            Ok(Ok(messages)) => messages.clone(),
            _ => panic!("expected {n} messages, got {}", self.messages().len()),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.cancel();
        }
    }
}

/// One client connection, until QUIT, end of stream or an I/O error.
async fn session(stream: TcpStream, script: Arc<Script>, received: Arc<watch::Sender<Vec<Received>>>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut mail_from: Option<String> = None;
    let mut rcpt_tos: Vec<String> = Vec::new();
    let mut line = Vec::new();
    if write.write_all(b"220 cifix-test-smtp ESMTP ready\r\n").await.is_err() {
        return;
    }
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &str = match verb.as_str() {
            "EHLO" => "250-cifix-test-smtp\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760",
            "HELO" => "250 cifix-test-smtp",
            "MAIL" => match address(&command, "MAIL FROM:") {
                Some(from) => {
                    mail_from = Some(from);
                    rcpt_tos.clear();
                    "250 2.1.0 OK"
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>",
            },
            "RCPT" => match address(&command, "RCPT TO:") {
                _ if mail_from.is_none() => "503 5.5.1 MAIL first",
                Some(to) if script.reject.contains(&to.to_lowercase()) => "550 5.1.1 mailbox unavailable",
                Some(to) => {
                    rcpt_tos.push(to);
                    "250 2.1.5 OK"
                }
                None => "501 5.5.4 syntax: RCPT TO:<address>",
            },
            "DATA" if rcpt_tos.is_empty() => "503 5.5.1 no valid recipients",
            "DATA" => {
                if write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await.is_err() {
                    return;
                }
                let Some(data) = read_data(&mut read).await else { return };
                tokio::time::sleep(script.delay).await;
                let message = Received {
                    mail_from: mail_from.take().unwrap_or_default(),
                    rcpt_tos: std::mem::take(&mut rcpt_tos),
                    data,
                };
                received.send_modify(|all| all.push(message));
                "250 2.0.0 accepted"
            }
            "RSET" => {
                mail_from = None;
                rcpt_tos.clear();
                "250 2.0.0 OK"
            }
            "NOOP" => "250 2.0.0 OK",
            "QUIT" => {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 command not recognized",
        };
        if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The address in `MAIL FROM:<a> PARAMS` or `RCPT TO:<a>`.
fn address(command: &str, prefix: &str) -> Option<String> {
    let head = command.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = command[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    Some(inner[..inner.find('>')?].to_string())
}

/// The message after DATA, up to the line holding a single dot; `None` if the client went away.
async fn read_data(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
        // A line the client began with a dot was sent with one more (RFC 5321, 4.5.2).
        let unstuffed = if line.starts_with(b".") { &line[1..] } else { &line[..] };
        data.extend_from_slice(unstuffed);
    }
}
