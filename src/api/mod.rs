//! The REST API: `app(engine)` builds the router. One file per resource; handlers stay thin
//! (extract, call the engine or the store, shape the answer).

pub mod actions;
pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod flows;
pub mod health;
pub mod hooks;
pub mod nodes;
pub mod notifications;
pub mod page;
pub mod runs;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::engine::Engine;

/// Default largest request body (`FLOWD_MAX_BODY`).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

pub fn app(engine: Engine, max_body: usize) -> Router {
    let v1 = api_v1().route_layer(axum::middleware::from_fn_with_state(
        engine.clone(),
        auth::require_key,
    ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/hooks/{*path}", post(hooks::receive))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(engine)
}

/// The routes under `/api/v1`, which need an API key once keys exist.
fn api_v1() -> Router<Engine> {
    Router::new()
        .route("/api/v1/events", post(events::post_events))
        .route(
            "/api/v1/flows",
            get(flows::list_flows).post(flows::create_flow),
        )
        .route("/api/v1/flows/validate", post(flows::validate_flow))
        .route(
            "/api/v1/flows/{id}",
            get(flows::get_flow)
                .put(flows::replace_flow)
                .delete(flows::delete_flow),
        )
        .route("/api/v1/flows/{id}/pause", post(flows::pause_flow))
        .route("/api/v1/flows/{id}/resume", post(flows::resume_flow))
        .route("/api/v1/flows/{id}/revisions", get(flows::list_revisions))
        .route("/api/v1/flows/{id}/trigger", post(actions::trigger_flow))
        .route("/api/v1/actions", get(actions::list_actions))
        .route("/api/v1/nodes", get(nodes::list_nodes))
        .route("/api/v1/runs", get(runs::list_runs))
        .route("/api/v1/runs/{id}", get(runs::get_run))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel_run))
        .route("/api/v1/runs/{id}/retry", post(runs::retry_run))
        .route("/api/v1/runs/{id}/replay", post(runs::replay_run))
        .route(
            "/api/v1/notifications",
            get(notifications::list_notifications),
        )
        .route(
            "/api/v1/notifications/{id}/read",
            post(notifications::mark_read),
        )
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
