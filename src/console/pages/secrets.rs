//! Secrets: every secret by name, where its value comes from (the store or the environment,
//! which wins), when it was stored and which flows read it; a form to set one (the value goes in
//! a password field and is never shown again) and a confirmed delete. The same engine operations
//! as `PUT` and `DELETE /api/v1/secrets/{NAME}`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use crate::console::Console;
use crate::console::error::ConsoleError;
use crate::console::layout::{Layout, html};
use crate::console::session::{SessionAccess, Visitor, workspace_query};
use crate::console::view::{query, when_millis};
use crate::core::workspace::Access;
use crate::engine::secrets::{SecretError, SecretInfo};
use crate::secrets::Source;

#[derive(Debug, Deserialize)]
pub struct SecretsQuery {
    notice: Option<String>,
}

pub struct SecretLine {
    pub name: String,
    pub source: &'static str,
    pub created: String,
    pub updated: String,
    pub used_by: Vec<String>,
    /// `?workspace=` of the secret's workspace, for the links to the flows using it.
    pub ws: String,
    pub readable: bool,
    /// Only stored values can be deleted here; one set by the environment stays.
    pub stored: bool,
}

impl SecretLine {
    fn of(info: SecretInfo) -> SecretLine {
        SecretLine {
            source: match info.source {
                Source::Store => "store",
                Source::Environment => "environment",
            },
            stored: info.created_at.is_some(),
            created: when_millis(info.created_at),
            updated: when_millis(info.updated_at),
            name: info.name,
            used_by: info.used_by,
            ws: workspace_query(&info.workspace),
            readable: info.readable,
        }
    }
}

#[derive(Template)]
#[template(path = "console/secrets.html")]
struct SecretsPage {
    layout: Layout,
    secrets: Vec<SecretLine>,
    /// The name typed in a form that was refused, to type the value again (never the value).
    name: String,
}

pub async fn page(
    State(console): State<Console>,
    SessionAccess(access): SessionAccess,
    Extension(visitor): Extension<Visitor>,
    Query(q): Query<SecretsQuery>,
) -> Result<Response, ConsoleError> {
    let layout = Layout::new(&visitor, "secrets", "Secrets").with_notice(q.notice);
    render(&console, &access, layout, String::new(), StatusCode::OK).await
}

async fn render(
    console: &Console,
    access: &Access,
    layout: Layout,
    name: String,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let secrets = console.engine.list_secrets(access).await.map_err(problem)?;
    let page = SecretsPage {
        layout,
        secrets: secrets.into_iter().map(SecretLine::of).collect(),
        name,
    };
    Ok(html(status, &page))
}

#[derive(Deserialize)]
pub struct SetForm {
    name: String,
    value: String,
}

/// Sets a secret; a refused one shows the page again with the rule it broke.
pub async fn set(
    State(console): State<Console>,
    SessionAccess(access): SessionAccess,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<SetForm>,
) -> Result<Response, ConsoleError> {
    let name = form.name.trim();
    match console.engine.set_secret(&access, name, &form.value).await {
        Ok(info) => {
            let notice = match info.source {
                Source::Store => format!(
                    "Saved {name}: in effect on every node within a second, without a restart."
                ),
                Source::Environment => format!(
                    "Saved {name}, but FLOWD_SECRET_{name} is set and wins until it is removed."
                ),
            };
            back(&notice)
        }
        Err(e @ (SecretError::Invalid(_) | SecretError::NoMasterKey)) => {
            let layout = Layout::new(&visitor, "secrets", "Secrets")
                .with_notice(Some(format!("Not saved: {e}")));
            let shown: String = name.chars().take(crate::secrets::MAX_NAME_CHARS).collect();
            render(
                &console,
                &access,
                layout,
                shown,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(problem(e)),
    }
}

pub async fn delete(
    State(console): State<Console>,
    SessionAccess(access): SessionAccess,
    Path(name): Path<String>,
) -> Result<Response, ConsoleError> {
    console
        .engine
        .delete_secret(&access, &name)
        .await
        .map_err(problem)?;
    back(&format!(
        "Deleted {name}: steps that read it fail with missing_secret until it is set again."
    ))
}

fn back(notice: &str) -> Result<Response, ConsoleError> {
    let to = format!("/secrets{}", query(&[("notice", Some(notice))]));
    Ok(Redirect::to(&to).into_response())
}

fn problem(e: SecretError) -> ConsoleError {
    let message = e.to_string();
    match e {
        SecretError::NotFound(_) => ConsoleError::NotFound(message),
        SecretError::Invalid(_) | SecretError::NoMasterKey => ConsoleError::BadRequest(message),
        SecretError::Store(e) => ConsoleError::Internal(e.to_string()),
    }
}
