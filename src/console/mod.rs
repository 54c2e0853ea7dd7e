//! The web console (SPEC §10): server-rendered pages for the people who run the integrations,
//! served at `/` by `flowd serve` beside the REST API. Pages are askama templates
//! (`templates/console/`, compiled into the binary with the CSS and the one script), one file
//! per page under `pages/`. Like the API it only calls engine operations; it never reads the
//! store. `session.rs` keeps who is logged in and guards every state-changing request with a
//! CSRF token.

pub mod assets;
pub mod diff;
pub mod error;
pub mod layout;
pub mod pages;
pub mod session;
pub mod view;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};

use crate::console::session::Sessions;
use crate::engine::Engine;

/// What every console handler receives.
#[derive(Clone)]
pub struct Console {
    pub engine: Engine,
    pub sessions: Sessions,
}

/// Forms and the flow editor are small; the API has its own, configurable limit.
pub const MAX_FORM: usize = 1 << 20;

/// The strict Content-Security-Policy of every console answer: only this server's script and
/// style, no inline script, no frames, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, without a fallback: `flowd serve` merges them with the API's router,
/// whose fallback answers unknown paths.
pub fn router(engine: Engine) -> Router {
    use pages::*;
    let console = Console {
        engine,
        sessions: Sessions::default(),
    };
    let pages = Router::new()
        .route("/", get(flows::page))
        .route("/flows/{id}", get(flow::page).post(flow::save))
        .route("/flows/{id}/pause", post(flows::pause))
        .route("/flows/{id}/resume", post(flows::resume))
        .route("/flows/{id}/delete", post(flows::delete))
        .route("/flows/{id}/restore", post(flow::restore))
        .route("/flows/{id}/test", post(flow_test::test))
        .route("/validate", post(flow::validate))
        .route("/runs", get(runs::page))
        .route("/runs/rows", get(runs::rows))
        .route("/runs/{id}", get(run::page))
        .route("/runs/{id}/{control}", post(run::control))
        .route("/actions", get(actions::page).post(actions::run))
        .route("/usage", get(usage::page))
        .route("/inbox", get(inbox::page))
        .route("/inbox/{id}/read", post(inbox::mark_read))
        .route("/nodes", get(nodes::page))
        .route("/secrets", get(secrets::page).post(secrets::set))
        .route("/secrets/{name}/delete", post(secrets::delete))
        .route("/audit", get(audit::page))
        .route("/logout", post(session::logout))
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            session::guard,
        ));
    let open = Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            session::visit,
        ))
        .route("/assets/{file}", get(assets::serve));
    pages
        .merge(open)
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
