//! Portal links (SPEC §6): `POST /api/v1/workspaces/{ws}/portal-links` issues a single-use link
//! that opens the console scoped to the workspace and a role (`viewer` or `operator`),
//! `GET` lists the workspace's links (never their tokens) and
//! `DELETE /api/v1/workspaces/{ws}/portal-links/{id}` revokes one, which also ends the console
//! session it opened.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, JsonBody};
use crate::api::page::Items;
use crate::core::time::rfc3339_ms as time;
use crate::core::workspace::Access;
use crate::engine::Engine;
use crate::engine::portal::{PortalError, PortalLinkSpec};
use crate::store::portal_links::PortalLink;

/// The body of a POST.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read from the JSON body by hand, to name what is wrong
pub struct PortalLinkIn {
    /// What the link's session may do: `viewer` reads, `operator` also pauses, resumes,
    /// retries, replays, cancels and runs actions.
    #[schema(pattern = "^(viewer|operator)$")]
    role: String,
    /// How long the link may wait to be used, and how long its session lasts: `1m` to `30d`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$", default = "1h")]
    ttl: Option<String>,
}

/// A link just issued. `url` holds its token and is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLinkIssued {
    id: String,
    /// Opens the console once: `<FLOWD_PUBLIC_URL>/portal/<token>`.
    url: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// A link as listed: never its token or URL. Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLinkOut {
    id: String,
    workspace: String,
    role: String,
    /// `unused`, `used` (its console session lasts until `expires_at`), `expired` or `revoked`.
    state: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    used_at: Option<String>,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// Who issued it: `key:<id>` or `local`.
    created_by: String,
}

/// The `{ws}` of a workspace.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkspacePath {
    /// The workspace's name.
    ws: String,
}

/// The `{ws}` and `{id}` of a portal link.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LinkPath {
    /// The workspace's name.
    ws: String,
    /// The link's id.
    id: String,
}

/// Issues a single-use link that opens the console scoped to `{ws}` with `role`.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/portal-links", tag = "workspaces",
    params(WorkspacePath), request_body = PortalLinkIn, responses(
        (status = 201, description = "the link; its `url` is shown only now", body = PortalLinkIssued),
        (status = 404, description = "no such workspace", body = ErrorBody),
        (status = 422, description = "`invalid_portal_link`: a bad `role` or `ttl`, or an unknown field; `details` names the field", body = ErrorBody),
    ))]
pub async fn issue_portal_link(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(WorkspacePath { ws }): ApiPath<WorkspacePath>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<PortalLinkIssued>), ApiError> {
    let spec = read_spec(body)?;
    let issued = engine.issue_portal_link(&access, &ws, spec).await?;
    let out = PortalLinkIssued {
        id: issued.link.id.clone(),
        url: issued.url,
        expires_at: time(issued.link.expires_at),
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// The workspace's portal links, newest first; never their tokens.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/portal-links", tag = "workspaces",
    params(WorkspacePath), responses(
        (status = 200, description = "the links", body = Items<PortalLinkOut>),
        (status = 404, description = "no such workspace", body = ErrorBody),
    ))]
pub async fn list_portal_links(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(WorkspacePath { ws }): ApiPath<WorkspacePath>,
) -> Result<Json<Items<PortalLinkOut>>, ApiError> {
    let links = engine.list_portal_links(&access, &ws).await?;
    let items = links
        .into_iter()
        .map(|link| link_out(&engine, link))
        .collect();
    Ok(Json(Items { items }))
}

/// Revokes a link: it opens nothing more, and the console session it opened ends on its next
/// request. Revoking a revoked link is accepted.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/portal-links/{id}", tag = "workspaces",
    params(LinkPath), responses(
        (status = 204, description = "revoked"),
        (status = 404, description = "no such workspace, or no such link in it", body = ErrorBody),
    ))]
pub async fn revoke_portal_link(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(LinkPath { ws, id }): ApiPath<LinkPath>,
) -> Result<StatusCode, ApiError> {
    engine.revoke_portal_link(&access, &ws, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"role", "ttl"}`, each problem named with its field.
fn read_spec(body: Value) -> Result<PortalLinkSpec, ApiError> {
    let fields = match body {
        Value::Object(fields) => fields,
        Value::Null => Default::default(),
        _ => {
            return Err(invalid(
                "body",
                "the body must be {\"role\": \"viewer\"|\"operator\", \"ttl\": \"1h\"}".into(),
            ));
        }
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "role" | "ttl"))
    {
        return Err(invalid(
            other,
            format!("unknown field `{other}`: the body is {{\"role\", \"ttl\"}}"),
        ));
    }
    let text = |name: &'static str| match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(name, format!("`{name}` must be a string"))),
    };
    PortalLinkSpec::parse(text("role")?, text("ttl")?).map_err(ApiError::from)
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_portal_link",
        details: vec![json!({"field": field, "message": message})],
        message,
    }
}

fn link_out(engine: &Engine, link: PortalLink) -> PortalLinkOut {
    PortalLinkOut {
        state: engine.portal_link_state(&link).to_string(),
        created_at: time(link.created_at),
        expires_at: time(link.expires_at),
        used_at: link.used_at.map(time),
        revoked_at: link.revoked_at.map(time),
        id: link.id,
        workspace: link.workspace,
        role: link.role,
        created_by: link.created_by,
    }
}

impl From<PortalError> for ApiError {
    fn from(e: PortalError) -> ApiError {
        let message = e.to_string();
        match e {
            PortalError::Invalid { field, .. } => invalid(field, message),
            // As the auth layer answers for a `?workspace=` the key may not see.
            PortalError::UnknownWorkspace(ws) => crate::api::auth::workspace_not_found(&ws),
            PortalError::UnknownLink { .. } => ApiError::NotFound(message),
            PortalError::Engine(e) => e.into(),
        }
    }
}
