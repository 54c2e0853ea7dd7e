//! `flowd export [--out DIR] [--database-url URL] [--force]`: writes every flow managed through
//! the API (`source: "api"`) as a YAML file, so it can be committed to git and served as a file
//! flow. A flow created from YAML is written as it was sent (comments and all); one created from
//! JSON, or whose stored source no longer reads as its definition, is written from the
//! definition. A flow whose id is already held by a file in DIR goes to that file. A file that
//! differs from the stored flow is left alone unless `--force`. Exit 0 when every flow is on
//! disk as stored, 1 when a file was left alone or a flow could not be written, 2 when the
//! database cannot be used. Flows of a workspace other than `default` go to `DIR/<workspace>/`,
//! where `flowd serve` reads them back into that workspace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use crate::cli::config::Config;
use crate::cli::database::sqlite_path;
use crate::core::workspace::split_flow_key;
use crate::flow::load::{find_flow_files, load_files_under};
use crate::flow::model::FlowDef;
use crate::flow::validate::{Options, validate_source};
use crate::store::flows::{FlowRow, FlowSource};
use crate::store::{Store, StoreOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to write the flow files into; created if missing.
    #[arg(long, default_value = "flows")]
    out: PathBuf,
    /// Database: sqlite://PATH or postgres://…
    #[arg(long, env = "FLOWD_DATABASE_URL", default_value = "sqlite://flowd.db")]
    database_url: String,
    /// Overwrite files that differ from the stored flow.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// The database is missing or not migrated: exit 2.
    #[error("{0}")]
    Database(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What happened to one flow.
enum Outcome {
    Wrote,
    Overwrote,
    Unchanged,
    /// The file differs and `--force` was not given.
    Kept,
    Failed(String),
}

pub fn run(args: &Args, config: &Config) -> ExitCode {
    crate::cli::block_on_with("export", async {
        match export(args, &config.store).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(ExportError::Database(message)) => {
                eprintln!("flowd export: {message}");
                ExitCode::from(2)
            }
            Err(ExportError::Other(e)) => {
                eprintln!("flowd export: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Exports every API flow; true when all of them are on disk as stored.
async fn export(args: &Args, options: &StoreOptions) -> Result<bool, ExportError> {
    let flows = api_flows(&args.database_url, options).await?;
    if flows.is_empty() {
        eprintln!("No flows are managed through the API; nothing to export.");
        return Ok(true);
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
    let held = files_by_flow_id(&args.out);
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for flow in &flows {
        let target = held
            .get(&flow.id)
            .cloned()
            .unwrap_or_else(|| args.out.join(format!("{}.yaml", flow.id)));
        // `flow.id` is the flow key: `ws/id` lands in the workspace's folder.
        let outcome = export_one(flow, &target, args.force);
        let (word, line) = describe(&outcome, &flow.id, &target);
        println!("{line}");
        *counts.entry(word).or_default() += 1;
    }
    let summary: Vec<String> = ["written", "overwritten", "unchanged", "kept", "failed"]
        .iter()
        .filter_map(|w| counts.get(w).map(|n| format!("{n} {w}")))
        .collect();
    eprintln!("{} API flow(s): {}", flows.len(), summary.join(", "));
    Ok(!counts.contains_key("kept") && !counts.contains_key("failed"))
}

fn describe(outcome: &Outcome, id: &str, target: &Path) -> (&'static str, String) {
    let path = target.display();
    match outcome {
        Outcome::Wrote => ("written", format!("wrote {path}")),
        Outcome::Overwrote => ("overwritten", format!("overwrote {path}")),
        Outcome::Unchanged => ("unchanged", format!("unchanged {path}")),
        Outcome::Kept => (
            "kept",
            format!(
                "skipped {path}: it differs from flow `{id}` in the database (--force overwrites it)"
            ),
        ),
        Outcome::Failed(e) => ("failed", format!("failed {path}: {e}")),
    }
}

/// The API flows of the database, by id. A database that is missing or behind on migrations is
/// refused rather than created or changed: export only reads.
async fn api_flows(url: &str, options: &StoreOptions) -> Result<Vec<FlowRow>, ExportError> {
    if let Some(path) = sqlite_path(url)
        && !path.exists()
    {
        return Err(ExportError::Database(format!(
            "no database at {} (pass --database-url or set FLOWD_DATABASE_URL)",
            path.display()
        )));
    }
    let store = Store::connect(url, options)
        .await
        .map_err(|e| ExportError::Database(format!("cannot open the database: {e}")))?;
    let pending = store
        .pending_migrations()
        .await
        .map_err(anyhow::Error::from)?;
    if !pending.is_empty() {
        store.close().await;
        return Err(ExportError::Database(format!(
            "the database lacks {} migration(s); run `flowd migrate` first",
            pending.len()
        )));
    }
    let rows = crate::store::flows::list(store.reader(), store.backend()).await;
    store.close().await;
    Ok(rows
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter(|f| f.source == FlowSource::Api)
        .collect())
}

/// The file path of a `sqlite:` URL, without its options.
/// Which file of `dir` holds each flow key: valid files by their key (their workspace is their
/// folder's, as `flowd serve` reads them), broken ones by file name.
fn files_by_flow_id(dir: &Path) -> HashMap<String, PathBuf> {
    let roots = [dir.to_path_buf()];
    let Ok(files) = find_flow_files(&roots) else {
        return HashMap::new();
    };
    load_files_under(&roots, &files, &Options::default())
        .into_iter()
        .filter_map(|r| {
            let id = match &r.report.flow {
                Some(flow) => flow.key(),
                None => r.path.file_stem()?.to_string_lossy().into_owned(),
            };
            Some((id, r.path))
        })
        .collect()
}

fn export_one(flow: &FlowRow, target: &Path, force: bool) -> Outcome {
    let (workspace, id) = split_flow_key(&flow.id);
    if !is_safe_id(id) || !is_safe_id(workspace) {
        return Outcome::Failed(format!("`{}` cannot be a file name", flow.id));
    }
    if let Some(folder) = target.parent()
        && let Err(e) = std::fs::create_dir_all(folder)
    {
        return Outcome::Failed(format!("cannot create {}: {e}", folder.display()));
    }
    let yaml = match yaml_of(flow) {
        Ok(yaml) => yaml,
        Err(e) => return Outcome::Failed(e),
    };
    let existed = match std::fs::read(target) {
        Ok(current) if current == yaml.as_bytes() => return Outcome::Unchanged,
        Ok(_) if !force => return Outcome::Kept,
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match write_atomically(target, &yaml) {
        Ok(()) if existed => Outcome::Overwrote,
        Ok(()) => Outcome::Wrote,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Flow ids are checked when stored; this guards the file name against a hand-edited row.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['-', '_'])
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The YAML to write: the stored source when it still reads as the stored definition, else the
/// definition written out.
fn yaml_of(flow: &FlowRow) -> Result<String, String> {
    let definition: Value = serde_json::from_str(&flow.definition)
        .map_err(|e| format!("the stored definition is not JSON: {e}"))?;
    // `flow.id` is the flow key; the source holds the bare id.
    let id = split_flow_key(&flow.id).1;
    let report = validate_source(&flow.yaml, Some(id), &Options::default());
    let source_fits = report.flow.is_some_and(|f| {
        f.id == id && serde_json::to_value(&f.def).ok().as_ref() == Some(&definition)
    });
    let mut yaml = if source_fits {
        flow.yaml.clone()
    } else {
        let def: FlowDef = serde_json::from_value(definition)
            .map_err(|e| format!("the stored definition is not a flow: {e}"))?;
        crate::flow::yaml::to_string(&def).map_err(|e| e.to_string())?
    };
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    Ok(yaml)
}

/// Writes through a hidden temporary file and a rename, so a running `flowd serve` never loads
/// a half-written flow.
fn write_atomically(target: &Path, text: &str) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, target).inspect_err(|_| {
        if let Err(e) = std::fs::remove_file(&temp) {
            tracing::warn!(file = %temp.display(), error = %e, "Cannot remove a temporary file.");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_become_file_names() {
        assert!(is_safe_id("guest-to-crm_2"));
        for bad in ["", "../x", "a/b", "-x", "X", &"a".repeat(65)] {
            assert!(!is_safe_id(bad), "{bad}");
        }
    }
}
