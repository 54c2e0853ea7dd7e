//! Keeping this node's flows current without a restart: the flow files are looked at every
//! second and loaded again when one changed, appeared or went; and flow changes made through
//! another node's API are noticed by a small summary query on the flows table, after which the
//! registry is rebuilt (unchanged flows keep their compiled form). API keys and workspace quotas
//! are reloaded too (both small tables), and secrets when the secret store's summary changed.
//!
//! Polling file metadata once a second costs a few system calls per file and works on every
//! file system (network mounts and containers included), where change notifications do not.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::warn;

use crate::engine::Engine;
use crate::flow::load::find_flow_files;
use crate::store::flows;

/// How often files and the database are looked at.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Follows flow changes until `shutdown` turns true.
pub async fn run(engine: Engine, flows_dir: Option<PathBuf>, mut shutdown: watch::Receiver<bool>) {
    let mut files = flows_dir.as_deref().map(files_fingerprint);
    let mut stored = stored_fingerprint(&engine).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if let Some(dir) = flows_dir.as_deref() {
            let now = files_fingerprint(dir);
            if files.as_ref() != Some(&now) {
                if let Err(e) = engine.load_flow_files(dir).await {
                    warn!(error = %e, "Reloading the flow files failed; trying again.");
                    continue;
                }
                files = Some(now);
            }
        }
        if let Err(e) = engine.refresh_api_keys().await {
            warn!(error = %e, "Reloading the API keys failed.");
        }
        if let Err(e) = engine.refresh_secrets().await {
            warn!(error = %e, "Reloading the secrets failed.");
        }
        if let Err(e) = engine.refresh_quotas().await {
            warn!(error = %e, "Reloading the workspace quotas failed.");
        }
        let now = stored_fingerprint(&engine).await;
        if now.is_some() && now != stored {
            match engine.reload_registry().await {
                Ok(()) => stored = now,
                Err(e) => warn!(error = %e, "Reloading the flows failed; trying again."),
            }
        }
    }
}

/// Every flow file with its size and modification time.
fn files_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(mut files) = find_flow_files(&[dir.to_path_buf()]) else {
        return Vec::new();
    };
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, size, modified)
        })
        .collect()
}

async fn stored_fingerprint(engine: &Engine) -> Option<String> {
    let store = engine.store();
    flows::fingerprint(store.reader(), store.backend())
        .await
        .inspect_err(|e| warn!(error = %e, "Reading the flows summary failed."))
        .ok()
}
