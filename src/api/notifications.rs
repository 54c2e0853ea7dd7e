//! The inbox: `GET /api/v1/notifications?unread=true` and `POST /api/v1/notifications/{id}/read`.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::ApiQuery;
use crate::api::page::{Page, page_limit};
use crate::engine::Engine;
use crate::runner::context::rfc3339;
use crate::store::notifications::{self, Cursor, Notification};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    unread: Option<bool>,
    limit: Option<u64>,
    cursor: Option<String>,
}

pub async fn list_notifications(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(q.limit);
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let rows = notifications::list(
        engine.store(),
        q.unread.unwrap_or(false),
        after.as_ref(),
        limit + 1,
    )
    .await?;
    let page = Page::cut(rows, limit, |n| format!("{}.{}", n.created_at, n.id));
    Ok(Json(page.into_json(notification_json)))
}

pub async fn mark_read(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now().timestamp_millis();
    if !notifications::mark_read(engine.store(), &id, now).await? {
        return Err(ApiError::NotFound(format!("no notification `{id}`")));
    }
    Ok(Json(json!({ "id": id, "read": true })))
}

fn notification_json(n: &Notification) -> Value {
    let time = |t: i64| DateTime::<Utc>::from_timestamp_millis(t).map(rfc3339);
    json!({
        "id": n.id,
        "flow": n.flow_id,
        "run_id": n.run_id,
        "step": n.step_id,
        "title": n.title,
        "text": n.text,
        "created_at": time(n.created_at),
        "read_at": n.read_at.and_then(time),
    })
}

fn parse_cursor(text: &str) -> Result<Cursor, ApiError> {
    text.split_once('.')
        .and_then(|(t, id)| {
            Some(Cursor {
                created_at: t.parse().ok()?,
                id: id.to_string(),
            })
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`cursor` `{text}` is not a cursor this API gave out"
            ))
        })
}
