//! A real, minimal SMTP server for tests: it listens on `127.0.0.1:0`, speaks enough SMTP for
//! lettre (greeting, EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET,
//! NOOP, QUIT) and records every accepted message with its envelope, raw data, decoded Subject
//! and decoded body. Tests can make it refuse a recipient, greet with `421`, or answer `451` to
//! DATA, to exercise the retry decisions end to end over a real socket rather than a mock.
//!
//! The integration tests reach it as `support::smtp`; the unit tests of `src/step/notify/email.rs`
//! include it by path.

// The integration tests and the unit tests of `email.rs` each use a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Longest command line accepted; also bounds memory when a client misbehaves.
const MAX_LINE: u64 = 64 * 1024;
/// Largest message accepted; larger ones get `552` and are not recorded.
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// Envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// Envelope recipients (`RCPT TO`), in order, without angle brackets.
    pub to: Vec<String>,
    /// The message as transmitted after dot-unstuffing, lines ending in CRLF.
    pub data: String,
    /// Header fields, unfolded, values as transmitted (not decoded).
    pub headers: Vec<(String, String)>,
    /// The Subject with RFC 2047 encoded-words decoded.
    pub subject: Option<String>,
    /// The body decoded from its Content-Transfer-Encoding, with LF line ends.
    pub body: String,
    /// The user name the client authenticated as, if it did.
    pub auth_user: Option<String>,
}

impl ReceivedMail {
    /// The first header field called `name` (case-insensitive), as transmitted.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Returned by [`SmtpSink::wait_for`] when too few messages arrived in time.
#[derive(Debug, Clone)]
pub struct WaitTimeout {
    pub wanted: usize,
    pub received: Vec<ReceivedMail>,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let got = self.received.len();
        write!(
            f,
            "waited for {} mail(s), the SMTP sink got {got}",
            self.wanted
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// A reply the sink gives instead of the normal one, forever or a number of times.
#[derive(Debug, Clone, Copy)]
struct Failure {
    code: u16,
    remaining: Option<usize>,
}

impl Failure {
    /// The code to answer now, counting the use down.
    fn take(slot: &mut Option<Failure>) -> Option<u16> {
        let failure = slot.as_mut()?;
        let code = failure.code;
        match failure.remaining.as_mut() {
            Some(0) => {
                *slot = None;
                return None;
            }
            Some(left) => *left -= 1,
            None => {}
        }
        Some(code)
    }
}

#[derive(Debug, Default)]
struct Behaviour {
    greeting: Option<Failure>,
    data: Option<Failure>,
    rejected: HashMap<String, u16>,
    auth: Option<(String, String)>,
}

struct Shared {
    messages: Arc<Mutex<Vec<ReceivedMail>>>,
    behaviour: Mutex<Behaviour>,
    arrived: Notify,
}

impl Shared {
    fn behaviour(&self) -> MutexGuard<'_, Behaviour> {
        self.behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, mail: ReceivedMail) {
        lock(&self.messages).push(mail);
        self.arrived.notify_waiters();
    }
}

/// A running sink; it stops (and drops its connections) when dropped.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<ReceivedMail>>>,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SmtpSink {
    /// Binds `127.0.0.1:0` and starts accepting connections.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the SMTP sink binds a free loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            messages: Arc::clone(&messages),
            behaviour: Mutex::new(Behaviour::default()),
            arrived: Notify::new(),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        SmtpSink {
            addr,
            messages,
            shared,
            accept,
        }
    }

    /// `smtp://127.0.0.1:<port>`, ready for `FLOWD_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// A copy of the messages received so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        lock(&self.messages).clone()
    }

    /// Waits until at least `n` messages arrived and returns all of them, or gives up after
    /// `timeout`. Woken by each arrival, so it never sleeps longer than needed.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMail>, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so an arrival in between is not missed.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let received = self.received();
            if received.len() >= n {
                return Ok(received);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let received = self.received();
                return match received.len() >= n {
                    true => Ok(received),
                    false => Err(WaitTimeout {
                        wanted: n,
                        received,
                    }),
                };
            }
        }
    }

    /// Answer `code` (e.g. 550, or 450 for a transient refusal) to `RCPT TO` for `address`.
    pub fn reject_recipient(&self, address: &str, code: u16) {
        let address = address.trim().to_ascii_lowercase();
        self.shared.behaviour().rejected.insert(address, code);
    }

    /// Greet new connections with `code` (e.g. 421) and hang up; 220 restores normal service.
    pub fn set_greeting(&self, code: u16) {
        let failure = (code != 220).then_some(Failure {
            code,
            remaining: None,
        });
        self.shared.behaviour().greeting = failure;
    }

    /// Answer every message's end of DATA with `code` (e.g. 451 or 554) instead of 250.
    pub fn fail_data(&self, code: u16) {
        self.shared.behaviour().data = Some(Failure {
            code,
            remaining: None,
        });
    }

    /// Answer `code` to the next `times` messages, then accept again: a relay that recovers.
    pub fn fail_data_times(&self, code: u16, times: usize) {
        self.shared.behaviour().data = Some(Failure {
            code,
            remaining: Some(times),
        });
    }

    /// Undo `reject_recipient`, `set_greeting` and `fail_data*`.
    pub fn accept_all(&self) {
        let mut behaviour = self.shared.behaviour();
        behaviour.greeting = None;
        behaviour.data = None;
        behaviour.rejected.clear();
    }

    /// Advertise AUTH PLAIN/LOGIN and require these credentials before MAIL.
    pub fn require_auth(&self, user: &str, password: &str) {
        self.shared.behaviour().auth = Some((user.to_string(), password.to_string()));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // The set owns the connection tasks, so aborting this loop ends them too.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            // A client hanging up mid-session is normal in tests (timeouts, refusals).
            if let Err(error) = Session::serve(stream, &shared).await {
                eprintln!("SMTP sink: connection ended: {error}");
            }
        });
    }
}

/// What the client has told us so far on one connection.
struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    from: Option<String>,
    to: Vec<String>,
    auth_user: Option<String>,
}

/// Whether the conversation goes on after a command.
enum Next {
    Continue,
    Close,
}

impl Session {
    async fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
        let (reader, writer) = stream.into_split();
        let mut session = Session {
            reader: BufReader::new(reader),
            writer,
            from: None,
            to: Vec::new(),
            auth_user: None,
        };
        let refusal = Failure::take(&mut shared.behaviour().greeting);
        if let Some(code) = refusal {
            return session.reply(code, text_for(code)).await;
        }
        session.reply(220, "127.0.0.1 flowd test SMTP sink").await?;
        while let Some(line) = session.read_line().await? {
            if let Next::Close = session.command(&line, shared).await? {
                break;
            }
        }
        Ok(())
    }

    async fn command(&mut self, line: &str, shared: &Shared) -> io::Result<Next> {
        let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.ehlo(shared).await?,
            "HELO" => self.reply(250, "127.0.0.1").await?,
            "AUTH" => self.auth(argument, shared).await?,
            "MAIL" => self.mail(argument, shared).await?,
            "RCPT" => self.rcpt(argument, shared).await?,
            "DATA" => return self.data(shared).await,
            "RSET" => {
                self.reset();
                self.reply(250, "2.0.0 OK").await?;
            }
            "NOOP" => self.reply(250, "2.0.0 OK").await?,
            "QUIT" => {
                self.reply(221, "2.0.0 Bye").await?;
                return Ok(Next::Close);
            }
            _ => self.reply(502, "5.5.2 Command not implemented").await?,
        }
        Ok(Next::Continue)
    }

    async fn ehlo(&mut self, shared: &Shared) -> io::Result<()> {
        let mut lines = vec!["127.0.0.1", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"];
        if shared.behaviour().auth.is_some() {
            lines.push("AUTH PLAIN LOGIN");
        }
        let last = lines.len() - 1;
        let mut reply = String::new();
        for (at, line) in lines.iter().enumerate() {
            let separator = if at == last { ' ' } else { '-' };
            reply.push_str(&format!("250{separator}{line}\r\n"));
        }
        self.write(&reply).await
    }

    async fn auth(&mut self, argument: &str, shared: &Shared) -> io::Result<()> {
        let Some(expected) = shared.behaviour().auth.clone() else {
            return self.reply(502, "5.5.1 AUTH not offered").await;
        };
        let (mechanism, initial) = argument.split_once(' ').unwrap_or((argument, ""));
        let given = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => self.auth_plain(initial).await?,
            "LOGIN" => self.auth_login(initial).await?,
            _ => return self.reply(504, "5.5.4 Mechanism not supported").await,
        };
        match given {
            Some(credentials) if credentials == expected => {
                self.auth_user = Some(credentials.0);
                self.reply(235, "2.7.0 Authentication successful").await
            }
            _ => {
                self.reply(535, "5.7.8 Authentication credentials invalid")
                    .await
            }
        }
    }

    /// `AUTH PLAIN <base64(authzid \0 user \0 password)>`, the response possibly on its own line.
    async fn auth_plain(&mut self, initial: &str) -> io::Result<Option<(String, String)>> {
        let response = match initial.trim() {
            "" => {
                self.reply(334, "").await?;
                self.read_line().await?.unwrap_or_default()
            }
            given => given.to_string(),
        };
        let decoded = base64_decode(&response).unwrap_or_default();
        let mut parts = decoded.split(|byte| *byte == 0).skip(1);
        let user = parts
            .next()
            .map(|u| String::from_utf8_lossy(u).into_owned());
        let password = parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Ok(user.zip(password))
    }

    async fn auth_login(&mut self, initial: &str) -> io::Result<Option<(String, String)>> {
        let user = match initial.trim() {
            "" => self.challenge("VXNlcm5hbWU6").await?,
            given => decode_text(given),
        };
        let password = self.challenge("UGFzc3dvcmQ6").await?;
        Ok(user.zip(password))
    }

    async fn challenge(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.reply(334, prompt).await?;
        Ok(self.read_line().await?.and_then(|line| decode_text(&line)))
    }

    async fn mail(&mut self, argument: &str, shared: &Shared) -> io::Result<()> {
        if shared.behaviour().auth.is_some() && self.auth_user.is_none() {
            return self.reply(530, "5.7.0 Authentication required").await;
        }
        let Some(from) = path_argument(argument, "FROM:") else {
            return self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        self.reset();
        self.from = Some(from);
        self.reply(250, "2.1.0 OK").await
    }

    async fn rcpt(&mut self, argument: &str, shared: &Shared) -> io::Result<()> {
        if self.from.is_none() {
            return self.reply(503, "5.5.1 MAIL first").await;
        }
        let Some(to) = path_argument(argument, "TO:") else {
            return self.reply(501, "5.5.4 Syntax: RCPT TO:<address>").await;
        };
        let refusal = shared
            .behaviour()
            .rejected
            .get(&to.to_ascii_lowercase())
            .copied();
        if let Some(code) = refusal {
            return self.reply(code, text_for(code)).await;
        }
        self.to.push(to);
        self.reply(250, "2.1.5 OK").await
    }

    async fn data(&mut self, shared: &Shared) -> io::Result<Next> {
        if self.from.is_none() || self.to.is_empty() {
            self.reply(503, "5.5.1 RCPT first").await?;
            return Ok(Next::Continue);
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>").await?;
        let Some(data) = self.read_data().await? else {
            self.reply(552, "5.3.4 Message too big").await?;
            self.reset();
            return Ok(Next::Continue);
        };
        let failure = Failure::take(&mut shared.behaviour().data);
        if let Some(code) = failure {
            self.reply(code, text_for(code)).await?;
            self.reset();
            return Ok(if code == 421 {
                Next::Close
            } else {
                Next::Continue
            });
        }
        let from = self.from.take().unwrap_or_default();
        let to = std::mem::take(&mut self.to);
        shared.record(parse_mail(from, to, data, self.auth_user.clone()));
        self.reply(250, "2.0.0 OK queued").await?;
        Ok(Next::Continue)
    }

    /// Reads up to the lone `.` line, undoing dot-stuffing. `None` if the message was too big
    /// (it is still read to the end, so the session stays in step).
    async fn read_data(&mut self) -> io::Result<Option<String>> {
        let mut data = String::new();
        let mut too_big = false;
        loop {
            let Some(line) = self.read_line().await? else {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in DATA"));
            };
            if line == "." {
                return Ok((!too_big).then_some(data));
            }
            let line = line.strip_prefix('.').unwrap_or(&line);
            too_big |= data.len() + line.len() > MAX_MESSAGE;
            if !too_big {
                data.push_str(line);
                data.push_str("\r\n");
            }
        }
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }

    /// One line without its CRLF; `None` at end of stream.
    async fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        let read = read_bounded_line(&mut self.reader, &mut line).await?;
        if read == 0 {
            return Ok(None);
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.write(&format!("{code} {text}\r\n")).await
    }

    async fn write(&mut self, text: &str) -> io::Result<()> {
        self.writer.write_all(text.as_bytes()).await?;
        self.writer.flush().await
    }
}

async fn read_bounded_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    reader.take(MAX_LINE).read_until(b'\n', line).await
}

/// `FROM:<a@b> SIZE=10` → `a@b`; the keyword is matched case-insensitively.
fn path_argument(argument: &str, keyword: &str) -> Option<String> {
    let argument = argument.trim();
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = argument.get(keyword.len()..)?.trim_start();
    let path = match path.strip_prefix('<') {
        Some(rest) => rest.split_once('>')?.0,
        None => path.split_whitespace().next()?,
    };
    Some(path.to_string())
}

fn text_for(code: u16) -> &'static str {
    match code {
        421 => "4.3.2 Service not available, closing channel",
        450 => "4.2.1 Mailbox busy, try later",
        451 => "4.3.0 Local error in processing",
        452 => "4.3.1 Insufficient system storage",
        550 => "5.1.1 Mailbox unavailable",
        552 => "5.3.4 Message too big",
        553 => "5.1.3 Mailbox name not allowed",
        554 => "5.6.0 Transaction failed",
        _ => "Refused by the test sink",
    }
}

fn parse_mail(
    from: String,
    to: Vec<String>,
    data: String,
    auth_user: Option<String>,
) -> ReceivedMail {
    let (head, body) = match data.split_once("\r\n\r\n") {
        Some((head, body)) => (head, body),
        None => (data.as_str(), ""),
    };
    let headers = unfold_headers(head);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let subject = find("Subject").map(decode_encoded_words);
    let encoding = find("Content-Transfer-Encoding").unwrap_or("7bit");
    let body = decode_body(body, encoding);
    ReceivedMail {
        from,
        to,
        subject,
        body,
        auth_user,
        headers,
        data,
    }
}

/// Header lines as `(name, value)`, continuation lines joined to the field they continue.
fn unfold_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    headers
}

fn decode_body(body: &str, encoding: &str) -> String {
    let bytes = match encoding.trim().to_ascii_lowercase().as_str() {
        "quoted-printable" => quoted_printable_decode(body),
        "base64" => base64_decode(body).unwrap_or_else(|| body.as_bytes().to_vec()),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

/// RFC 2047: `=?charset?B|Q?text?=` words become text; whitespace between two adjacent encoded
/// words is dropped, elsewhere kept. Adjacent words are decoded together, since a sender may
/// split one multi-byte character across two of them.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    let mut gap = String::new();
    let mut pending: Option<(String, Vec<u8>)> = None;
    for token in tokens(value) {
        if token.starts_with(char::is_whitespace) {
            gap.push_str(token);
            continue;
        }
        match (encoded_word(token), pending.as_mut()) {
            (Some((_charset, bytes)), Some((_, buffer))) => buffer.extend(bytes),
            (Some(word), None) => {
                out.push_str(&gap);
                pending = Some(word);
            }
            (None, _) => {
                flush_words(&mut out, pending.take());
                out.push_str(&gap);
                out.push_str(token);
            }
        }
        gap.clear();
    }
    flush_words(&mut out, pending);
    out.push_str(&gap);
    out
}

fn flush_words(out: &mut String, pending: Option<(String, Vec<u8>)>) {
    if let Some((charset, bytes)) = pending {
        out.push_str(&decode_charset(&charset, &bytes));
    }
}

/// Alternating runs of whitespace and of everything else.
fn tokens(value: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut in_space = None;
    for (at, c) in value.char_indices() {
        let space = c.is_whitespace();
        if in_space.is_some_and(|was| was != space) {
            tokens.push(&value[start..at]);
            start = at;
        }
        in_space = Some(space);
    }
    if start < value.len() {
        tokens.push(&value[start..]);
    }
    tokens
}

/// `=?utf-8?b?Q2Fmw6k=?=` → `("utf-8", b"Caf\xc3\xa9")`.
fn encoded_word(token: &str) -> Option<(String, Vec<u8>)> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    // RFC 2231 lets a language follow the charset: `utf-8*en`.
    let charset = charset
        .split('*')
        .next()
        .unwrap_or(charset)
        .to_ascii_lowercase();
    let bytes = match encoding {
        "B" | "b" => base64_decode(text)?,
        "Q" | "q" => quoted_printable_decode(&text.replace('_', " ")),
        _ => return None,
    };
    Some((charset, bytes))
}

fn decode_charset(charset: &str, bytes: &[u8]) -> String {
    match charset {
        "iso-8859-1" | "latin1" => bytes.iter().map(|b| char::from(*b)).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` is a byte, `=` at a line end is a soft break;
/// anything malformed is kept as it is.
fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte != b'=' {
            out.push(byte);
            at += 1;
            continue;
        }
        let rest = &bytes[at + 1..];
        if rest.starts_with(b"\r\n") {
            at += 3;
        } else if rest.starts_with(b"\n") {
            at += 2;
        } else if let Some(value) = rest.get(..2).and_then(hex_pair) {
            out.push(value);
            at += 3;
        } else {
            out.push(byte);
            at += 1;
        }
    }
    out
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(text, 16).ok()
}

/// Standard base64, whitespace ignored, stopping at padding. `None` on a foreign character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ if byte.is_ascii_whitespace() => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // `buffer` holds fewer than 8 + 6 bits, so the shifted value fits a byte.
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn decode_text(base64: &str) -> Option<String> {
    base64_decode(base64.trim()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(decode_encoded_words("=?utf-8?b?Q2Fmw6kg4pyT?="), "Café ✓");
        assert_eq!(
            decode_encoded_words("=?utf-8?b?w5xu?= plain =?UTF-8?Q?Caf=C3=A9_x?=  end"),
            "Ün plain Café x  end"
        );
        // Whitespace between adjacent words goes; a character split across words survives.
        assert_eq!(
            decode_encoded_words("=?utf-8?q?Caf=C3?=\r\n =?utf-8?q?=A9?="),
            "Café"
        );
        assert_eq!(decode_encoded_words("=?iso-8859-1?q?caf=E9?="), "café");
        assert_eq!(decode_encoded_words("no =?words here"), "no =?words here");
    }

    #[test]
    fn decodes_bodies() {
        assert_eq!(
            decode_body("Caf=C3=A9 =\r\nok=3D\r\n", "quoted-printable"),
            "Café ok=\n"
        );
        assert_eq!(decode_body("w7xuw68NCsO8bsOv\r\n", "base64"), "ünï\nünï");
        assert_eq!(decode_body("bad =ZZ =", "quoted-printable"), "bad =ZZ =");
        assert_eq!(decode_body("plain\r\n", "7bit"), "plain\n");
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            path_argument("FROM:<a@b> SIZE=9", "FROM:").as_deref(),
            Some("a@b")
        );
        assert_eq!(path_argument("to: <c@d>", "TO:").as_deref(), Some("c@d"));
        assert_eq!(path_argument("TO:e@f", "TO:").as_deref(), Some("e@f"));
        assert_eq!(path_argument("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_argument("TO", "TO:"), None);
        assert_eq!(path_argument("TO:<unclosed", "TO:"), None);
    }

    #[test]
    fn unfolds_headers() {
        let headers = unfold_headers("Subject: a\r\n b\r\nTo: x@y\r\n\tz\r\nnot a header");
        assert_eq!(headers[0], ("Subject".to_string(), "a b".to_string()));
        assert_eq!(headers[1], ("To".to_string(), "x@y\tz".to_string()));
        assert_eq!(headers.len(), 2);
    }

    /// One line from the sink, within a deadline: a sink that stops answering fails the test.
    async fn read_line(read: &mut (impl AsyncBufReadExt + Unpin), line: &mut String) {
        tokio::time::timeout(Duration::from_secs(30), read.read_line(line))
            .await
            .expect("the sink answers within 30 s")
            .expect("read");
    }

    /// A raw session, byte for byte, as a client that is not lettre would speak it.
    #[tokio::test]
    async fn speaks_smtp_over_a_socket() {
        let sink = SmtpSink::start().await;
        sink.reject_recipient("No@Example.com", 550);
        let stream = TcpStream::connect(sink.addr).await.expect("connect");
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut expect = async |send: &str, code: &str| {
            if !send.is_empty() {
                write.write_all(send.as_bytes()).await.expect("write");
            }
            let mut line = String::new();
            loop {
                line.clear();
                read_line(&mut read, &mut line).await;
                if line.get(3..4) != Some("-") {
                    break;
                }
            }
            assert!(line.starts_with(code), "after {send:?}: {line:?}");
        };
        expect("", "220").await;
        expect("HELO me\r\n", "250").await;
        expect("RCPT TO:<x@y>\r\n", "503").await;
        expect("MAIL FROM:<a@b>\r\n", "250").await;
        expect("RCPT TO:<no@example.com>\r\n", "550").await;
        expect("DATA\r\n", "503").await;
        expect("RCPT TO:<c@d>\r\n", "250").await;
        expect("NOOP\r\n", "250").await;
        expect("DATA\r\n", "354").await;
        expect("Subject: hi\r\n\r\n..dot\r\nline\r\n.\r\n", "250").await;
        expect("RSET\r\n", "250").await;
        expect("BOGUS\r\n", "502").await;
        expect("QUIT\r\n", "221").await;
        let mails = sink.wait_for(1, Duration::from_secs(5)).await.expect("one");
        assert_eq!(mails[0].to, ["c@d"]);
        assert_eq!(mails[0].body, ".dot\nline\n");
        assert_eq!(mails[0].subject.as_deref(), Some("hi"));
    }

    #[tokio::test]
    async fn wait_for_times_out_with_what_arrived() {
        let sink = SmtpSink::start().await;
        let error = sink.wait_for(1, Duration::from_millis(50)).await;
        let error = error.expect_err("nothing was sent");
        assert_eq!(error.wanted, 1);
        assert!(error.received.is_empty());
    }

    #[tokio::test]
    async fn greeting_failure_then_recovery() {
        let sink = SmtpSink::start().await;
        sink.set_greeting(421);
        let mut first = String::new();
        let stream = TcpStream::connect(sink.addr).await.expect("connect");
        read_line(&mut BufReader::new(stream), &mut first).await;
        assert!(first.starts_with("421"), "{first}");
        sink.accept_all();
        let mut second = String::new();
        let stream = TcpStream::connect(sink.addr).await.expect("connect");
        read_line(&mut BufReader::new(stream), &mut second).await;
        assert!(second.starts_with("220"), "{second}");
    }
}
