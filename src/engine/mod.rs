//! The engine: what `flowd serve` runs and what a Rust program embeds. It wires the parts
//! together at start-up — the store and its group commit, the catalog of compiled flows, the
//! triggers' intake, the runner — and offers the operations the API, the console and the
//! command line call. The work itself lives in `trigger`, `runner`, `flow` and `store`.

pub mod audit;
pub mod auth;
pub mod flows;
pub mod follow;
pub mod operations;
pub mod portal;
pub mod quotas;
pub mod reads;
pub mod run_view;
pub mod runs;
pub mod secrets;
pub mod test_run;
pub mod workspaces;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::core::clock::{SharedClock, SystemClock};
use crate::core::jitter::Jitter;
use crate::core::wake::Wake;
use crate::engine::auth::ApiKeys;
use crate::engine::portal::PortalSettings;
use crate::engine::secrets::{MasterKeyError, MasterKeySource};
use crate::flow::catalog::Catalog;
use crate::flow::compiled::{BrokenRevision, CompiledFlow};
use crate::flow::load::{LoadError, find_flow_files, load_files_under};
use crate::flow::model::FlowDef;
use crate::flow::registry::{FlowEntry, Registry};
use crate::flow::validate::Options;
use crate::metrics::{Metrics, MetricsError};
use crate::outbound::client::{ClientError, HttpClient};
use crate::outbound::guard::NetPolicy;
use crate::outbound::record::LiveRedactor;
use crate::runner::revision::RevisionError;
use crate::runner::{Runner, RunnerParts};
use crate::secrets::cipher::MasterKey;
use crate::secrets::{Secrets, SharedSecrets};
use crate::step::notify::email::Mailer;
use crate::step::{Delivery, StepEnv};
use crate::store::flows::{FlowInput, FlowSource};
use crate::store::group_commit::GroupCommit;
use crate::store::{Store, StoreError, StoreOptions};
use crate::trigger::{Intake, IntakeError};

pub use crate::trigger::entity::{EventIn, EventResult};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    BrokenRevision(#[from] BrokenRevision),
    #[error(transparent)]
    HttpClient(#[from] ClientError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot list the flow files")]
    FlowFiles(#[from] LoadError),
    #[error("the flow definition cannot be stored as JSON")]
    Definition(#[source] serde_json::Error),
    #[error("a run cannot be shown as JSON")]
    RunJson(#[source] serde_json::Error),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error("cannot make a temporary folder for a test run")]
    TempDir(#[source] std::io::Error),
}

impl From<RevisionError> for EngineError {
    fn from(e: RevisionError) -> EngineError {
        match e {
            RevisionError::Store(e) => EngineError::Store(e),
            RevisionError::Broken(e) => EngineError::BrokenRevision(e),
        }
    }
}

/// How an engine is set up. `flowd` builds it from its `Config` (flags and environment, parsed
/// once at start); the engine reads no environment of its own.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub database_url: String,
    pub store: StoreOptions,
    /// This node's name: lease owner and attempt records.
    pub node_id: String,
    /// Which addresses the `http` step may reach, and whether it must use https.
    pub net: NetPolicy,
    /// How flows from files and from the API are validated.
    pub validation: Options,
    /// The SMTP server of the `notify` step's `email` channel; `None`: email is not set up.
    pub mailer: Option<Mailer>,
    /// The secrets set by the environment (`FLOWD_SECRET_*`); the store's join them.
    pub secrets: Secrets,
    /// The key that encrypts the secret store.
    pub master_key: MasterKeySource,
    /// Keys that open the API besides the stored ones (`FLOWD_API_KEYS`).
    pub api_keys: ApiKeys,
    /// Where portal links point, and who may frame the console.
    pub portal: PortalSettings,
    /// Where the runner and the triggers read the time: the system's clock, or a test's.
    pub clock: SharedClock,
}

impl EngineConfig {
    /// An engine on `database_url` with everything else at its default: default store options,
    /// the default network policy, no email, no secrets, no configured keys.
    pub fn new(database_url: impl Into<String>, node_id: impl Into<String>) -> EngineConfig {
        EngineConfig {
            database_url: database_url.into(),
            store: StoreOptions::default(),
            node_id: node_id.into(),
            net: NetPolicy::default(),
            validation: Options::default(),
            mailer: None,
            secrets: Secrets::default(),
            master_key: MasterKeySource::None,
            api_keys: ApiKeys::default(),
            portal: PortalSettings::default(),
            clock: SystemClock::shared(),
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: Arc<Catalog>,
    intake: Intake,
    runner: Runner,
    /// Whether the API asks for a key, and what each valid key grants, by its SHA-256 hash.
    api_keys: RwLock<auth::KeyTable>,
    /// The keys of the configuration, merged with the stored ones on every refresh.
    config_keys: ApiKeys,
    /// How flows are validated, fixed at start.
    validation: Options,
    /// The live secrets (environment and store).
    secrets: SharedSecrets,
    /// Opens and seals the store's secrets; `None` when no key is set up.
    master_key: Option<MasterKey>,
    /// The store's summary when the secrets were last loaded.
    secrets_seen: Mutex<String>,
    /// The configuration the engine was opened with, for test runs' sandboxes.
    config: EngineConfig,
    /// `http://<address>` of the server, once it listens: portal links' default base.
    listen_url: OnceLock<String>,
}

impl Engine {
    /// Connects to the database, migrates it and loads the flows stored there.
    pub async fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::open_with(config, Delivery::Send).await
    }

    /// Like [`Engine::open`]; with [`Delivery::DryRun`] steps render what they would send and
    /// send nothing (`flowd run --dry-run`).
    pub async fn open_with(
        config: EngineConfig,
        delivery: Delivery,
    ) -> Result<Engine, EngineError> {
        // Kept without key material: a sandbox needs neither the master key nor API keys.
        let kept = EngineConfig {
            master_key: MasterKeySource::None,
            api_keys: ApiKeys::default(),
            ..config.clone()
        };
        let store = Store::connect(&config.database_url, &config.store).await?;
        store.migrate().await?;
        // Before anything else: a wrong key stops the start with nothing changed.
        let master_key = secrets::open_master_key(&store, &config.master_key).await?;
        let secrets = SharedSecrets::new(config.secrets);
        let http = HttpClient::new(config.net)?;
        let mailer = config.mailer;
        let metrics = Metrics::new()?;
        let clock: SharedClock = config.clock.clone();
        let catalog = Arc::new(Catalog::default());
        let wake = Wake::default();
        let writes = GroupCommit::start(store.clone(), wake.clone());
        let step_env = StepEnv {
            http,
            mailer,
            redactor: LiveRedactor::new(secrets.clone()),
            store: store.clone(),
            node: config.node_id.clone(),
            delivery,
            metrics: metrics.clone(),
        };
        let intake = Intake {
            catalog: catalog.clone(),
            store: store.clone(),
            writes: writes.clone(),
            secrets: secrets.clone(),
            metrics,
            clock: clock.clone(),
        };
        let runner = Runner::new(RunnerParts {
            catalog: catalog.clone(),
            store: store.clone(),
            writes,
            step_env,
            secrets: secrets.clone(),
            node_id: config.node_id,
            clock,
            jitter: Jitter::random(),
            wake,
            quotas: Default::default(),
        });
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                catalog,
                intake,
                runner,
                api_keys: RwLock::new(auth::KeyTable::default()),
                config_keys: config.api_keys,
                validation: config.validation,
                secrets,
                master_key,
                secrets_seen: Mutex::new(String::new()),
                config: kept,
                listen_url: OnceLock::new(),
            }),
        };
        engine.refresh_secrets().await?;
        engine.reload_registry().await?;
        engine.refresh_api_keys().await?;
        engine.refresh_quotas().await?;
        Ok(engine)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The triggers' side: matching and storing what starts runs.
    pub fn intake(&self) -> &Intake {
        &self.inner.intake
    }

    /// The runner's side: executing runs and controlling them.
    pub fn runner(&self) -> &Runner {
        &self.inner.runner
    }

    /// The secrets as of now (environment and store).
    pub fn secrets(&self) -> Arc<Secrets> {
        self.inner.secrets.current()
    }

    pub fn step_env(&self) -> &StepEnv {
        &self.inner.runner.step_env
    }

    /// This engine's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        self.inner.runner.metrics()
    }

    pub fn node_id(&self) -> &str {
        &self.inner.runner.node_id
    }

    /// How this engine validates flows.
    pub fn validation(&self) -> &Options {
        &self.inner.validation
    }

    /// The flows as of the last reload.
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.catalog.registry()
    }

    /// The compiled flow of one revision: from the catalog, or read from the database.
    pub async fn compiled(
        &self,
        flow_id: &str,
        revision: i64,
    ) -> Result<Arc<CompiledFlow>, EngineError> {
        Ok(
            crate::runner::revision::compiled(&self.inner.catalog, self.store(), flow_id, revision)
                .await?,
        )
    }

    /// Validates the flow files under `dir` and stores the valid ones (a changed file becomes a
    /// new revision). A broken file is logged and its problem recorded on the flow it held
    /// (`load_error`), whose last good revision keeps running. Flows whose file under `dir` is
    /// gone are removed (their runs stay).
    pub async fn load_flow_files(&self, dir: &Path) -> Result<usize, EngineError> {
        let files = find_flow_files(&[dir.to_path_buf()])?;
        let reports = load_files_under(&[dir.to_path_buf()], &files, self.validation());
        // The workspaces the files name exist from now on.
        let named: Vec<String> = reports
            .iter()
            .filter_map(|r| Some(r.report.flow.as_ref()?.workspace.clone()))
            .collect();
        self.ensure_workspaces(named).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let store = &self.inner.store;
        let stored = crate::store::flows::list(store.reader(), store.backend()).await?;
        // Only flows whose file is in this folder are this node's to remove: another node on
        // the same database may keep its flow files elsewhere, or have none.
        let by_path: HashMap<String, String> = stored
            .iter()
            .filter(|f| f.source == FlowSource::File)
            .filter_map(|f| Some((f.path.clone()?, f.id.clone())))
            .filter(|(path, _)| Path::new(path).starts_with(dir))
            .collect();
        let txn = store.begin_write().await?;
        crate::store::flows::lock_file_loading(&txn, store.backend()).await?;
        let mut loaded = 0;
        for report in &reports {
            let path = report.path.display().to_string();
            let Some(flow) = &report.report.flow else {
                let problems: Vec<String> = report
                    .report
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| format!("{path}:{}:{}: {d}", d.line, d.column))
                    .collect();
                for problem in &problems {
                    warn!(%problem, "Flow file is invalid; its last good revision keeps running.");
                }
                if let Some(id) = by_path.get(&path) {
                    let error = problems.join("\n");
                    crate::store::flows::set_load_error(
                        &txn,
                        store.backend(),
                        id,
                        Some(&error),
                        now,
                    )
                    .await?;
                }
                continue;
            };
            let yaml = std::fs::read_to_string(&report.path).unwrap_or_default();
            let input = flow_input(
                &flow.key(),
                &flow.name,
                &flow.def,
                &yaml,
                FlowSource::File,
                Some(&report.path),
            )?;
            match crate::store::flows::save(&txn, store.backend(), &input, now).await {
                Ok(_) => loaded += 1,
                Err(StoreError::Conflict { what }) => {
                    warn!(file = %path, problem = %what, "Flow file skipped.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let present: std::collections::HashSet<String> = reports
            .iter()
            .map(|r| r.path.display().to_string())
            .collect();
        for (path, id) in by_path.iter().filter(|(p, _)| !present.contains(*p)) {
            info!(flow = %id, file = %path, "Flow file removed; the flow is deleted (its runs stay).");
            flows::delete_with_runs(&txn, store.backend(), id, now).await?;
        }
        // A file that now holds another flow key (its `id:` or its workspace changed, e.g. a
        // file in a subfolder that names a workspace since workspaces exist): the flow it held
        // before is deleted, or both would take the file's events.
        let now_held: HashMap<String, String> = reports
            .iter()
            .filter_map(|r| Some((r.path.display().to_string(), r.report.flow.as_ref()?.key())))
            .collect();
        let moved = stored.iter().filter(|f| {
            f.source == FlowSource::File
                && f.deleted_at.is_none()
                && f.path
                    .as_ref()
                    .and_then(|p| now_held.get(p))
                    .is_some_and(|key| *key != f.id)
        });
        for flow in moved {
            info!(flow = %flow.id, file = ?flow.path, "The flow file holds another flow now; the flow it held is deleted (its runs stay).");
            flows::delete_with_runs(&txn, store.backend(), &flow.id, now).await?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        self.reload_registry().await?;
        info!(dir = %dir.display(), loaded, files = reports.len(), "Flow files loaded.");
        Ok(loaded)
    }

    /// Rebuilds the registry from the flows stored in the database. Every node does this when
    /// flows change anywhere; it also releases runs held for flows no longer paused, which a
    /// node creates when a resume on another node races with its intake.
    pub async fn reload_registry(&self) -> Result<(), EngineError> {
        let store = self.store();
        if crate::store::runs::release_held(store.writer(), store.backend(), None).await? > 0 {
            self.runner().wake.new_runs();
        }
        let rows = crate::store::flows::list(self.store().reader(), self.store().backend()).await?;
        let old = self.registry();
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            // Unchanged revisions keep their compiled form: a change recompiles one flow.
            let unchanged = old
                .get(&row.id)
                .filter(|e| e.revision == row.revision)
                .map(|e| Ok(e.flow.clone()));
            let compiled = unchanged.unwrap_or_else(|| {
                CompiledFlow::from_definition(&row.id, &row.name, row.revision, &row.definition)
                    .map(Arc::new)
            });
            let flow = match compiled {
                Ok(flow) => flow,
                Err(e) => {
                    warn!(flow = %row.id, error = %e, "Stored flow cannot be compiled; skipped.");
                    continue;
                }
            };
            entries.push(FlowEntry {
                id: row.id,
                name: row.name,
                revision: row.revision,
                enabled: row.enabled,
                paused: row.paused,
                flow,
            });
        }
        self.inner.catalog.replace(Registry::new(entries));
        Ok(())
    }
}

/// A flow as the store keeps it: YAML source, JSON definition and the source's hash.
pub fn flow_input(
    id: &str,
    name: &str,
    def: &FlowDef,
    yaml: &str,
    source: FlowSource,
    path: Option<&Path>,
) -> Result<FlowInput, EngineError> {
    let definition = serde_json::to_string(def).map_err(EngineError::Definition)?;
    let sha256 = Sha256::digest(definition.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FlowInput {
        id: id.to_string(),
        name: name.to_string(),
        source,
        path: path.map(|p| p.display().to_string()),
        yaml: yaml.to_string(),
        definition,
        sha256,
        enabled: def.enabled.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    async fn open(url: &str, node: &str) -> Engine {
        Engine::open(EngineConfig::new(url, node)).await.unwrap()
    }

    const FLOW: &str =
        "id: x\ntriggers:\n  - manual: {label: Go}\nsteps:\n  - id: m\n    map: {a: 1}\n";

    /// Nodes started together load the same flow files into a fresh database at the same
    /// moment: each stores or finds every flow, none is skipped over a duplicate key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_loading_the_same_files_at_once_skip_none() {
        const FILES: usize = 20;
        for db in TestDb::all().await {
            let dir = tempfile::tempdir().unwrap();
            for i in 0..FILES {
                let yaml = FLOW.replace("id: x", &format!("id: x{i}"));
                std::fs::write(dir.path().join(format!("x{i}.yaml")), yaml).unwrap();
            }
            let (a, b) = (open(&db.url, "a").await, open(&db.url, "b").await);
            let load = |engine: &Engine| {
                let (engine, dir) = (engine.clone(), dir.path().to_owned());
                tokio::spawn(async move { engine.load_flow_files(&dir).await })
            };
            let (in_a, in_b) = tokio::join!(load(&a), load(&b));
            let loaded = (
                in_a.unwrap().map_err(|e| e.to_string()),
                in_b.unwrap().map_err(|e| e.to_string()),
            );
            assert_eq!(loaded, (Ok(FILES), Ok(FILES)), "{}", db.url);
            for engine in [a, b] {
                assert_eq!(engine.registry().flows().count(), FILES);
                engine.store().clone().close().await;
            }
            db.cleanup().await;
        }
    }

    /// Node B keeps its flow files in another folder (here: none there): starting it must not
    /// delete node A's file flows, while A's own folder still decides about them.
    #[tokio::test]
    async fn file_flows_of_another_nodes_folder_stay() {
        for db in TestDb::all().await {
            let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            std::fs::write(a_dir.path().join("x.yaml"), FLOW).unwrap();
            let a = open(&db.url, "a").await;
            assert_eq!(a.load_flow_files(a_dir.path()).await.unwrap(), 1);
            let b = open(&db.url, "b").await;
            b.load_flow_files(b_dir.path()).await.unwrap();
            assert!(b.registry().get("x").is_some(), "{}", db.url);

            std::fs::remove_file(a_dir.path().join("x.yaml")).unwrap();
            a.load_flow_files(a_dir.path()).await.unwrap();
            b.reload_registry().await.unwrap();
            assert!(b.registry().get("x").is_none(), "{}", db.url);
            for engine in [a, b] {
                engine.store().clone().close().await;
            }
            db.cleanup().await;
        }
    }
}
