//! The REST API: `app(engine)` builds the router. One file per resource; handlers stay thin
//! (extract, call the engine or the store, shape the answer). `RouteTable` is the one list of
//! routes: each handler describes itself with `#[utoipa::path]` and is registered here with
//! `routes!`, which adds it to the router and to the OpenAPI document (`openapi()`) at once.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod body;
pub mod error;
pub mod events;
pub mod extract;
pub mod flow_test;
pub mod flows;
pub mod health;
pub mod hooks;
pub mod listen;
pub mod metrics;
pub mod nodes;
pub mod notifications;
pub mod openapi;
pub mod operations;
pub mod page;
pub mod portal_links;
pub mod quotas;
pub mod runs;
pub mod secrets;
pub mod usage;
pub mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::workspace::Permission;
use crate::engine::Engine;

/// Default largest request body (`FLOWD_MAX_BODY`).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

pub fn app(engine: Engine, max_body: usize) -> Router {
    let RouteTable { public, api_v1 } = RouteTable::new();
    let api_v1 = api_v1.route_layer(axum::middleware::from_fn_with_state(
        engine.clone(),
        auth::require_key,
    ));
    let (router, _document) = public.merge(api_v1).split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            body::read_whole,
        ))
        .layer(axum::middleware::from_fn_with_state(
            engine.clone(),
            error::log_server_errors,
        ))
        .with_state(engine)
}

/// The OpenAPI 3.1 document of every route `app` serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let RouteTable { public, api_v1 } = RouteTable::new();
    openapi::finish(public.merge(api_v1).into_openapi())
}

/// Every route, with its description. To add one: annotate the handler with
/// `#[utoipa::path(method, path = "...")]` and list it below (handlers of one path together).
struct RouteTable {
    /// Open to anyone: health checks and webhooks (which carry their own signatures).
    public: OpenApiRouter<Engine>,
    /// Under `/api/v1`, and `/metrics` (it names every flow): need an API key once keys exist.
    api_v1: OpenApiRouter<Engine>,
}

impl RouteTable {
    fn new() -> RouteTable {
        let public = OpenApiRouter::with_openapi(openapi::base())
            .routes(routes!(health::healthz))
            .routes(routes!(health::readyz))
            .routes(routes!(hooks::receive));
        let mut api_v1 = OpenApiRouter::new()
            .routes(routes!(metrics::metrics))
            .routes(routes!(openapi::serve))
            .routes(routes!(events::post_events))
            .routes(routes!(flows::list_flows, flows::create_flow))
            .routes(routes!(flows::validate_flow))
            .routes(routes!(
                flows::get_flow,
                flows::replace_flow,
                flows::delete_flow
            ))
            .routes(routes!(flows::pause_flow))
            .routes(routes!(flows::resume_flow))
            .routes(routes!(flows::list_revisions))
            .routes(routes!(flows::get_revision))
            .routes(routes!(flows::restore_revision))
            .routes(routes!(flow_test::test_flow))
            .routes(routes!(actions::trigger_flow))
            .routes(routes!(actions::list_actions))
            .routes(routes!(nodes::list_nodes))
            .routes(routes!(runs::list_runs))
            .routes(routes!(runs::get_run))
            .routes(routes!(runs::cancel_run))
            .routes(routes!(runs::retry_run))
            .routes(routes!(runs::replay_run))
            .routes(routes!(operations::bulk_retry))
            .routes(routes!(operations::bulk_replay))
            .routes(routes!(operations::get_operation))
            .routes(routes!(usage::get_usage))
            .routes(routes!(quotas::get_quotas, quotas::put_quotas))
            .routes(routes!(notifications::list_notifications))
            .routes(routes!(notifications::mark_read))
            .routes(routes!(secrets::list_secrets))
            .routes(routes!(secrets::put_secret, secrets::delete_secret))
            .routes(routes!(audit::list_audit))
            .routes(routes!(
                workspaces::list_workspaces,
                workspaces::create_workspace
            ))
            .routes(routes!(
                portal_links::issue_portal_link,
                portal_links::list_portal_links
            ))
            .routes(routes!(portal_links::revoke_portal_link));
        openapi::require_key(api_v1.get_openapi_mut());
        RouteTable { public, api_v1 }
    }
}

/// What each operation under the auth layer needs (SPEC §11), by method and route path as axum
/// matches it; `None`: any valid key (the API's own description). To add a route: one line here
/// (`tests/it/workspaces.rs` fails for an operation of the document missing from it, and the
/// layer refuses such an operation to all but admin keys).
pub const PERMISSIONS: &[(&str, &str, Option<Permission>)] = {
    use Permission::*;
    &[
        ("GET", "/metrics", Some(Administer)),
        ("GET", "/api/v1/openapi.json", None),
        ("POST", "/api/v1/events", Some(Trigger)),
        ("GET", "/api/v1/flows", Some(Read)),
        ("POST", "/api/v1/flows", Some(Edit)),
        ("POST", "/api/v1/flows/validate", Some(Read)),
        ("GET", "/api/v1/flows/{id}", Some(Read)),
        ("PUT", "/api/v1/flows/{id}", Some(Edit)),
        ("DELETE", "/api/v1/flows/{id}", Some(Edit)),
        ("POST", "/api/v1/flows/{id}/pause", Some(Operate)),
        ("POST", "/api/v1/flows/{id}/resume", Some(Operate)),
        ("GET", "/api/v1/flows/{id}/revisions", Some(Read)),
        ("GET", "/api/v1/flows/{id}/revisions/{revision}", Some(Read)),
        (
            "POST",
            "/api/v1/flows/{id}/revisions/{revision}/restore",
            Some(Edit),
        ),
        ("POST", "/api/v1/flows/{id}/test", Some(Edit)),
        ("POST", "/api/v1/flows/{id}/trigger", Some(Trigger)),
        ("GET", "/api/v1/actions", Some(Read)),
        ("GET", "/api/v1/nodes", Some(Read)),
        ("GET", "/api/v1/runs", Some(Read)),
        ("GET", "/api/v1/runs/{id}", Some(Read)),
        ("POST", "/api/v1/runs/{id}/cancel", Some(Operate)),
        ("POST", "/api/v1/runs/{id}/retry", Some(Operate)),
        ("POST", "/api/v1/runs/{id}/replay", Some(Operate)),
        ("POST", "/api/v1/runs/retry", Some(Operate)),
        ("POST", "/api/v1/runs/replay", Some(Operate)),
        ("GET", "/api/v1/operations/{id}", Some(Read)),
        ("GET", "/api/v1/usage", Some(Read)),
        ("GET", "/api/v1/notifications", Some(Read)),
        ("POST", "/api/v1/notifications/{id}/read", Some(Operate)),
        ("GET", "/api/v1/secrets", Some(Read)),
        ("PUT", "/api/v1/secrets/{name}", Some(Edit)),
        ("DELETE", "/api/v1/secrets/{name}", Some(Edit)),
        ("GET", "/api/v1/audit", Some(Read)),
        ("GET", "/api/v1/workspaces", Some(Read)),
        ("POST", "/api/v1/workspaces", Some(Administer)),
        (
            "POST",
            "/api/v1/workspaces/{ws}/portal-links",
            Some(Administer),
        ),
        (
            "GET",
            "/api/v1/workspaces/{ws}/portal-links",
            Some(Administer),
        ),
        (
            "DELETE",
            "/api/v1/workspaces/{ws}/portal-links/{id}",
            Some(Administer),
        ),
        ("GET", "/api/v1/workspaces/{ws}/quotas", Some(Read)),
        ("PUT", "/api/v1/workspaces/{ws}/quotas", Some(Administer)),
    ]
};

/// The permission operation `method path` needs: its row of [`PERMISSIONS`], or, for a route
/// without one, `Administer` (a route forgotten there is closed, not open).
pub fn permission(method: &str, path: &str) -> Option<Permission> {
    PERMISSIONS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Some(Permission::Administer), |(_, _, needed)| *needed)
}

/// The permission a request to `path` (a concrete path, `/api/v1/runs/0190…`) needs: that of
/// the row of [`PERMISSIONS`] whose path template it fits, literal segments winning over
/// parameters (`/api/v1/runs/retry` over `/api/v1/runs/{id}`); `Administer` for none.
pub fn permission_of_request(method: &str, path: &str) -> Option<Permission> {
    route_of_request(method, path).map_or(Some(Permission::Administer), |(_, needed)| needed)
}

/// [`PERMISSIONS`] with each path template split into its segments once: the auth layer matches
/// every request against them, and splitting them per request cost more than the rest of it.
type SplitRoute = (
    &'static str,
    Vec<&'static str>,
    &'static str,
    Option<Permission>,
);
static SPLIT_ROUTES: std::sync::LazyLock<Vec<SplitRoute>> = std::sync::LazyLock::new(|| {
    PERMISSIONS
        .iter()
        .map(|(method, template, needed)| {
            (*method, template.split('/').collect(), *template, *needed)
        })
        .collect()
});

/// The row of [`PERMISSIONS`] whose path template `path` fits, literal segments winning over
/// parameters: the route template and its permission.
fn route_of_request(method: &str, path: &str) -> Option<(&'static str, Option<Permission>)> {
    let count = path.split('/').count();
    let fits = |parts: &[&str]| -> Option<usize> {
        let mut literal = 0;
        for (part, segment) in parts.iter().zip(path.split('/')) {
            if part.starts_with('{') {
                continue;
            }
            if *part != segment {
                return None;
            }
            literal += 1;
        }
        Some(literal)
    };
    SPLIT_ROUTES
        .iter()
        .filter(|(m, parts, _, _)| *m == method && parts.len() == count)
        .filter_map(|(_, parts, template, needed)| Some((fits(parts)?, (*template, *needed))))
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, route)| route)
}

/// The query parameters each operation takes, as the OpenAPI document says, by method and path
/// template: read once, so every route refuses a parameter it does not take (they all take
/// `workspace`, which is read by the auth layer and not by the handler).
static QUERY_PARAMETERS: std::sync::LazyLock<
    std::collections::HashMap<(String, String), Vec<String>>,
> = std::sync::LazyLock::new(|| {
    let doc = serde_json::to_value(openapi()).unwrap_or_default();
    let mut taken = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let names = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            taken.insert((method.to_uppercase(), path.clone()), names);
        }
    }
    taken
});

/// A query parameter of `query` that the operation `method path` does not take, with the
/// ones it takes, if any.
pub fn unknown_query_parameter(
    method: &str,
    path: &str,
    query: &str,
) -> Option<(String, Vec<String>)> {
    if query.is_empty() {
        return None;
    }
    let (template, _) = route_of_request(method, path)?;
    let taken = QUERY_PARAMETERS.get(&(method.to_string(), template.to_string()))?;
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(name, _)| name.into_owned())
        .find(|name| !taken.contains(name))
        .map(|name| (name, taken.clone()))
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use regex::Regex;

    use super::*;
    use crate::engine::EngineConfig;

    /// `(method, path)` of every route `router` serves, paths as OpenAPI writes them. axum offers
    /// no way to list routes but its `Debug` output, which shows each route's path and, per
    /// method, `None` or the handler; the fallback router after it is not a route.
    fn served(router: &Router) -> BTreeSet<(String, String)> {
        let text = format!("{router:?}");
        let routes = text.split("fallback_router:").next().unwrap_or_default();
        let path_re = Regex::new(r#"RouteId\((\d+)\): "([^"]*)""#).unwrap();
        let paths: HashMap<&str, &str> = path_re
            .captures_iter(routes)
            .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str()))
            .collect();
        let router_re =
            Regex::new(r"RouteId\((\d+)\): MethodRouter\(MethodRouter \{ (.*?), fallback:")
                .unwrap();
        let method_re = Regex::new(r"(\w+): (Route|BoxedHandler)").unwrap();
        let mut served = BTreeSet::new();
        for c in router_re.captures_iter(routes) {
            let path = paths[c.get(1).unwrap().as_str()];
            for m in method_re.captures_iter(c.get(2).unwrap().as_str()) {
                served.insert((m[1].to_uppercase(), openapi::openapi_path(path)));
            }
        }
        assert!(
            served.len() >= paths.len() && !paths.is_empty(),
            "could not read the routes from axum's Debug output (did its format change?): {text}"
        );
        served
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        documented
    }

    #[test]
    fn a_request_takes_the_permission_of_its_route() {
        use Permission::*;
        assert_eq!(
            permission_of_request("POST", "/api/v1/runs/retry"),
            Some(Operate)
        );
        assert_eq!(
            permission_of_request("GET", "/api/v1/runs/0190a8a0"),
            Some(Read)
        );
        let cancel = permission_of_request("POST", "/api/v1/runs/0190a8a0/cancel");
        assert_eq!(cancel, Some(Operate));
        assert_eq!(
            permission_of_request("POST", "/api/v1/flows/validate"),
            Some(Read)
        );
        assert_eq!(
            permission_of_request("DELETE", "/api/v1/flows/x"),
            Some(Edit)
        );
        assert_eq!(permission_of_request("GET", "/api/v1/openapi.json"), None);
        assert_eq!(permission_of_request("GET", "/metrics"), Some(Administer));
        // A route without a row is closed to all but admin keys.
        assert_eq!(
            permission_of_request("POST", "/api/v1/nowhere"),
            Some(Administer)
        );
    }

    #[test]
    fn every_operation_behind_a_key_has_a_permission() {
        let missing: Vec<(String, String)> = documented()
            .into_iter()
            .filter(|(_, path)| path.starts_with("/api/v1") || path == "/metrics")
            .filter(|(method, path)| !PERMISSIONS.iter().any(|(m, p, _)| m == method && p == path))
            .collect();
        assert!(missing.is_empty(), "add these to PERMISSIONS: {missing:?}");
    }

    #[tokio::test]
    async fn the_document_describes_exactly_the_routes_the_app_serves() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
        let engine = Engine::open(EngineConfig::new(url, "test")).await.unwrap();
        let served = served(&app(engine.clone(), DEFAULT_MAX_BODY));
        let documented = documented();
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served but not in the OpenAPI document"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "in the OpenAPI document but not served"
        );
        assert!(served.contains(&("POST".into(), "/hooks/{path}".into())));
        engine.store().clone().close().await;
    }
}
