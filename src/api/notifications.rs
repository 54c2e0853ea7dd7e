//! The inbox: `GET /api/v1/notifications?unread=true` and `POST /api/v1/notifications/{id}/read`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::page::{Page, page_limit, time_id_cursor};
use crate::core::time::rfc3339;
use crate::core::workspace::{Access, split_flow_key};
use crate::engine::Engine;
use crate::store::notifications::{Cursor, Notification};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only notifications not marked read.
    unread: Option<bool>,
    /// Page size: 50 unless given, at most 500.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
    /// `next_cursor` of the page before.
    #[param(pattern = r"^[+-]?[0-9]{1,18}\..+$")]
    cursor: Option<String>,
}

/// One notification of the inbox (a `notify` step with `inbox: true`). Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOut {
    id: String,
    /// The workspace whose inbox it is in.
    workspace: String,
    /// The flow's id within its workspace.
    flow: Option<String>,
    run_id: Option<String>,
    /// The step that sent it.
    step: Option<String>,
    title: String,
    text: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    /// When it was marked read; null while unread.
    #[schema(format = DateTime)]
    read_at: Option<String>,
}

/// A notification marked read.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    id: String,
    read: bool,
}

/// The `{id}` of a notification.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NotificationId {
    /// The notification's id.
    id: String,
}

/// The inbox, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "inbox", params(ListQuery), responses(
    (status = 200, description = "a page of notifications", body = Page<NotificationOut>),
    (status = 400, description = "a bad parameter or cursor", body = ErrorBody),
))]
pub async fn list_notifications(
    State(engine): State<Engine>,
    access: Access,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<NotificationOut>>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let rows = engine
        .notifications(
            &access,
            q.unread.unwrap_or(false),
            after.as_ref(),
            limit + 1,
        )
        .await?;
    let page = Page::cut(rows, limit, |n| format!("{}.{}", n.created_at, n.id));
    Ok(Json(page.map(notification_out)))
}

/// Marks a notification read.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "inbox",
    params(NotificationId), responses(
        (status = 200, description = "marked read", body = MarkedRead),
        (status = 404, description = "no such notification", body = ErrorBody),
    ))]
pub async fn mark_read(
    State(engine): State<Engine>,
    access: Access,
    ApiPath(NotificationId { id }): ApiPath<NotificationId>,
) -> Result<Json<MarkedRead>, ApiError> {
    if !engine.mark_notification_read(&access, &id).await? {
        return Err(ApiError::NotFound(format!("no notification `{id}`")));
    }
    Ok(Json(MarkedRead { id, read: true }))
}

fn notification_out(n: &Notification) -> NotificationOut {
    let time = |t: i64| DateTime::<Utc>::from_timestamp_millis(t).map(rfc3339);
    NotificationOut {
        id: n.id.clone(),
        workspace: n.workspace.clone(),
        flow: n
            .flow_id
            .as_deref()
            .map(|f| split_flow_key(f).1.to_string()),
        run_id: n.run_id.clone(),
        step: n.step_id.clone(),
        title: n.title.clone(),
        text: n.text.clone(),
        created_at: time(n.created_at),
        read_at: n.read_at.and_then(time),
    }
}

fn parse_cursor(text: &str) -> Result<Cursor, ApiError> {
    let (created_at, id) = time_id_cursor(text)?;
    Ok(Cursor { created_at, id })
}
