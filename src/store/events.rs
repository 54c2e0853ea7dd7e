//! Events of the host application and the runs they start, stored together in one transaction
//! so an acknowledged event is never lost, and deduplicated by event id so a sender's retry
//! starts nothing new and gets the first answer again.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, Value};

use crate::core::new_run::NewRun;
use crate::store::runs::{NewLease, insert_runs_leased};
use crate::store::sql::{Conn, get, placeholders, stmt};
use crate::store::{Backend, StoreError};

const ROWS_PER_INSERT: usize = 200;

/// An event to store, with the runs it starts.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub entity: String,
    pub action: String,
    pub entity_id: String,
    pub data: String,
    pub previous: Option<String>,
    pub created_at: i64,
    pub runs: Vec<NewRun>,
}

/// Stores events and their runs. Returns, per event id, the run ids of its runs: the new ones,
/// or those stored the first time for an event id seen before (whose new runs are dropped);
/// and the ids of the runs stored leased (those `lease` names that were stored).
/// Call inside a write transaction so events and runs commit together.
pub async fn ingest(
    conn: &impl Conn,
    backend: Backend,
    events: &[&NewEvent],
    lease: Option<&NewLease<'_>>,
) -> Result<(HashMap<String, Vec<String>>, Vec<String>), StoreError> {
    let mut answers: HashMap<String, Vec<String>> = HashMap::with_capacity(events.len());
    let mut fresh: Vec<&NewEvent> = Vec::with_capacity(events.len());
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut inserted = insert_new(conn, backend, chunk).await?;
        for event in chunk {
            // A batch may repeat an id: only its first occurrence is new.
            if let Some(at) = inserted.iter().position(|id| *id == event.id) {
                inserted.swap_remove(at);
                fresh.push(event);
            }
        }
    }
    let runs: Vec<NewRun> = fresh.iter().flat_map(|e| e.runs.iter().cloned()).collect();
    let leased = insert_runs_leased(conn, backend, &runs, lease).await?;
    for event in &fresh {
        answers.insert(
            event.id.clone(),
            event.runs.iter().map(|r| r.id.clone()).collect(),
        );
    }
    let repeated: Vec<String> = events
        .iter()
        .filter(|e| !answers.contains_key(&e.id))
        .map(|e| e.id.clone())
        .collect();
    answers.extend(run_ids_of(conn, backend, &repeated).await?);
    Ok((answers, leased))
}

/// Inserts the events whose id is new; returns those ids.
async fn insert_new(
    conn: &impl Conn,
    backend: Backend,
    events: &[&NewEvent],
) -> Result<Vec<String>, StoreError> {
    let rows = vec![format!("({})", placeholders(8)); events.len()].join(", ");
    let sql = format!(
        "INSERT INTO events (id, entity, action, entity_id, data, previous, run_ids, created_at) VALUES {rows} \
         ON CONFLICT (id) DO NOTHING RETURNING id"
    );
    let mut values: Vec<Value> = Vec::with_capacity(events.len() * 8);
    for e in events {
        let run_ids: Vec<&str> = e.runs.iter().map(|r| r.id.as_str()).collect();
        values.extend([
            e.id.clone().into(),
            e.entity.clone().into(),
            e.action.clone().into(),
            e.entity_id.clone().into(),
            e.data.clone().into(),
            e.previous.clone().into(),
            serde_json::to_string(&run_ids)
                .unwrap_or_else(|_| "[]".into())
                .into(),
            e.created_at.into(),
        ]);
    }
    let rows = conn.query_all_raw(stmt(backend, &sql, values)).await?;
    rows.iter().map(|row| get::<String>(row, "id")).collect()
}

/// The run ids stored with events seen before.
async fn run_ids_of(
    conn: &impl Conn,
    backend: Backend,
    ids: &[String],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT id, run_ids FROM events WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(id.clone())).collect();
        for row in conn.query_all_raw(stmt(backend, &sql, values)).await? {
            let run_ids: String = get(&row, "run_ids")?;
            found.insert(
                get(&row, "id")?,
                serde_json::from_str(&run_ids).unwrap_or_default(),
            );
        }
    }
    Ok(found)
}

/// The data of the newest event `workspace` received for one entity (its last known state),
/// from the `(entity, entity_id)` index; `None` when flowd never received one. Events of other
/// workspaces than `default` are stored under `@workspace/…` ids (`trigger::entity::event_key`).
pub async fn latest_data(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    entity: &str,
    entity_id: &str,
) -> Result<Option<String>, StoreError> {
    let prefix = format!("@{workspace}/");
    let own = if workspace == crate::core::workspace::DEFAULT_WORKSPACE {
        "(SUBSTR(id, 1, 1) <> '@' OR SUBSTR(id, 1, ?) = ?)"
    } else {
        "SUBSTR(id, 1, ?) = ?"
    };
    let sql = format!(
        "SELECT data FROM events WHERE entity = ? AND entity_id = ? AND {own} ORDER BY created_at DESC, id DESC LIMIT 1"
    );
    let values = vec![
        entity.into(),
        entity_id.into(),
        (prefix.len() as i64).into(),
        prefix.into(),
    ];
    let row = conn.query_one_raw(stmt(backend, &sql, values)).await?;
    row.as_ref().map(|r| get(r, "data")).transpose()
}
