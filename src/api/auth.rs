//! `Authorization: Bearer <key>` on every `/api/v1` request once any API key exists, and what
//! the key may do there (SPEC §11). The layer turns the key into an [`Access`] — its workspace,
//! or the one an admin key names with `?workspace=W`, and its role —, refuses an operation the
//! role does not allow with 403 naming the role needed (the permission of each operation is in
//! [`crate::api::PERMISSIONS`]), and hands the access to the handler through the request's
//! extensions, where the [`Access`] extractor finds it. A key naming a workspace it may not see
//! gets 404 `workspace_not_found`, exactly as for a workspace that does not exist.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::core::workspace::{Access, Permission, Role, workspace_name_problem};
use crate::engine::Engine;
use crate::engine::auth::KeyGrant;

/// The query parameter with which an admin key names the workspace it acts in.
pub const WORKSPACE_PARAM: &str = "workspace";

pub async fn require_key(
    State(engine): State<Engine>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let grant = if engine.auth_required() {
        Some(key_grant(&engine, &request)?)
    } else {
        None
    };
    let named = named_workspace(request.uri().query())?;
    if let Some(ws) = named.as_deref() {
        if let Some(problem) = workspace_name_problem(ws) {
            return Err(ApiError::BadRequest(format!(
                "bad query parameter `workspace`: {problem}"
            )));
        }
        if !engine.workspace_exists(ws) {
            return Err(workspace_not_found(ws));
        }
    }
    let access = match grant {
        Some(grant) => grant
            .access(named.as_deref())
            .ok_or_else(|| workspace_not_found(named.as_deref().unwrap_or_default()))?,
        None => local_access(named.as_deref()),
    };
    let method = request.method().as_str();
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or_default();
    if let Some((name, taken)) = crate::api::unknown_query_parameter(method, path, query) {
        let taken: Vec<String> = taken.iter().map(|t| format!("`{t}`")).collect();
        return Err(ApiError::BadRequest(format!(
            "`{name}` is not a parameter of this request; it takes {}",
            taken.join(", ")
        )));
    }
    if let Some(needed) = crate::api::permission_of_request(method, path) {
        check_role(&access, needed)?;
    }
    request.extensions_mut().insert(access);
    Ok(next.run(request).await)
}

/// What the request's key grants: 401 without a key or with one that is not valid.
fn key_grant(engine: &Engine, request: &Request) -> Result<KeyGrant, ApiError> {
    let key = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(key) = key else {
        return Err(ApiError::Unauthorized {
            code: "unauthorized",
            message: "send `Authorization: Bearer <API key>`".into(),
        });
    };
    engine.key_grant(key).ok_or_else(|| ApiError::Unauthorized {
        code: "unauthorized",
        message: "the API key is not valid (revoked or mistyped)".into(),
    })
}

/// A server without keys: the local administrator, in the workspace named if any.
fn local_access(named: Option<&str>) -> Access {
    let mut access = Access::local();
    if let Some(ws) = named {
        access.workspace = ws.to_string();
        access.all_workspaces = false;
    }
    access
}

/// 403 `forbidden` naming the role `needed` when the access's role lacks it.
pub fn check_role(access: &Access, needed: Permission) -> Result<(), ApiError> {
    if access.may(needed) {
        return Ok(());
    }
    let role = Role::needed_for(needed);
    Err(ApiError::Forbidden {
        message: format!(
            "this operation needs the `{role}` role; this key is `{}`",
            access.role
        ),
        role_needed: role,
    })
}

/// 404 for a workspace the caller may not see, the same whether it exists or not.
pub fn workspace_not_found(name: &str) -> ApiError {
    ApiError::NotFoundCode {
        code: "workspace_not_found",
        message: format!("no workspace `{name}`"),
    }
}

/// The value of `?workspace=`, if given (once, non-empty).
fn named_workspace(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name != WORKSPACE_PARAM {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::BadRequest(
                "bad query parameter: `workspace` is given more than once".into(),
            ));
        }
        found = Some(value.into_owned());
    }
    Ok(found)
}

/// The access of the request, as the auth layer made it. Routes outside the layer (none take
/// this extractor) would get the local administrator's, which is what a server without keys
/// gives anyway; the layer is on every `/api/v1` route.
impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Access, ApiError> {
        parts
            .extensions
            .get::<Access>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized {
                code: "unauthorized",
                message: "send `Authorization: Bearer <API key>`".into(),
            })
    }
}

/// The token of `Authorization: Bearer <token>`. The scheme is case-insensitive (RFC 9110 §11.1),
/// so `BEARER` and `bearer` work as well as `Bearer`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer k1", "bearer k1", "BEARER k1", "BeArEr   k1 "] {
            assert_eq!(bearer_token(header), Some("k1"), "{header}");
        }
        for header in ["Basic k1", "Bearerk1", "k1", ""] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }

    #[test]
    fn the_workspace_parameter_is_read_once() {
        assert_eq!(named_workspace(None).unwrap(), None);
        assert_eq!(
            named_workspace(Some("limit=5&workspace=acme")).unwrap(),
            Some("acme".into())
        );
        assert!(named_workspace(Some("workspace=a&workspace=b")).is_err());
    }

    #[test]
    fn a_forbidden_operation_names_the_role_needed() {
        let mut access = Access::local();
        access.role = Role::Viewer;
        assert!(check_role(&access, Permission::Read).is_ok());
        let err = check_role(&access, Permission::Operate).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this operation needs the `operator` role; this key is `viewer`"
        );
    }
}
