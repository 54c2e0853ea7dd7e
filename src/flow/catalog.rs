//! The flows one engine knows, compiled: the current [`Registry`] (swapped as a whole when flows
//! change) and the older revisions that runs still execute. Shared by the triggers, which match
//! against the registry, and the runner, which executes the revision each run was created with.
//! It holds no connection: who loads flows from the store puts them here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::flow::compiled::CompiledFlow;
use crate::flow::registry::Registry;

#[derive(Debug)]
pub struct Catalog {
    registry: RwLock<Arc<Registry>>,
    /// Compiled revisions other than the current ones, by (flow id, revision).
    revisions: Mutex<HashMap<(String, i64), Arc<CompiledFlow>>>,
    /// Bumped whenever the registry is replaced, for tasks that follow the flows (schedules).
    version: watch::Sender<u64>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog {
            registry: RwLock::new(Arc::new(Registry::default())),
            revisions: Mutex::new(HashMap::new()),
            version: watch::Sender::new(0),
        }
    }
}

impl Catalog {
    /// The flows as of the last replacement.
    pub fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new registry and tells the followers.
    pub fn replace(&self, registry: Registry) {
        let registry = Arc::new(registry);
        match self.registry.write() {
            Ok(mut r) => *r = registry,
            Err(poisoned) => *poisoned.into_inner() = registry,
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Changes whenever the registry is replaced.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// A compiled revision from the registry or the cache of older revisions.
    pub fn cached(&self, flow_id: &str, revision: i64) -> Option<Arc<CompiledFlow>> {
        if let Some(entry) = self
            .registry()
            .get(flow_id)
            .filter(|e| e.revision == revision)
        {
            return Some(entry.flow.clone());
        }
        self.revision_cache()
            .get(&(flow_id.to_string(), revision))
            .cloned()
    }

    /// Keeps an older revision that was loaded for a run.
    pub fn remember(&self, flow: Arc<CompiledFlow>) {
        self.revision_cache()
            .insert((flow.id.clone(), flow.revision), flow);
    }

    fn revision_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, i64), Arc<CompiledFlow>>> {
        match self.revisions.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
