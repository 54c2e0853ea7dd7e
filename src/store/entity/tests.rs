//! Entity tests, run on SQLite and (when configured) PostgreSQL: every table takes a row through
//! its entity and gives it back unchanged, column defaults apply, and the keys that guard
//! once-only behaviour (event ids, schedule fires, webhook ids, API key hashes) report
//! `StoreError::Conflict` naming the table.

use std::fmt::Debug;

use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};

use super::*;
use crate::core::status::{RunStatus, StepStatus};
use crate::store::flows::FlowSource;
use crate::store::testing::TestDb;
use crate::store::{Store, StoreError};

/// Inserts `model` through the writer and reads every row of its table back through the reader.
async fn round_trip<E>(model: E::Model)
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel> + Clone + Debug + PartialEq,
    E::ActiveModel: ActiveModelTrait<Entity = E> + sea_orm::ActiveModelBehavior + Send,
{
    for db in TestDb::all().await {
        let inserted = insert::<E>(&db.store, model.clone()).await.unwrap();
        assert_eq!(inserted, model, "{}", db.url);
        let rows = E::find().all(db.store.reader()).await.unwrap();
        assert_eq!(rows, vec![model.clone()], "{}", db.url);
        db.cleanup().await;
    }
}

async fn insert<E>(store: &Store, model: E::Model) -> Result<E::Model, StoreError>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelTrait<Entity = E> + sea_orm::ActiveModelBehavior + Send,
{
    Ok(model.into_active_model().insert(store.writer()).await?)
}

/// Inserts `first`, then `second`, which must collide with it on `table`'s key.
async fn assert_conflict<E>(table: &str, first: E::Model, second: E::Model)
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel> + Clone + Debug + PartialEq,
    E::ActiveModel: ActiveModelTrait<Entity = E> + sea_orm::ActiveModelBehavior + Send,
{
    for db in TestDb::all().await {
        insert::<E>(&db.store, first.clone()).await.unwrap();
        let err = insert::<E>(&db.store, second.clone()).await.unwrap_err();
        match err {
            StoreError::Conflict { what } => assert_eq!(what, table, "{}", db.url),
            other => panic!("{}: expected a conflict, got {other:?}", db.url),
        }
        db.cleanup().await;
    }
}

fn flow() -> flows::Model {
    flows::Model {
        id: "guest-sync".to_owned(),
        name: "Guest sync".to_owned(),
        source: FlowSource::File,
        path: Some("flows/guest-sync.yaml".to_owned()),
        revision: 3,
        enabled: true,
        paused: true,
        paused_at: Some(1_763_900_000_002),
        pause_reason: Some("auto_paused".to_owned()),
        pause_detail: Some("50 failed runs in a row".to_owned()),
        deleted_at: None,
        load_error: Some("line 4: unknown key".to_owned()),
        created_at: 1_763_900_000_000,
        updated_at: 1_763_900_000_001,
    }
}

fn run() -> runs::Model {
    runs::Model {
        id: "0196f3c2-7a4e-7cc0-9a40-5f1e2d3c4b5a".to_owned(),
        flow_id: "guest-sync".to_owned(),
        revision: 3,
        status: RunStatus::Running,
        trigger: r#"{"kind":"entity","action":"create"}"#.to_owned(),
        entity: Some("guest".to_owned()),
        entity_id: Some("42".to_owned()),
        next_step: 2,
        attempt: 3,
        due_at: Some(1_763_900_030_000),
        wake_at: Some(1_763_900_020_000),
        lease_owner: Some("node-a".to_owned()),
        lease_epoch: 7,
        lease_expires_at: Some(1_763_900_030_000),
        cancel_requested: true,
        deadline_at: Some(1_763_903_600_000),
        rate_limited_waits: 1,
        order_key: None,
        error: Some("HTTP 503".to_owned()),
        created_at: 1_763_900_000_000,
        started_at: Some(1_763_900_000_100),
        finished_at: Some(1_763_900_000_200),
    }
}

fn event(id: &str) -> events::Model {
    events::Model {
        id: id.to_owned(),
        entity: "guest".to_owned(),
        action: "update".to_owned(),
        entity_id: "42".to_owned(),
        data: r#"{"name":"Ada","status":"confirmed"}"#.to_owned(),
        previous: Some(r#"{"name":"Ada","status":"invited"}"#.to_owned()),
        run_ids: r#"["0196f3c2-7a4e-7cc0-9a40-5f1e2d3c4b5a"]"#.to_owned(),
        created_at: 1_763_900_000_000,
    }
}

fn api_key(id: &str, hash: &str) -> api_keys::Model {
    api_keys::Model {
        id: id.to_owned(),
        name: "ci".to_owned(),
        prefix: "fk_1a2b".to_owned(),
        hash: hash.to_owned(),
        created_at: 1_763_900_000_000,
        last_used_at: Some(1_763_900_000_500),
        revoked_at: Some(1_763_900_001_000),
        workspace: "acme".to_owned(),
        role: "viewer".to_owned(),
    }
}

fn schedule_fire(run_id: &str) -> schedule_fires::Model {
    schedule_fires::Model {
        flow_id: "nightly-report".to_owned(),
        fire_at: 1_763_942_400_000,
        run_id: run_id.to_owned(),
        created_at: 1_763_942_400_010,
    }
}

fn webhook_request(run_id: &str) -> webhook_requests::Model {
    webhook_requests::Model {
        path: "pos-refunds".to_owned(),
        webhook_id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".to_owned(),
        run_id: run_id.to_owned(),
        created_at: 1_763_900_000_000,
    }
}

#[tokio::test]
async fn flows_round_trip() {
    round_trip::<flows::Entity>(flow()).await;
}

#[tokio::test]
async fn flow_revisions_round_trip() {
    round_trip::<flow_revisions::Entity>(flow_revisions::Model {
        flow_id: "guest-sync".to_owned(),
        revision: 3,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
        source: "id: guest-sync\nname: Guest sync\n".to_owned(),
        definition: r#"{"id":"guest-sync","name":"Guest sync"}"#.to_owned(),
        created_at: 1_763_900_000_000,
    })
    .await;
}

#[tokio::test]
async fn events_round_trip() {
    round_trip::<events::Entity>(event("evt-1")).await;
}

#[tokio::test]
async fn runs_round_trip() {
    round_trip::<runs::Entity>(run()).await;
}

#[tokio::test]
async fn step_runs_round_trip() {
    round_trip::<step_runs::Entity>(step_runs::Model {
        run_id: "0196f3c2-7a4e-7cc0-9a40-5f1e2d3c4b5a".to_owned(),
        step_index: 1,
        step_id: "push".to_owned(),
        kind: "http".to_owned(),
        status: StepStatus::Failed,
        output: Some(r#"{"status":500}"#.to_owned()),
        error: Some("HTTP 500".to_owned()),
        attempts: 12,
        retry_base: 4,
        started_at: Some(1_763_900_000_100),
        finished_at: Some(1_763_900_000_200),
    })
    .await;
}

#[tokio::test]
async fn attempts_round_trip() {
    round_trip::<attempts::Entity>(attempts::Model {
        run_id: "0196f3c2-7a4e-7cc0-9a40-5f1e2d3c4b5a".to_owned(),
        step_index: 1,
        n: 2,
        node: "node-a".to_owned(),
        started_at: 1_763_900_000_100,
        finished_at: 1_763_900_000_150,
        duration_ms: 50,
        request: Some(r#"{"method":"POST","url":"https://crm.example/guests"}"#.to_owned()),
        response: Some(r#"{"status":503,"headers":{},"body":""}"#.to_owned()),
        error: Some("HTTP 503".to_owned()),
    })
    .await;
}

#[tokio::test]
async fn notifications_round_trip() {
    round_trip::<notifications::Entity>(notifications::Model {
        id: "0196f3c2-7a4e-7cc0-9a40-000000000001".to_owned(),
        flow_id: Some("guest-sync".to_owned()),
        run_id: Some("0196f3c2-7a4e-7cc0-9a40-5f1e2d3c4b5a".to_owned()),
        step_id: Some("tell-office".to_owned()),
        title: "Guest confirmed".to_owned(),
        text: "Ada is coming.".to_owned(),
        created_at: 1_763_900_000_000,
        read_at: Some(1_763_900_060_000),
        workspace: "acme".to_owned(),
    })
    .await;
}

#[tokio::test]
async fn api_keys_round_trip() {
    round_trip::<api_keys::Entity>(api_key("key-1", "hash-1")).await;
}

#[tokio::test]
async fn schedule_fires_round_trip() {
    round_trip::<schedule_fires::Entity>(schedule_fire("run-1")).await;
}

#[tokio::test]
async fn webhook_requests_round_trip() {
    round_trip::<webhook_requests::Entity>(webhook_request("run-1")).await;
}

#[tokio::test]
async fn nodes_round_trip() {
    round_trip::<nodes::Entity>(nodes::Model {
        id: "node-a".to_owned(),
        hostname: "flowd-1".to_owned(),
        version: "0.1.0".to_owned(),
        started_at: 1_763_900_000_000,
        heartbeat_at: 1_763_900_010_000,
        lease_ms: 3_000,
        stopped_at: Some(1_763_900_020_000),
    })
    .await;
}

/// Columns left `NotSet` get the schema's defaults on both backends.
#[tokio::test]
async fn unset_columns_get_their_defaults() {
    for db in TestDb::all().await {
        let mut new_flow = flows::ActiveModel::from(flow());
        new_flow.paused = sea_orm::NotSet;
        let stored = new_flow.insert(db.store.writer()).await.unwrap();
        assert!(!stored.paused);

        let mut new_run = runs::ActiveModel::from(run());
        new_run.next_step = sea_orm::NotSet;
        new_run.attempt = sea_orm::NotSet;
        new_run.lease_epoch = sea_orm::NotSet;
        new_run.cancel_requested = sea_orm::NotSet;
        new_run.rate_limited_waits = sea_orm::NotSet;
        let stored = new_run.insert(db.store.writer()).await.unwrap();
        assert_eq!(
            (stored.next_step, stored.attempt, stored.lease_epoch),
            (0, 1, 0)
        );
        assert_eq!(
            (stored.cancel_requested, stored.rate_limited_waits),
            (false, 0)
        );

        let new_step = step_runs::ActiveModel {
            run_id: Set("r".to_owned()),
            step_index: Set(0),
            step_id: Set("s".to_owned()),
            kind: Set("map".to_owned()),
            status: Set(StepStatus::Pending),
            ..Default::default()
        };
        let stored = new_step.insert(db.store.writer()).await.unwrap();
        assert_eq!((stored.attempts, stored.output), (0, None));
        db.cleanup().await;
    }
}

#[tokio::test]
async fn repeated_event_id_is_a_conflict() {
    assert_conflict::<events::Entity>("events", event("evt-1"), event("evt-1")).await;
}

#[tokio::test]
async fn second_fire_of_a_schedule_time_is_a_conflict() {
    let (first, second) = (schedule_fire("run-1"), schedule_fire("run-2"));
    assert_conflict::<schedule_fires::Entity>("schedule_fires", first, second).await;
}

#[tokio::test]
async fn repeated_webhook_id_on_a_path_is_a_conflict() {
    let (first, second) = (webhook_request("run-1"), webhook_request("run-2"));
    assert_conflict::<webhook_requests::Entity>("webhook_requests", first, second).await;
}

#[tokio::test]
async fn same_api_key_hash_twice_is_a_conflict() {
    let (first, second) = (api_key("key-1", "hash-1"), api_key("key-2", "hash-1"));
    assert_conflict::<api_keys::Entity>("api_keys", first, second).await;
}

/// The same path with another webhook id, or the same webhook id on another path, is no conflict.
#[tokio::test]
async fn webhook_key_is_the_pair() {
    for db in TestDb::all().await {
        let first = webhook_request("run-1");
        let other_id = webhook_requests::Model {
            webhook_id: "msg_other".to_owned(),
            ..first.clone()
        };
        let other_path = webhook_requests::Model {
            path: "other".to_owned(),
            ..first.clone()
        };
        for model in [first, other_id, other_path] {
            insert::<webhook_requests::Entity>(&db.store, model)
                .await
                .unwrap();
        }
        db.cleanup().await;
    }
}
