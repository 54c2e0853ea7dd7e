//! Who is using the console. Every browser gets a session on its first visit: a random id in an
//! HttpOnly, SameSite=Strict cookie (Secure when the request came over TLS, as a TLS proxy says
//! with `X-Forwarded-Proto: https`), and a CSRF token that every state-changing request must
//! carry (the hidden `_csrf` field of forms, or the `X-CSRF-Token` header of the script's
//! requests). Once API keys exist, a session must be logged in with one: the session keeps the
//! key's fingerprint, never the key, and ends when the key is revoked. A portal link
//! (`/portal/{token}`) opens a session scoped to the link's workspace and role, which ends when
//! the link expires or is revoked (asked of the database on every request, so a revocation on
//! any node counts). Every session carries the [`Access`] its pages act with ([`SessionAccess`]),
//! and every route declares the [`Permission`] it needs ([`require`]). Sessions live in this
//! node's memory: a restart asks for the key again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::console::error::ConsoleError;
use crate::console::layout::Layout;
use crate::console::{Console, MAX_FORM};
use crate::core::workspace::{Access, Permission, Role};
use crate::engine::auth::KeyFingerprint;
use crate::engine::portal::{PortalGrant, Refusal};

const COOKIE: &str = "flowd_session";
/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone, Default)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Session>>>,
}

struct Session {
    csrf: String,
    who: Who,
    last_seen: Instant,
}

/// What a session was opened with.
#[derive(Debug, Clone)]
enum Who {
    /// Nothing yet: a visitor of an open server, or one who has not logged in.
    Nobody,
    /// An API key, by its fingerprint, with the access it gives.
    Key {
        fingerprint: KeyFingerprint,
        access: Access,
    },
    /// A portal link.
    Portal(PortalGrant),
}

/// The session of the request at hand, for the handlers (a request extension).
#[derive(Debug, Clone)]
pub struct Visitor {
    pub csrf: String,
    /// Whether the session may be ended (a key's, when keys are required, or a portal link's).
    pub can_log_out: bool,
    /// What the session may see and do; `None` on the login page before logging in.
    pub access: Option<Access>,
}

/// The access of the request's session, for handlers that call the engine. A page of another
/// workspace's object carries `?workspace=W` (as the API's requests do): an admin session acts in
/// `W` for that request, any other session only in its own workspace; a workspace the session
/// may not see, or that does not exist, is 404 and tells the two apart no more than the API.
pub struct SessionAccess(pub Access);

impl FromRequestParts<Console> for SessionAccess {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<SessionAccess, ConsoleError> {
        let access = parts
            .extensions
            .get::<Visitor>()
            .and_then(|v| v.access.clone())
            .ok_or_else(|| ConsoleError::Unauthorized("Log in first.".into()))?;
        match named_workspace(parts.uri.query()) {
            None => Ok(SessionAccess(access)),
            Some(ws) => in_workspace(console, access, &ws).map(SessionAccess),
        }
    }
}

/// The query parameter naming the workspace of the page's object.
pub const WORKSPACE_PARAM: &str = "workspace";

/// The first `?workspace=` of a query; a blank one (a filter form's empty field) names none.
fn named_workspace(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == WORKSPACE_PARAM)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|ws| !ws.is_empty())
}

/// `access` narrowed to workspace `ws`, when the session may act there.
fn in_workspace(console: &Console, access: Access, ws: &str) -> Result<Access, ConsoleError> {
    let visible = access.all_workspaces || access.workspace == ws;
    if !visible || !console.engine.workspace_exists(ws) {
        return Err(ConsoleError::NotFound(format!("no workspace `{ws}`")));
    }
    Ok(Access {
        workspace: ws.to_string(),
        all_workspaces: false,
        ..access
    })
}

/// The query that names workspace `ws` on a link to one of its objects. Always written, even
/// for `default`: an admin key's session acts in the key's own workspace when none is named.
pub fn workspace_query(ws: &str) -> String {
    crate::console::view::query(&[(WORKSPACE_PARAM, Some(ws))])
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        f(&mut self.map.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The session `id` names, if it is alive: its CSRF token and what opened it.
    fn find(&self, id: &str) -> Option<(String, Who)> {
        self.with(|map| {
            let session = map.get_mut(id)?;
            if session.last_seen.elapsed() > IDLE {
                map.remove(id);
                return None;
            }
            session.last_seen = Instant::now();
            Some((session.csrf.clone(), session.who.clone()))
        })
    }

    /// A new session; returns its id and CSRF token. Ended sessions are dropped meanwhile.
    fn open(&self, who: Who) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        self.with(|map| {
            map.retain(|_, s| s.last_seen.elapsed() <= IDLE);
            map.insert(
                id.clone(),
                Session {
                    csrf: csrf.clone(),
                    who,
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
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    let (id, csrf, who, new) = match found {
        Some((id, (csrf, who))) => (id, csrf, who, false),
        // A state change needs the session the form came from: none, no change.
        None if changes_state => return refused_without_session(),
        None if need_login && auth_required => return ask_to_log_in(&request, false),
        None => {
            let (id, csrf) = console.sessions.open(Who::Nobody);
            (id, csrf, Who::Nobody, true)
        }
    };
    let access = match standing(&console, &who, auth_required).await {
        Ok(Standing::Allowed(access)) => Some(access),
        Ok(Standing::NeedsLogin) if need_login => {
            return ask_to_log_in(&request, changes_state);
        }
        Ok(Standing::NeedsLogin) => None,
        Ok(Standing::PortalEnded) => {
            console.sessions.close(&id);
            let mut response = ConsoleError::Gone(
                "This portal session has ended: its link expired or was revoked. Ask for a new \
                 link."
                    .into(),
            )
            .into_response();
            clear_cookie(&mut response);
            return response;
        }
        Err(e) => return e.into_response(),
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
        can_log_out: auth_required || matches!(who, Who::Portal(_)),
        access,
    });
    let mut response = next.run(request).await;
    if new {
        set_cookie(&mut response, &id, CookieKind::Strict { secure });
    }
    response
}

/// Whether a session may go on, and as whom.
enum Standing {
    Allowed(Access),
    NeedsLogin,
    /// Its portal link expired or was revoked: the session is over.
    PortalEnded,
}

async fn standing(
    console: &Console,
    who: &Who,
    auth_required: bool,
) -> Result<Standing, ConsoleError> {
    let engine = &console.engine;
    Ok(match who {
        Who::Portal(grant) => {
            if engine.portal_link_in_force(&grant.link_id).await? {
                Standing::Allowed(grant.access())
            } else {
                Standing::PortalEnded
            }
        }
        Who::Key { .. } | Who::Nobody if !auth_required => Standing::Allowed(Access::local()),
        Who::Key {
            fingerprint,
            access,
        } if engine.fingerprint_is_valid(fingerprint) => Standing::Allowed(access.clone()),
        Who::Key { .. } | Who::Nobody => Standing::NeedsLogin,
    })
}

/// For every console route: the session's role must allow `permission` (the route declares
/// it in `console::router`), else 403 naming the role needed.
pub async fn require(
    State(permission): State<Permission>,
    request: Request,
    next: Next,
) -> Response {
    let role = request
        .extensions()
        .get::<Visitor>()
        .and_then(|v| v.access.as_ref())
        .map(|a| a.role);
    match role {
        Some(role) if role.allows(permission) => next.run(request).await,
        Some(role) => ConsoleError::Forbidden(format!(
            "This needs the role `{}`; this session has the role `{role}`.",
            Role::needed_for(permission)
        ))
        .into_response(),
        None => ConsoleError::Unauthorized("Log in first.".into()).into_response(),
    }
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

/// How a session cookie travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CookieKind {
    /// Only with requests from the console itself; `Secure` when the request came over TLS.
    Strict { secure: bool },
    /// Also inside a frame on another site (a portal session when frame ancestors are set):
    /// browsers send such cookies only with `SameSite=None`, keep those only when `Secure`
    /// (so over HTTPS), and `Partitioned` keeps the cookie to that one embedding site.
    Framed,
}

fn set_cookie(response: &mut Response, id: &str, kind: CookieKind) {
    let attributes = match kind {
        CookieKind::Strict { secure: false } => "SameSite=Strict",
        CookieKind::Strict { secure: true } => "SameSite=Strict; Secure",
        CookieKind::Framed => "SameSite=None; Secure; Partitioned",
    };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; {attributes}");
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
    let Some((fingerprint, access)) = key_access(&console, form.key.trim()) else {
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
    let (id, _) = console.sessions.open(Who::Key {
        fingerprint,
        access,
    });
    let mut response = Redirect::to(&next).into_response();
    let secure = over_tls(&headers);
    set_cookie(&mut response, &id, CookieKind::Strict { secure });
    response
}

/// The fingerprint of a valid key and the access it gives.
fn key_access(console: &Console, key: &str) -> Option<(KeyFingerprint, Access)> {
    let fingerprint = console.engine.key_fingerprint(key)?;
    let access = console.engine.access_for_key(key)?;
    Some((fingerprint, access))
}

#[derive(Template)]
#[template(path = "console/portal.html")]
struct PortalOpened {
    layout: Layout,
}

/// `GET /portal/{token}`: a valid link opens a session scoped to its workspace and role, once.
/// The answer is a page that moves on to the console by itself rather than a redirect: after a
/// navigation that started on another site, browsers leave `SameSite=Strict` cookies off every
/// request of the redirect chain, so a redirect would arrive without the new session.
pub async fn redeem(
    State(console): State<Console>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let grant = match console.engine.redeem_portal_link(&token).await {
        Ok(Ok(grant)) => grant,
        Ok(Err(refusal)) => return refused_link(refusal),
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    if let Some(old) = session_id(&headers) {
        console.sessions.close(&old);
    }
    let (id, csrf) = console.sessions.open(Who::Portal(grant));
    let visitor = Visitor {
        csrf,
        can_log_out: false,
        access: None,
    };
    let page = PortalOpened {
        layout: Layout::bare(&visitor, "Opening the console"),
    };
    let mut response = crate::console::layout::html(StatusCode::OK, &page);
    let kind = if console.engine.portal_settings().framing_allowed() {
        CookieKind::Framed
    } else {
        CookieKind::Strict {
            secure: over_tls(&headers),
        }
    };
    set_cookie(&mut response, &id, kind);
    response
}

/// `HEAD /portal/{token}`: what link checkers and previews send; it does not use the link up.
pub async fn look_at_link() -> StatusCode {
    StatusCode::OK
}

fn refused_link(refusal: Refusal) -> Response {
    let message = refusal.message().to_string();
    match refusal {
        Refusal::Unknown => ConsoleError::NotFound(message),
        Refusal::Expired | Refusal::AlreadyUsed | Refusal::Revoked => ConsoleError::Gone(message),
    }
    .into_response()
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
    fn a_blank_workspace_parameter_names_no_workspace() {
        assert_eq!(
            named_workspace(Some("a=1&workspace=acme")),
            Some("acme".into())
        );
        assert_eq!(named_workspace(Some("action=x&workspace=&actor=")), None);
        assert_eq!(named_workspace(Some("workspace=+")), None);
        assert_eq!(named_workspace(None), None);
    }

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
    fn framed_cookies_cross_sites_and_others_stay_strict() {
        let cookie = |kind| {
            let mut response = Response::new(Body::empty());
            set_cookie(&mut response, "id", kind);
            response.headers()[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            cookie(CookieKind::Framed),
            "flowd_session=id; Path=/; HttpOnly; SameSite=None; Secure; Partitioned"
        );
        assert_eq!(
            cookie(CookieKind::Strict { secure: false }),
            "flowd_session=id; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(cookie(CookieKind::Strict { secure: true }).ends_with("SameSite=Strict; Secure"));
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
