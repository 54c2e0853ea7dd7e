//! Loading flow files from disk: find `*.yaml` / `*.yml` files under the given paths, validate
//! each one, then check what spans files (flow ids and webhook paths must be unique).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::core::diagnostic::Pos;
use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::flow::registry::{same_flow_clash_message, webhook_clash_key, webhook_taken_message};
use crate::flow::validate::{MAX_FLOW_BYTES, Options, Report, validate_source};

/// The outcome of validating one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub report: Report,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Finds the flow files named by `paths`: files as given, folders searched recursively for
/// `*.yaml` and `*.yml` (hidden folders skipped). Sorted, so output is stable.
pub fn find_flow_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound { path: path.clone() },
            _ => LoadError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            collect_dir(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |e| LoadError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // symlink_metadata: a link to a folder is not followed, so link cycles cannot loop.
        let file_type = entry.file_type().map_err(io)?;
        if file_type.is_dir() && !hidden {
            collect_dir(&path, files)?;
        } else if !hidden && is_flow_file(&path) && !file_type.is_dir() {
            files.push(path);
        }
    }
    Ok(())
}

pub fn is_flow_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Reads and validates one file. Problems reading it are reported as diagnostics too.
pub fn load_file(path: &Path, options: &Options) -> FileReport {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let report = match read_source(path) {
        Ok(source) => validate_source(&source, stem.as_deref(), options),
        Err(message) => Report {
            flow: None,
            diagnostics: vec![Diagnostic::error(FlowPath::root(), Pos::START, message)],
        },
    };
    FileReport {
        path: path.to_path_buf(),
        report,
    }
}

/// Reads a flow file as UTF-8 text, refusing oversized files before reading them whole.
fn read_source(path: &Path) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FLOW_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() > MAX_FLOW_BYTES {
        let size = fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err(format!(
            "the file is {:.1} MiB; flow files may be at most 1 MiB",
            size as f64 / (1024.0 * 1024.0)
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        format!(
            "the file is not UTF-8 text (invalid byte on line {line}); flow files are YAML text"
        )
    })
}

/// Validates every file, then the rules across files: unique flow ids and webhook paths.
/// Files are validated on every core: a repository may hold thousands of flows. No folder gives
/// a workspace here: see [`load_files_under`].
pub fn load_files(files: &[PathBuf], options: &Options) -> Vec<FileReport> {
    load_files_under(&[], files, options)
}

/// Like [`load_files`], where a file under one of the flows folders `roots` in a folder of its
/// own belongs to the workspace that folder names (`flows/acme/x.yaml` → `acme`), unless it
/// says `workspace:` itself (SPEC §1).
pub fn load_files_under(
    roots: &[PathBuf],
    files: &[PathBuf],
    options: &Options,
) -> Vec<FileReport> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16);
    let chunk = files.len().div_ceil(threads).max(64);
    let mut reports: Vec<FileReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|f| load_file(f, options))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for report in &mut reports {
        apply_folder_workspace(roots, report);
    }
    check_across_files(&mut reports);
    reports
}

/// The first folder between a flows folder of `roots` and `file`, if the file is in one.
pub fn workspace_folder(roots: &[PathBuf], file: &Path) -> Option<String> {
    let rest = roots.iter().find_map(|root| file.strip_prefix(root).ok())?;
    let mut parts = rest.components();
    let first = parts.next()?;
    parts.next()?;
    Some(first.as_os_str().to_string_lossy().into_owned())
}

/// Gives a flow without `workspace:` the workspace of its folder; a folder whose name cannot
/// name a workspace is an error on that file (it would otherwise land in `default` silently).
fn apply_folder_workspace(roots: &[PathBuf], report: &mut FileReport) {
    let Some(folder) = workspace_folder(roots, &report.path) else {
        return;
    };
    let Some(flow) = report.report.flow.as_mut() else {
        return;
    };
    if flow.declares_workspace() {
        return;
    }
    match crate::core::workspace::workspace_name_problem(&folder) {
        None => flow.workspace = folder,
        Some(problem) => {
            report.report.diagnostics.push(Diagnostic::error(
                FlowPath::root(),
                Pos::START,
                format!(
                    "the folder `{folder}` names this flow's workspace, and {problem}; rename \
                     the folder or write `workspace:` in the flow"
                ),
            ));
            report.report.flow = None;
        }
    }
}

/// Marks a flow id or webhook path used a second time as an error in the later file.
pub fn check_across_files(reports: &mut [FileReport]) {
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    // Clash key → (file, flow id, the path as spelled there).
    let mut hooks: HashMap<String, (PathBuf, String, String)> = HashMap::new();
    for report in reports.iter_mut() {
        let Some(flow) = &report.report.flow else {
            continue;
        };
        let mut problems = Vec::new();
        // Ids and webhook paths are unique per workspace: compare keys.
        if let Some(first) = ids.get(&flow.key()) {
            problems.push(Diagnostic::error(
                FlowPath::root().key("id"),
                flow.id_pos,
                format!(
                    "duplicate flow id `{}` (also used by {})",
                    flow.id,
                    first.display()
                ),
            ));
        } else {
            ids.insert(flow.key(), report.path.clone());
        }
        for (hook, path, pos) in &flow.webhook_paths {
            // Paths that differ only in letter case clash too (see `Registry::webhook_alike`).
            let hook_key = crate::core::workspace::hook_key(&flow.workspace, hook);
            match hooks.get(&webhook_clash_key(&hook_key)) {
                Some((file, other, spelling)) if other != &flow.id || file != &report.path => {
                    let where_ = format!(" ({})", file.display());
                    problems.push(Diagnostic::error(
                        path.clone(),
                        *pos,
                        webhook_taken_message(hook, &flow.id, spelling, other, &where_),
                    ));
                }
                // Validation refuses this already; kept for flows checked without it.
                Some((_, _, spelling)) => problems.push(Diagnostic::error(
                    path.clone(),
                    *pos,
                    same_flow_clash_message(spelling, hook),
                )),
                None => {
                    hooks.insert(
                        webhook_clash_key(&hook_key),
                        (report.path.clone(), flow.id.clone(), hook.clone()),
                    );
                }
            }
        }
        if !problems.is_empty() {
            report.report.diagnostics.extend(problems);
            report.report.flow = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = "triggers:\n  - webhook: {path: crm}\nsteps:\n  - id: m\n    map: {x: 1}\n";

    #[test]
    fn the_folder_names_the_workspace_and_ids_are_unique_per_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for folder in ["", "acme", "beta"] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join("x.yaml"), FLOW).unwrap();
        }
        // The key wins over the folder: this one is an `x` with path `crm` in beta.
        std::fs::write(
            root.join("acme").join("y.yaml"),
            format!("id: x\nworkspace: beta\n{FLOW}"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("Bad Name")).unwrap();
        std::fs::write(
            root.join("Bad Name").join("z.yaml"),
            FLOW.replace("crm", "z"),
        )
        .unwrap();
        let files = find_flow_files(std::slice::from_ref(&root)).unwrap();
        let reports = load_files_under(std::slice::from_ref(&root), &files, &Options::default());
        let outcome = |path: &Path| {
            let report = reports.iter().find(|r| r.path == path).unwrap();
            match &report.report.flow {
                Some(flow) => Ok(flow.key()),
                None => Err(report.report.diagnostics[0].message.clone()),
            }
        };
        assert_eq!(outcome(&root.join("x.yaml")), Ok("x".into()));
        assert_eq!(outcome(&root.join("acme/x.yaml")), Ok("acme/x".into()));
        // `acme/y.yaml` comes first and holds `x` of beta, so `beta/x.yaml` is the duplicate.
        assert_eq!(outcome(&root.join("acme/y.yaml")), Ok("beta/x".into()));
        let clash = outcome(&root.join("beta/x.yaml")).unwrap_err();
        assert!(clash.contains("duplicate flow id `x`"), "{clash}");
        let bad = outcome(&root.join("Bad Name/z.yaml")).unwrap_err();
        assert!(
            bad.contains("the folder `Bad Name` names this flow's workspace"),
            "{bad}"
        );
    }
}
