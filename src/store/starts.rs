//! Runs that triggers start, each with the key that makes a repeat start nothing: a webhook's
//! `webhook-id` on its path, a schedule's fire time. (Entity events carry their own key, the
//! event id, in `events.rs`.) Applied inside the group commit's transaction, so a run and its
//! key are stored together or not at all.

use crate::core::new_run::NewRun;
use crate::store::runs::{NewLease, insert_runs_leased};
use crate::store::sql::Conn;
use crate::store::{Backend, StoreError, schedules, webhooks};

/// A run to start, with its once-only key.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run: NewRun,
    pub once: Option<OnceKey>,
}

/// What makes a start happen once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceKey {
    /// A webhook request's `webhook-id` on its path: senders retry, flowd runs once.
    Webhook { path: String, webhook_id: String },
    /// A schedule's fire time (UTC millis), once per flow, also across nodes.
    ScheduleFire { fire_at: i64 },
}

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The run was stored.
    New(String),
    /// The key was used before: nothing was stored. Holds the run the first use started, when
    /// the key remembers it (webhooks do; schedule fires need not).
    Repeat(Option<String>),
}

/// Stores the runs whose keys are new, in the caller's transaction; one answer per start, and
/// the ids of the runs stored leased (those `lease` names that were new).
pub async fn start_runs(
    conn: &impl Conn,
    backend: Backend,
    starts: &[&RunStart],
    now: i64,
    lease: Option<&NewLease<'_>>,
) -> Result<(Vec<Started>, Vec<String>), StoreError> {
    let mut answers = Vec::with_capacity(starts.len());
    let mut new_runs = Vec::with_capacity(starts.len());
    for start in starts {
        let run = &start.run;
        let answer = match &start.once {
            None => Started::New(run.id.clone()),
            Some(OnceKey::Webhook { path, webhook_id }) => {
                match webhooks::remember(conn, backend, path, webhook_id, &run.id, now).await? {
                    Some(first) => Started::Repeat(Some(first)),
                    None => Started::New(run.id.clone()),
                }
            }
            Some(OnceKey::ScheduleFire { fire_at }) => {
                if schedules::claim_fire(conn, backend, &run.flow_id, *fire_at, &run.id, now)
                    .await?
                {
                    Started::New(run.id.clone())
                } else {
                    Started::Repeat(None)
                }
            }
        };
        if matches!(answer, Started::New(_)) {
            new_runs.push(run.clone());
        }
        answers.push(answer);
    }
    let leased = insert_runs_leased(conn, backend, &new_runs, lease).await?;
    Ok((answers, leased))
}
