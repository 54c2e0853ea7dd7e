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
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, header};
use axum::routing::{MethodRouter, get, post};

use crate::console::session::Sessions;
use crate::core::workspace::Permission;
use crate::engine::Engine;
use crate::engine::portal::PortalSettings;

/// What every console handler receives.
#[derive(Clone)]
pub struct Console {
    pub engine: Engine,
    pub sessions: Sessions,
}

/// Forms and the flow editor are small; the API has its own, configurable limit.
pub const MAX_FORM: usize = 1 << 20;

/// The strict Content-Security-Policy of every console answer but its framing: only this
/// server's script and style, no inline script, forms post only here.
const CSP_BASE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                        connect-src 'self'; form-action 'self'; base-uri 'none'";

/// The console's routes, without a fallback: `flowd serve` merges them with the API's router,
/// whose fallback answers unknown paths. Every page and form declares the permission it needs
/// (`allow`), checked in one place (`session::require`) after the session is found.
pub fn router(engine: Engine) -> Router {
    use Permission::*;
    use pages::*;
    let framing = Framing::of(engine.portal_settings());
    let console = Console {
        engine,
        sessions: Sessions::default(),
    };
    let pages = Router::new()
        .route("/", allow(Read, get(flows::page)))
        .route(
            "/flows/{id}",
            allow(Read, get(flow::page)).merge(allow(Edit, post(flow::save))),
        )
        .route("/flows/{id}/pause", allow(Operate, post(flows::pause)))
        .route("/flows/{id}/resume", allow(Operate, post(flows::resume)))
        .route("/flows/{id}/delete", allow(Edit, post(flows::delete)))
        .route("/flows/{id}/restore", allow(Edit, post(flow::restore)))
        .route("/flows/{id}/test", allow(Trigger, post(flow_test::test)))
        .route("/validate", allow(Read, post(flow::validate)))
        .route("/runs", allow(Read, get(runs::page)))
        .route("/runs/rows", allow(Read, get(runs::rows)))
        .route("/runs/{id}", allow(Read, get(run::page)))
        .route("/runs/{id}/{control}", allow(Operate, post(run::control)))
        .route(
            "/actions",
            allow(Read, get(actions::page)).merge(allow(Trigger, post(actions::run))),
        )
        .route("/usage", allow(Read, get(usage::page)))
        .route("/inbox", allow(Read, get(inbox::page)))
        .route("/inbox/{id}/read", allow(Operate, post(inbox::mark_read)))
        .route("/nodes", allow(Administer, get(nodes::page)))
        .route(
            "/secrets",
            allow(Read, get(secrets::page)).merge(allow(Edit, post(secrets::set))),
        )
        .route("/secrets/{name}/delete", allow(Edit, post(secrets::delete)))
        .route("/workspaces", allow(Administer, get(workspaces::page)))
        .route(
            "/workspaces/portal-links",
            allow(Administer, post(workspaces::issue)),
        )
        .route(
            "/workspaces/{ws}/portal-links/{id}/revoke",
            allow(Administer, post(workspaces::revoke)),
        )
        .route("/audit", allow(Administer, get(audit::page)))
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
        .route(
            "/portal/{token}",
            get(session::redeem).head(session::look_at_link),
        )
        .route("/assets/{file}", get(assets::serve));
    pages
        .merge(open)
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::map_response_with_state(
            framing,
            security_headers,
        ))
        .with_state(console)
}

/// `route` for sessions whose role allows `permission` only.
fn allow(permission: Permission, route: MethodRouter<Console>) -> MethodRouter<Console> {
    route.route_layer(axum::middleware::from_fn_with_state(
        permission,
        session::require,
    ))
}

/// Who may show the console in a frame: nobody (`frame-ancestors 'none'` and
/// `X-Frame-Options: DENY`), or the origins of `FLOWD_CONSOLE_FRAME_ANCESTORS`.
#[derive(Clone)]
struct Framing {
    csp: HeaderValue,
    deny: bool,
}

impl Framing {
    fn of(settings: &PortalSettings) -> Framing {
        let ancestors = if settings.framing_allowed() {
            settings.frame_ancestors.join(" ")
        } else {
            "'none'".to_string()
        };
        let csp = format!("{CSP_BASE}; frame-ancestors {ancestors}");
        Framing {
            // The origins were checked to be plain source expressions when the setting was read.
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static(CSP_NO_FRAMES)),
            deny: !settings.framing_allowed(),
        }
    }
}

/// The policy when framing is not allowed.
const CSP_NO_FRAMES: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn security_headers(
    State(framing): State<Framing>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, framing.csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if framing.deny {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_denied_unless_origins_are_given() {
        let none = Framing::of(&PortalSettings::default());
        assert_eq!(none.csp, CSP_NO_FRAMES);
        assert!(none.deny);
        let some = Framing::of(&PortalSettings {
            public_url: None,
            frame_ancestors: vec!["https://app.example.com".into(), "'self'".into()],
        });
        assert!(!some.deny);
        assert!(
            some.csp
                .to_str()
                .unwrap()
                .ends_with("; frame-ancestors https://app.example.com 'self'")
        );
    }
}
