//! The compiled revision a run executes: the current one from the catalog, an older one from
//! the catalog's cache, or else read from the store, compiled and cached.

use std::sync::Arc;

use crate::flow::catalog::Catalog;
use crate::flow::compiled::{BrokenRevision, CompiledFlow};
use crate::store::{Store, StoreError, flows};

#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broken(#[from] BrokenRevision),
}

/// The compiled flow of one revision.
pub async fn compiled(
    catalog: &Catalog,
    store: &Store,
    flow_id: &str,
    revision: i64,
) -> Result<Arc<CompiledFlow>, RevisionError> {
    if let Some(flow) = catalog.cached(flow_id, revision) {
        return Ok(flow);
    }
    let definition = flows::revision_definition(store.reader(), store.backend(), flow_id, revision)
        .await?
        .ok_or_else(|| BrokenRevision::new(flow_id, revision, "not stored"))?;
    let name = catalog
        .registry()
        .get(flow_id)
        .map_or_else(|| flow_id.to_string(), |e| e.name.clone());
    let flow = Arc::new(CompiledFlow::from_definition(
        flow_id,
        &name,
        revision,
        &definition,
    )?);
    catalog.remember(flow.clone());
    Ok(flow)
}
