//! Email delivery for the `notify` step: one plain-text message per call, sent over SMTP with
//! lettre. The server comes from one URL (`FLOWD_SMTP_URL`) so that a local relay
//! (`smtp://127.0.0.1:2525`), a submission server with STARTTLS (`smtp://host:587?tls=required`)
//! and implicit TLS (`smtps://user:pass@host:465`) are configured the same way. Failures are
//! sorted into [`EmailError`] variants that tell the runner whether a retry can help, the same
//! way HTTP failures are: connection problems, timeouts and 4xx replies are worth retrying, 5xx
//! replies and bad addresses are not. Error messages name the server as `scheme://host:port`,
//! never the URL, so the SMTP password does not leak into run records or logs.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, Error as SmtpError};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::percent_decode_str;
use url::{Host, Url};

/// Sender used when `FLOWD_SMTP_FROM` is not set.
pub const DEFAULT_FROM: &str = "flowd <flowd@localhost>";

/// Bound on one whole delivery (connect, TLS, every command, the data). A stuck relay must not
/// hold a worker forever; the runner retries a timeout like any other transient failure.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest password worth scrubbing from server replies (see [`Mailer::scrub`]).
const SCRUB_MIN_LEN: usize = 4;

/// Why an email was not sent. The variant is the retry decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// The SMTP URL, the sender or a recipient is unusable: fail at once, a retry cannot help.
    #[error("email configuration: {0}")]
    Config(String),
    /// The server refused the message for good (a 5xx reply, or it cannot take this mail).
    #[error("email rejected: {0}")]
    Rejected(String),
    /// A connection failure, a timeout or a 4xx reply: retry later.
    #[error("email not sent (temporary): {0}")]
    Transient(String),
}

impl EmailError {
    /// Whether the runner should try again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EmailError::Transient(_))
    }
}

/// A configured SMTP client. Build it once at startup; every [`Mailer::send`] opens its own
/// connection, so a relay restart between two notifications costs nothing.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `scheme://host:port`, for messages and logs; never the credentials.
    server: String,
    /// Kept only to scrub it from anything a server or a library might echo back.
    password: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Reads `FLOWD_SMTP_URL` (unset or blank: email is not configured, `Ok(None)`),
    /// `FLOWD_SMTP_FROM` (default [`DEFAULT_FROM`]) and `FLOWD_SMTP_TIMEOUT` (`30s`, `500ms`,
    /// `2m` or plain seconds; default [`DEFAULT_TIMEOUT`]) through `get` (the command line's
    /// `Config`, tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Mailer>, EmailError> {
        from_vars(get)
    }

    /// A mailer for `url` sending as `from`, with the default timeout.
    pub fn new(url: &str, from: &str) -> Result<Mailer, EmailError> {
        Mailer::with_timeout(url, from, DEFAULT_TIMEOUT)
    }

    /// A mailer whose deliveries each finish, one way or the other, within `timeout`.
    pub fn with_timeout(url: &str, from: &str, timeout: Duration) -> Result<Mailer, EmailError> {
        let server = ServerUrl::parse(url)?;
        let from = parse_mailbox(from).map_err(|why| {
            EmailError::Config(format!("sender (FLOWD_SMTP_FROM) `{from}`: {why}"))
        })?;
        let transport = server.builder()?.timeout(Some(timeout)).build();
        Ok(Mailer {
            transport,
            from,
            server: server.display,
            password: server.password,
            timeout,
        })
    }

    /// The server this mailer talks to, as `scheme://host:port` (no credentials).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one plain-text email to `to` (one address or a comma-separated list, each either
    /// `a@example.com` or `Name <a@example.com>`) and returns its Message-ID without the angle
    /// brackets.
    pub async fn send(&self, to: &str, subject: &str, text: &str) -> Result<String, EmailError> {
        let message = self.compose(to, subject, text)?;
        let id = message_id(&message);
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_response)) => Ok(id),
            Ok(Err(error)) => Err(self.classify(&error)),
            Err(_elapsed) => Err(EmailError::Transient(format!(
                "{}: no answer within {:?}",
                self.server, self.timeout
            ))),
        }
    }

    fn compose(&self, to: &str, subject: &str, text: &str) -> Result<Message, EmailError> {
        let recipients = parse_recipients(to)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        for recipient in recipients {
            builder = builder.to(recipient);
        }
        let subject = single_line(subject);
        if !subject.is_empty() {
            builder = builder.subject(subject);
        }
        builder
            .body(text.to_string())
            .map_err(|error| EmailError::Config(format!("cannot build the message: {error}")))
    }

    /// Sorts a lettre failure by what a retry could change, with the password scrubbed out.
    fn classify(&self, error: &SmtpError) -> EmailError {
        let message = format!("{}: {}", self.server, self.scrub(&describe(error)));
        if error.is_permanent() || error.is_client() {
            // 5xx, or the server lacks something this mail needs (AUTH, STARTTLS, SMTPUTF8).
            EmailError::Rejected(message)
        } else {
            // 4xx, timeouts, refused or dropped connections, TLS handshakes, garbled replies.
            EmailError::Transient(message)
        }
    }

    /// Our own messages never hold the password; this guards against a server or an I/O error
    /// echoing it. A password shorter than [`SCRUB_MIN_LEN`] cannot be told apart from ordinary
    /// text (scrubbing `p` would mangle every word), so it is left alone.
    fn scrub(&self, text: &str) -> String {
        match self.password.as_deref() {
            Some(password) if password.chars().count() >= SCRUB_MIN_LEN => {
                text.replace(password, "***")
            }
            _ => text.to_string(),
        }
    }
}

fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Mailer>, EmailError> {
    let Some(url) = var("FLOWD_SMTP_URL").filter(|url| !url.trim().is_empty()) else {
        return Ok(None);
    };
    let from = var("FLOWD_SMTP_FROM").filter(|from| !from.trim().is_empty());
    let timeout = match var("FLOWD_SMTP_TIMEOUT").filter(|t| !t.trim().is_empty()) {
        Some(text) => parse_timeout(&text)?,
        None => DEFAULT_TIMEOUT,
    };
    let from = from.as_deref().unwrap_or(DEFAULT_FROM);
    Mailer::with_timeout(url.trim(), from, timeout).map(Some)
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds. Zero would make every send time out.
fn parse_timeout(text: &str) -> Result<Duration, EmailError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().unwrap_or(0);
    let timeout = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        _ => Duration::ZERO,
    };
    if timeout.is_zero() {
        return Err(EmailError::Config(format!(
            "FLOWD_SMTP_TIMEOUT `{text}` is not a positive duration such as `30s`"
        )));
    }
    Ok(timeout)
}

/// How to reach the server, taken apart from the URL.
struct ServerUrl {
    host: String,
    port: u16,
    security: Security,
    username: Option<String>,
    password: Option<String>,
    hello_name: Option<String>,
    display: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://` without `tls`: plain text, for local relays and tests.
    Plain,
    /// `smtp://…?tls=opportunistic`: STARTTLS when offered (open to downgrade attacks).
    Opportunistic,
    /// `smtp://…?tls=required`: STARTTLS or fail.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Wrapper,
}

impl ServerUrl {
    /// Parses by hand rather than with lettre's `from_url`, so that a typo such as `?tsl=required`
    /// is an error instead of a silent plain-text connection, and so that no message can contain
    /// the URL (and with it the password).
    fn parse(text: &str) -> Result<ServerUrl, EmailError> {
        let bad = |why: String| EmailError::Config(format!("FLOWD_SMTP_URL: {why}"));
        let url = Url::parse(text.trim()).map_err(|e| bad(format!("not a URL ({e})")))?;
        let security = security(&url).map_err(bad)?;
        let host = match url.host() {
            Some(Host::Domain(name)) => name.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("no host".to_string())),
        };
        let port = url.port().unwrap_or(match security {
            Security::Plain => 25,
            Security::Opportunistic | Security::StartTls => 587,
            Security::Wrapper => 465,
        });
        let username = Some(decode(url.username())).filter(|user| !user.is_empty());
        let password = url.password().map(decode).filter(|pass| !pass.is_empty());
        let hello_name = Some(url.path().trim_matches('/'))
            .filter(|name| !name.is_empty())
            .map(decode);
        let display = format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or(""));
        Ok(ServerUrl {
            host,
            port,
            security,
            username,
            password,
            hello_name,
            display,
        })
    }

    fn builder(&self) -> Result<AsyncSmtpTransportBuilder, EmailError> {
        type Transport = AsyncSmtpTransport<Tokio1Executor>;
        let tls_error = |e: SmtpError| {
            EmailError::Config(format!(
                "FLOWD_SMTP_URL: cannot set up TLS for the host ({e})"
            ))
        };
        let mut builder = match self.security {
            Security::Plain => Transport::builder_dangerous(&self.host),
            Security::StartTls => Transport::starttls_relay(&self.host).map_err(tls_error)?,
            Security::Wrapper => Transport::relay(&self.host).map_err(tls_error)?,
            Security::Opportunistic => {
                let parameters = TlsParameters::new(self.host.clone()).map_err(tls_error)?;
                Transport::builder_dangerous(&self.host).tls(Tls::Opportunistic(parameters))
            }
        };
        builder = builder.port(self.port);
        if let Some(username) = &self.username {
            let password = self.password.clone().unwrap_or_default();
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        if let Some(name) = &self.hello_name {
            builder = builder.hello_name(client_id(name));
        }
        Ok(builder)
    }
}

fn security(url: &Url) -> Result<Security, String> {
    let mut tls = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "tls" => tls = Some(value.into_owned()),
            other => return Err(format!("unknown parameter `{other}` (only `tls` is known)")),
        }
    }
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("none")) => Ok(Security::Plain),
        ("smtp", Some("opportunistic")) => Ok(Security::Opportunistic),
        ("smtp", Some("required")) => Ok(Security::StartTls),
        ("smtps", None) => Ok(Security::Wrapper),
        ("smtp", Some(other)) => Err(format!(
            "tls=`{other}`: use tls=required (STARTTLS) or tls=opportunistic"
        )),
        ("smtps", Some(_)) => Err("smtps:// is always TLS: drop the tls parameter".to_string()),
        (scheme, _) => Err(format!("scheme `{scheme}`: use smtp:// or smtps://")),
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

fn client_id(name: &str) -> ClientId {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
        Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
        Err(_) => ClientId::Domain(name.to_string()),
    }
}

/// Splits `to` on commas outside quotes and angle brackets (`"Doe, Jane" <j@x.org>` is one
/// recipient) and parses each part strictly.
fn parse_recipients(to: &str) -> Result<Vec<Mailbox>, EmailError> {
    let mut recipients = Vec::new();
    for part in split_list(to) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let mailbox = parse_mailbox(part)
            .map_err(|why| EmailError::Config(format!("recipient `{part}`: {why}")))?;
        recipients.push(mailbox);
    }
    if recipients.is_empty() {
        return Err(EmailError::Config(
            "no recipient: `to` is empty".to_string(),
        ));
    }
    Ok(recipients)
}

fn split_list(list: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut angled) = (Vec::new(), 0, false, false);
    for (at, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angled = true,
            '>' if !quoted => angled = false,
            ',' if !quoted && !angled => {
                parts.push(&list[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

/// `a@example.com` or `Name <a@example.com>`. lettre's own mailbox parser ignores trailing
/// garbage (`a@x.org junk` would pass), so the address part goes through the strict
/// [`Address`] parser.
fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    let text = text.trim();
    if text.chars().any(char::is_control) {
        return Err("contains a control character".to_string());
    }
    let (name, address) = match text.strip_suffix('>').and_then(|t| t.rsplit_once('<')) {
        Some((name, address)) => (Some(name.trim().trim_matches('"').trim()), address.trim()),
        None => (None, text),
    };
    let address = Address::from_str(address).map_err(|e| format!("not an email address ({e})"))?;
    let name = name.filter(|name| !name.is_empty()).map(str::to_string);
    Ok(Mailbox::new(name, address))
}

/// A subject is one header line: newlines and tabs from a template become single spaces.
fn single_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn message_id(message: &Message) -> String {
    let raw = message.headers().get_raw("Message-ID").unwrap_or_default();
    raw.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// lettre's `Display` already appends its source; walking the rest of the chain would repeat it.
fn describe(error: &SmtpError) -> String {
    if error.is_timeout() {
        format!("timed out ({error})")
    } else {
        error.to_string()
    }
}

#[cfg(test)]
#[path = "../../../tests/it/support/smtp.rs"]
mod smtp_sink;

#[cfg(test)]
mod tests {
    use super::smtp_sink::SmtpSink;
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn mailer(sink: &SmtpSink) -> Mailer {
        Mailer::new(&sink.url(), DEFAULT_FROM).expect("the sink's URL is valid")
    }

    #[tokio::test]
    async fn delivers_unicode_subject_and_multiline_text() {
        let sink = SmtpSink::start().await;
        let text = "Guest Café ✓ confirmed.\nSecond line\n.a line starting with a dot\n\nEnd";
        let id = mailer(&sink)
            .send("ops@example.com", "Café ✓ — new guest", text)
            .await
            .expect("sent");
        let mails = sink.wait_for(1, WAIT).await.expect("one mail arrives");
        let mail = &mails[0];
        assert_eq!(mail.from, "flowd@localhost");
        assert_eq!(mail.to, vec!["ops@example.com"]);
        assert_eq!(mail.subject.as_deref(), Some("Café ✓ — new guest"));
        assert_eq!(mail.body.trim_end(), text);
        assert!(!id.is_empty() && !id.contains('<'), "id: {id}");
        assert_eq!(mail.header("Message-ID"), Some(format!("<{id}>").as_str()));
    }

    #[tokio::test]
    async fn delivers_ascii_mail_with_custom_sender() {
        let sink = SmtpSink::start().await;
        let mailer = Mailer::new(&sink.url(), "Back Office <office@example.org>").expect("mailer");
        mailer
            .send("a@example.com", "Hello", "plain text")
            .await
            .expect("sent");
        let mails = sink.wait_for(1, WAIT).await.expect("one mail arrives");
        assert_eq!(mails[0].from, "office@example.org");
        assert_eq!(mails[0].subject.as_deref(), Some("Hello"));
        assert_eq!(mails[0].body.trim_end(), "plain text");
        let from = mails[0].header("From").unwrap_or_default();
        assert!(from.contains("office@example.org"), "From: {from}");
    }

    #[tokio::test]
    async fn delivers_to_several_recipients() {
        let sink = SmtpSink::start().await;
        let to = "a@example.com, \"Doe, Jane\" <jane@example.com>,b@example.com";
        mailer(&sink)
            .send(to, "Hi", "all of you")
            .await
            .expect("sent");
        let mails = sink.wait_for(1, WAIT).await.expect("one mail arrives");
        assert_eq!(mails.len(), 1, "one message with three envelope recipients");
        assert_eq!(
            mails[0].to,
            vec!["a@example.com", "jane@example.com", "b@example.com"]
        );
    }

    #[tokio::test]
    async fn rcpt_550_is_rejected() {
        let sink = SmtpSink::start().await;
        sink.reject_recipient("gone@example.com", 550);
        let error = mailer(&sink)
            .send("gone@example.com", "Hi", "text")
            .await
            .expect_err("550");
        assert!(matches!(error, EmailError::Rejected(_)), "{error:?}");
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("550"), "{error}");
        assert!(sink.received().is_empty());
    }

    #[tokio::test]
    async fn greeting_421_is_transient() {
        let sink = SmtpSink::start().await;
        sink.set_greeting(421);
        let error = mailer(&sink).send("a@example.com", "Hi", "text").await;
        let error = error.expect_err("421");
        assert!(matches!(error, EmailError::Transient(_)), "{error:?}");
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn data_451_is_transient() {
        let sink = SmtpSink::start().await;
        sink.fail_data(451);
        let error = mailer(&sink).send("a@example.com", "Hi", "text").await;
        let error = error.expect_err("451");
        assert!(matches!(error, EmailError::Transient(_)), "{error:?}");
        assert!(error.to_string().contains("451"), "{error}");
    }

    #[tokio::test]
    async fn relay_that_recovers_accepts_the_retry() {
        let sink = SmtpSink::start().await;
        sink.fail_data_times(451, 1);
        let mailer = mailer(&sink);
        let first = mailer.send("a@example.com", "Hi", "text").await;
        assert!(matches!(first, Err(EmailError::Transient(_))), "{first:?}");
        mailer
            .send("a@example.com", "Hi", "text")
            .await
            .expect("retry succeeds");
        assert_eq!(sink.wait_for(1, WAIT).await.expect("one mail").len(), 1);
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // Bind then drop a listener so the port is known to be closed.
        let port = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mailer = Mailer::new(&format!("smtp://127.0.0.1:{port}"), DEFAULT_FROM).expect("ok");
        let error = mailer.send("a@example.com", "Hi", "text").await;
        let error = error.expect_err("refused");
        assert!(matches!(error, EmailError::Transient(_)), "{error:?}");
    }

    #[tokio::test]
    async fn silent_server_times_out_as_transient() {
        // Accepts connections but never greets.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        let mailer = Mailer::with_timeout(&url, DEFAULT_FROM, Duration::from_millis(300));
        let error = mailer
            .expect("mailer")
            .send("a@example.com", "Hi", "x")
            .await;
        assert!(matches!(error, Err(EmailError::Transient(_))), "{error:?}");
        drop(listener);
    }

    #[tokio::test]
    async fn bad_recipient_is_config() {
        let sink = SmtpSink::start().await;
        let mailer = mailer(&sink);
        for to in [
            "not an address",
            "a@example.com, b@",
            "",
            " , ",
            "a@x.org junk",
        ] {
            let error = mailer.send(to, "Hi", "text").await.expect_err(to);
            assert!(matches!(error, EmailError::Config(_)), "{to}: {error:?}");
        }
        assert!(sink.received().is_empty());
    }

    #[tokio::test]
    async fn password_never_in_errors() {
        let sink = SmtpSink::start().await;
        sink.require_auth("robot", "s3cr%t-Pa55");
        let addr = sink.addr;
        // Wrong password: the server answers 535, which must not echo the secret back to us.
        let url = format!("smtp://robot:hunter2-XYZ@{addr}");
        let error = Mailer::new(&url, DEFAULT_FROM)
            .expect("mailer")
            .send("a@example.com", "Hi", "text")
            .await
            .expect_err("535");
        assert!(matches!(error, EmailError::Rejected(_)), "{error:?}");
        assert_no_secret(&error, "hunter2-XYZ");

        // Right password (percent-encoded in the URL) works.
        let url = format!("smtp://robot:s3cr%25t-Pa55@{addr}");
        let mailer = Mailer::new(&url, DEFAULT_FROM).expect("mailer");
        mailer
            .send("a@example.com", "Hi", "text")
            .await
            .expect("authenticated");
        assert!(!format!("{mailer:?}").contains("Pa55"));

        // Connection refused, bad URL parameters, bad addresses.
        let errors = [
            Mailer::new("smtp://u:hunter2-XYZ@127.0.0.1:1", DEFAULT_FROM)
                .expect("mailer")
                .send("a@example.com", "Hi", "x")
                .await
                .expect_err("refused"),
            Mailer::new("smtp://u:hunter2-XYZ@host?tsl=required", DEFAULT_FROM).expect_err("key"),
            Mailer::new("smtps://u:hunter2-XYZ@host:99999", DEFAULT_FROM).expect_err("port"),
            Mailer::new("ftp://u:hunter2-XYZ@host", DEFAULT_FROM).expect_err("scheme"),
            Mailer::new("smtp://u:hunter2-XYZ@h", "bad sender").expect_err("from"),
        ];
        for error in &errors {
            assert_no_secret(error, "hunter2-XYZ");
        }
    }

    #[test]
    fn server_echoes_are_scrubbed() {
        let mailer = Mailer::new("smtp://u:hunter2-XYZ@h", DEFAULT_FROM).expect("mailer");
        let scrubbed = mailer.scrub("535 bad password hunter2-XYZ for u");
        assert_eq!(scrubbed, "535 bad password *** for u");
        // Too short to tell from ordinary text: scrubbing it would mangle the message.
        let mailer = Mailer::new("smtp://u:p@h", DEFAULT_FROM).expect("mailer");
        assert_eq!(mailer.scrub("permanent"), "permanent");
    }

    fn assert_no_secret(error: &EmailError, secret: &str) {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "leaked: {shown}");
    }

    #[test]
    fn url_forms() {
        let cases = [
            ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, Security::Plain),
            (
                "smtp://mail.example.com",
                "mail.example.com",
                25,
                Security::Plain,
            ),
            (
                "smtps://u:p@mail.example.com",
                "mail.example.com",
                465,
                Security::Wrapper,
            ),
            ("smtp://h:587?tls=required", "h", 587, Security::StartTls),
            (
                "smtp://h?tls=opportunistic",
                "h",
                587,
                Security::Opportunistic,
            ),
            ("smtp://[::1]:2525", "::1", 2525, Security::Plain),
        ];
        for (url, host, port, security) in cases {
            let parsed = ServerUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((parsed.host.as_str(), parsed.port), (host, port), "{url}");
            assert!(parsed.security == security, "{url}");
            assert!(parsed.builder().is_ok(), "{url}");
        }
    }

    #[test]
    fn url_credentials_are_decoded_and_hidden() {
        let parsed = ServerUrl::parse("smtps://me%40x.org:p%40ss@h/relay.example.org");
        let parsed = parsed.expect("valid");
        assert_eq!(parsed.username.as_deref(), Some("me@x.org"));
        assert_eq!(parsed.password.as_deref(), Some("p@ss"));
        assert_eq!(parsed.hello_name.as_deref(), Some("relay.example.org"));
        assert_eq!(parsed.display, "smtps://h:465");
    }

    #[test]
    fn bad_urls_are_config() {
        for url in [
            "",
            "not a url",
            "http://h",
            "smtp://",
            "smtp://h?tls=yes",
            "smtps://h?tls=required",
            "smtp://h?timeout=3",
        ] {
            let result = Mailer::new(url, DEFAULT_FROM);
            assert!(matches!(result, Err(EmailError::Config(_))), "{url}");
        }
    }

    #[test]
    fn env_configuration() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        assert!(matches!(from_vars(vars(&[])), Ok(None)));
        assert!(matches!(
            from_vars(vars(&[("FLOWD_SMTP_URL", " ")])),
            Ok(None)
        ));
        let mailer = from_vars(vars(&[("FLOWD_SMTP_URL", "smtp://127.0.0.1:2525")]));
        let mailer = mailer.expect("valid").expect("configured");
        assert_eq!(mailer.from.to_string(), DEFAULT_FROM);
        assert_eq!(mailer.timeout, DEFAULT_TIMEOUT);
        assert_eq!(mailer.server(), "smtp://127.0.0.1:2525");
        let mailer = from_vars(vars(&[
            ("FLOWD_SMTP_URL", "smtp://127.0.0.1:2525"),
            ("FLOWD_SMTP_FROM", "ops@example.com"),
            ("FLOWD_SMTP_TIMEOUT", "5s"),
        ]));
        let mailer = mailer.expect("valid").expect("configured");
        assert_eq!(mailer.from.to_string(), "ops@example.com");
        assert_eq!(mailer.timeout, Duration::from_secs(5));
        let bad_timeout = from_vars(vars(&[
            ("FLOWD_SMTP_URL", "smtp://127.0.0.1:2525"),
            ("FLOWD_SMTP_TIMEOUT", "soon"),
        ]));
        assert!(matches!(bad_timeout, Err(EmailError::Config(_))));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("45").ok(), Some(Duration::from_secs(45)));
        assert_eq!(
            parse_timeout("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_timeout("2m").ok(), Some(Duration::from_secs(120)));
        for bad in ["0", "0s", "s", "1h", "-1s", "1.5s", "99999999999999999999"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recipient_lists() {
        let parsed = parse_recipients("a@x.org,\"Doe, J\" <j@x.org> , Ann <ann@x.org>,")
            .expect("valid list");
        let shown: Vec<String> = parsed.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(shown, ["a@x.org", "j@x.org", "ann@x.org"]);
        assert_eq!(parsed[1].name.as_deref(), Some("Doe, J"));
        assert!(parse_recipients("a@x.org\r\nBcc: evil@x.org").is_err());
        assert!(parse_recipients("<>").is_err());
    }

    #[test]
    fn subjects_are_one_line() {
        assert_eq!(
            single_line("  New\r\nBcc: x@y\tguest  "),
            "New Bcc: x@y guest"
        );
        assert_eq!(single_line("\n\n"), "");
    }
}
