//! Who is using the console. Every browser gets a session on its first visit: a random id in an
//! HttpOnly, SameSite=Strict cookie (Secure when the request came over TLS, as a TLS proxy says
//! with `X-Forwarded-Proto: https`), and a CSRF token that every state-changing request must
//! carry (the hidden `_csrf` field of forms, or the `X-CSRF-Token` header of the script's
//! requests). Once API keys exist, a session must be logged in with one: the session keeps the
//! key's fingerprint, never the key, and ends when the key is revoked. Sessions live in this
//! node's memory: a restart asks for the key again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::console::error::ConsoleError;
use crate::console::layout::Layout;
use crate::console::{Console, MAX_FORM};
use crate::engine::auth::KeyFingerprint;

const COOKIE: &str = "flowd_session";
/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone, Default)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Session>>>,
}

struct Session {
    csrf: String,
    key: Option<KeyFingerprint>,
    last_seen: Instant,
}

/// The session of the request at hand, for the handlers (a request extension).
#[derive(Debug, Clone)]
pub struct Visitor {
    pub csrf: String,
    /// Whether a logged-in key may end its session (only when keys are required).
    pub can_log_out: bool,
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        f(&mut self.map.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The session `id` names, if it is alive: its CSRF token and key.
    fn find(&self, id: &str) -> Option<(String, Option<KeyFingerprint>)> {
        self.with(|map| {
            let session = map.get_mut(id)?;
            if session.last_seen.elapsed() > IDLE {
                map.remove(id);
                return None;
            }
            session.last_seen = Instant::now();
            Some((session.csrf.clone(), session.key.clone()))
        })
    }

    /// A new session; returns its id and CSRF token. Ended sessions are dropped meanwhile.
    fn open(&self, key: Option<KeyFingerprint>) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        self.with(|map| {
            map.retain(|_, s| s.last_seen.elapsed() <= IDLE);
            map.insert(
                id.clone(),
                Session {
                    csrf: csrf.clone(),
                    key,
                    last_seen: Instant::now(),
                },
            );
        });
        (id, csrf)
    }

    fn close(&self, id: &str) {
        self.with(|map| map.remove(id));
    }
}

/// 244 random bits from the system's generator, as hex.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// For the pages: a session, logged in when keys are required; CSRF checked on state changes.
pub async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    check(console, request, next, true).await
}

/// For the login page: a session (so the login form has a CSRF token), no login needed.
pub async fn visit(State(console): State<Console>, request: Request, next: Next) -> Response {
    check(console, request, next, false).await
}

async fn check(console: Console, request: Request, next: Next, need_login: bool) -> Response {
    let auth_required = console.engine.auth_required();
    let found = session_id(request.headers())
        .and_then(|id| Some((id.clone(), console.sessions.find(&id)?)));
    let logged_in = |key: &Option<KeyFingerprint>| {
        key.as_ref()
            .is_some_and(|k| console.engine.fingerprint_is_valid(k))
    };
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    let (id, csrf, new) = match found {
        Some((id, (csrf, key))) => {
            if need_login && auth_required && !logged_in(&key) {
                return ask_to_log_in(&request, changes_state);
            }
            (id, csrf, false)
        }
        // A state change needs the session the form came from: none, no change.
        None if changes_state => return refused_without_session(),
        None if need_login && auth_required => return ask_to_log_in(&request, false),
        None => {
            let (id, csrf) = console.sessions.open(None);
            (id, csrf, true)
        }
    };
    let mut request = request;
    if changes_state {
        match carries_token(request, &csrf).await {
            Ok(checked) => request = checked,
            Err(refused) => return refused,
        }
    }
    let secure = over_tls(request.headers());
    request.extensions_mut().insert(Visitor {
        csrf,
        can_log_out: auth_required,
    });
    let mut response = next.run(request).await;
    if new {
        set_cookie(&mut response, &id, secure);
    }
    response
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(response: &mut Response, id: &str, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn clear_cookie(response: &mut Response) {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The request again when it carries the session's CSRF token (header or form field).
async fn carries_token(request: Request, csrf: &str) -> Result<Request, Response> {
    let refused = || {
        ConsoleError::Forbidden(
            "This form is out of date or did not come from the console (its CSRF token is \
             missing or wrong). Reload the page and try again."
                .into(),
        )
        .into_response()
    };
    if let Some(token) = request.headers().get("x-csrf-token") {
        return if same(token.as_bytes(), csrf.as_bytes()) {
            Ok(request)
        } else {
            Err(refused())
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        ConsoleError::BadRequest("the form is too large or was cut off".into()).into_response()
    })?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "_csrf")
        .map(|(_, value)| value.into_owned());
    match token {
        Some(token) if same(token.as_bytes(), csrf.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refused()),
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ask_to_log_in(request: &Request, changes_state: bool) -> Response {
    if changes_state {
        return ConsoleError::Unauthorized("Your session has ended: log in again.".into())
            .into_response();
    }
    let next = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

fn refused_without_session() -> Response {
    ConsoleError::Forbidden(
        "This request carries no console session (the cookie is missing or expired). Open the \
         console and try again."
            .into(),
    )
    .into_response()
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(
    State(console): State<Console>,
    axum::Extension(visitor): axum::Extension<Visitor>,
    Query(q): Query<NextQuery>,
) -> Result<Response, ConsoleError> {
    let next = safe_next(q.next.as_deref());
    if !console.engine.auth_required() {
        return Ok(Redirect::to(&next).into_response());
    }
    let page = LoginPage {
        layout: Layout::bare(&visitor, "Log in"),
        next,
        problem: None,
    };
    Ok(crate::console::layout::html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    next: Option<String>,
}

/// Checks the key; a valid one gets a new session (a new id and token, so an id planted before
/// the login is worth nothing after it).
pub async fn login(
    State(console): State<Console>,
    axum::Extension(visitor): axum::Extension<Visitor>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let Some(fingerprint) = console.engine.key_fingerprint(form.key.trim()) else {
        let page = LoginPage {
            layout: Layout::bare(&visitor, "Log in"),
            next,
            problem: Some("That key is not valid: it is mistyped or was revoked.".into()),
        };
        return crate::console::layout::html(StatusCode::UNAUTHORIZED, &page);
    };
    if let Some(old) = session_id(&headers) {
        console.sessions.close(&old);
    }
    let (id, _) = console.sessions.open(Some(fingerprint));
    let mut response = Redirect::to(&next).into_response();
    set_cookie(&mut response, &id, over_tls(&headers));
    response
}

pub async fn logout(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        console.sessions.close(&id);
    }
    let mut response = Redirect::to("/login").into_response();
    clear_cookie(&mut response);
    response
}

/// Where to go after logging in: a path of this console, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/runs?status=failed")),
            "/runs?status=failed"
        );
        for bad in ["//evil.example", "https://evil.example", "/\\evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; flowd_session=xyz; b=2"),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("xyz"));
    }
}
