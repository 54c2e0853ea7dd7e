//! `flowd serve`: API server, runner and scheduler in one process. Migrates on start, loads the
//! flow files, then serves until SIGTERM or Ctrl-C, when it stops taking work, lets runs in
//! flight finish (up to a grace period) and gives back their leases.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{self, listen};
use crate::cli::config::Config;
use crate::console;
use crate::core::duration::Duration as FlowDuration;
use crate::core::error::CanFail;
use crate::engine::{Engine, follow};
use crate::runner::worker::{self, RunnerConfig};
use crate::store::nodes::{self, NodeInfo};
use crate::trigger::schedule;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the console and the API.
    #[arg(long, env = "FLOWD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Database: sqlite://PATH (created if missing) or postgres://…
    #[arg(long, env = "FLOWD_DATABASE_URL", default_value = "sqlite://flowd.db")]
    database_url: String,
    /// Folder of flow files.
    #[arg(long, env = "FLOWD_FLOWS_DIR", default_value = "flows")]
    flows: PathBuf,
    /// Runs executing at once on this node.
    #[arg(long, env = "FLOWD_WORKERS", default_value_t = 64)]
    workers: usize,
    /// How long a node's claim on a run lasts without renewal (takeover time after a crash).
    #[arg(long, env = "FLOWD_LEASE", default_value = "30s")]
    lease: FlowDuration,
    /// How long finished runs (with their steps and attempts) and events are kept; a flow's
    /// `settings.retention` overrides it. Usage survives pruning.
    #[arg(long, env = "FLOWD_RETENTION", default_value = "30d")]
    retention: FlowDuration,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "FLOWD_MAX_BODY", default_value_t = api::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Connections one client address may hold open at once; 0 for no cap (behind a proxy).
    #[arg(long, env = "FLOWD_MAX_CONNECTIONS_PER_CLIENT", default_value_t = listen::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    max_connections_per_client: usize,
    /// This machine's name in the node registry [default: the contents of /etc/hostname, else
    /// `node`].
    #[arg(long, env = "HOSTNAME", value_name = "NAME")]
    hostname: Option<String>,
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    crate::cli::block_on("serve", async {
        serve(args, config)
            .await
            .inspect_err(|e| error!(error = format!("{e:#}"), "flowd serve stopped."))
    })
}

async fn serve(args: &Args, config: &Config) -> anyhow::Result<()> {
    if args.retention.to_std().is_zero() {
        anyhow::bail!(
            "--retention (FLOWD_RETENTION) must be longer than 0: finished runs would be deleted as they end"
        );
    }
    if args.lease.as_millis() < 1000 {
        anyhow::bail!("--lease must be at least 1s, got {}", args.lease);
    }
    if config.store.sqlite_sync_full && !args.database_url.starts_with("sqlite:") {
        warn!(
            setting = "FLOWD_SQLITE_SYNC",
            "The setting is for SQLite; it has no effect on this database."
        );
    }
    let host = hostname(args.hostname.as_deref());
    let engine = Engine::open(config.engine(&args.database_url, node_id(&host))).await?;
    if !engine.auth_required() && !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {} without API keys: anyone could reach the API. Create a key with \
             `flowd keys create <name>` (or set FLOWD_API_KEYS), or listen on 127.0.0.1",
            args.listen
        );
    }
    if args.flows.is_dir() {
        engine.load_flow_files(&args.flows).await?;
    } else {
        warn!(flows = %args.flows.display(), "Flows folder not found; serving flows stored in the database only.");
    }
    warn_missing_secrets(&engine);
    raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    engine.set_listen_address(addr);
    register_node(&engine, host, args.lease.as_millis() as i64).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner_config = RunnerConfig {
        workers: args.workers.max(1),
        lease: args.lease.to_std(),
        retention: Some(args.retention.to_std()),
        ..RunnerConfig::default()
    };
    let runner = tokio::spawn(worker::run(
        engine.runner().clone(),
        runner_config,
        stop_rx.clone(),
    ));
    let scheduler = tokio::spawn(schedule::run(engine.intake().clone(), stop_rx.clone()));
    let flows_dir = args.flows.is_dir().then(|| args.flows.clone());
    let follower = tokio::spawn(follow::run(engine.clone(), flows_dir, stop_rx.clone()));
    info!(%addr, "flowd listening on http://{addr}");
    eprintln!("flowd listening on http://{addr}");
    let app = app(engine.clone(), args.max_body);
    let mut server_stop = stop_rx.clone();
    let limits = listen::Limits {
        max_connections_per_client: args.max_connections_per_client,
        ..listen::Limits::default()
    };
    let server = tokio::spawn(listen::serve(listener, app, limits, async move {
        server_stop
            .wait_for(|stop| *stop)
            .await
            .can_fail("The stop signal is gone; the API server stops.");
    }));
    shutdown_signal().await;
    info!("Shutting down: no new work is taken.");
    if stop_tx.send(true).is_err() {
        warn!("The runner had already stopped.");
    }
    if let Err(e) = runner.await {
        warn!(error = %e, "Runner task ended abnormally.");
    }
    scheduler.abort();
    follower.abort();
    mark_stopped(&engine).await;
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "API server task ended abnormally."),
        Err(_) => warn!("API server did not stop within 10s."),
    }
    engine.store().clone().close().await;
    info!("Stopped.");
    Ok(())
}

/// What `flowd serve` answers: the console's pages at `/` and the API, webhooks and health
/// checks at their paths (the API's fallback answers any other path).
///
/// The console's forms are read whole before routing, as the API's bodies are: a form handler
/// that answers without reading an unwanted body (a JSON body at `/login` gets 415) would leave
/// it unread, and the client would see its connection dropped instead of the answer.
pub fn app(engine: Engine, max_body: usize) -> axum::Router {
    let console = console::router(engine.clone()).layer(axum::middleware::from_fn_with_state(
        console::MAX_FORM,
        api::body::read_whole,
    ));
    console.merge(api::app(engine, max_body))
}

/// One warning per secret that flows read but nobody set: their steps would fail with
/// `missing_secret`.
fn warn_missing_secrets(engine: &Engine) {
    let mut by_secret: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (flow, secret) in engine.missing_secrets() {
        by_secret.entry(secret).or_default().push(flow);
    }
    for (secret, flows) in by_secret {
        warn!(
            %secret,
            flows = %flows.join(","),
            "The secret is not set; steps that read it fail with missing_secret. Set it with `flowd secrets set {secret}` (or PUT /api/v1/secrets/{secret})."
        );
    }
}

/// Every connection holds a file descriptor, and the usual soft limit (1,024) is far below
/// what the hard limit allows; a server that runs out stops accepting anyone.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !raised {
        warn!("Could not raise the open-file limit; the server may run out of connections early.");
    }
}

/// The machine's name: as given (`HOSTNAME`, as containers set it), else as the host sets it.
fn hostname(given: Option<&str>) -> String {
    given
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// A name for this node: host name, process id and a random part, unique among all nodes that
/// ever shared the database (a restarted container may get the same host name and pid).
fn node_id(host: &str) -> String {
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    )
}

/// Enters this node in the registry (`GET /api/v1/nodes`); the runner keeps its heartbeat.
async fn register_node(engine: &Engine, hostname: String, lease_ms: i64) -> anyhow::Result<()> {
    let store = engine.store();
    let node = NodeInfo {
        id: engine.node_id().to_string(),
        hostname,
        version: env!("CARGO_PKG_VERSION").to_string(),
        lease_ms,
    };
    let now = chrono::Utc::now().timestamp_millis();
    nodes::register(store.writer(), store.backend(), &node, now).await?;
    info!(node = %node.id, lease_ms, "Node registered.");
    Ok(())
}

/// Marks this node stopped, once its runner has given back its leases.
async fn mark_stopped(engine: &Engine) {
    let store = engine.store();
    let now = chrono::Utc::now().timestamp_millis();
    if let Err(e) =
        nodes::mark_stopped(store.writer(), store.backend(), engine.node_id(), now).await
    {
        warn!(error = %e, "Marking this node stopped failed; it shows as lost once its lease passes.");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
