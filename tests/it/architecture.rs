//! The dependency rule of `docs/architecture.md`, checked on the source: every top-level module
//! of `src/` has a layer, and a module may use only modules of lower layers. So there is no
//! cycle between top-level modules, and a new module must be placed in the table to build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. Keep in step with `docs/architecture.md`.
const LAYERS: &[(&str, &[&str])] = &[
    ("vocabulary", &["core"]),
    ("leaves", &["template", "secrets", "store"]),
    ("observability", &["metrics"]),
    ("outbound HTTP", &["outbound"]),
    ("step kinds", &["step"]),
    ("flow format", &["flow"]),
    ("triggers and runner", &["trigger", "runner"]),
    ("wiring", &["engine"]),
    ("adapters", &["api", "console"]),
    ("command line", &["cli"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules: `src/<name>.rs` and `src/<name>/`, without the crate roots.
fn top_level_modules() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_str()?.to_string();
            let is_module = p.is_dir() || p.extension().is_some_and(|e| e == "rs");
            (is_module && name != "lib" && name != "main").then_some(name)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text names through `crate::`, in paths and in grouped
/// imports (`use crate::{a::X, b}`). Comments are left out.
fn crate_references(source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            group
                .split(',')
                .map(|item| item.trim().split("::").next().unwrap_or("").trim())
                .collect()
        } else {
            vec![
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or(""),
            ]
        };
        found.extend(
            names
                .into_iter()
                .filter(|n| modules.contains(*n))
                .map(String::from),
        );
    }
    found
}

/// module → (module it uses → files that use it).
fn dependencies() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let modules = top_level_modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut deps: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src()).unwrap().to_path_buf();
        let first = relative.components().next().unwrap().as_os_str();
        let owner = Path::new(first)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        if !modules.contains(&owner) {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for used in crate_references(&source, &modules) {
            if used != owner {
                deps.entry(owner.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(relative.display().to_string());
            }
        }
    }
    deps
}

#[test]
fn every_top_level_module_has_a_layer() {
    let unplaced: Vec<String> = top_level_modules()
        .into_iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer: {unplaced:?}; add them to LAYERS here and to docs/architecture.md"
    );
}

#[test]
fn modules_use_only_lower_layers() {
    let mut violations = Vec::new();
    for (module, used) in dependencies() {
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for (dependency, files) in used {
            let Some(theirs) = layer_of(&dependency) else {
                continue;
            };
            if theirs >= own {
                violations.push(format!(
                    "{module} ({}) uses {dependency} ({}) in {files:?}",
                    LAYERS[own].0, LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the dependency rule is broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reference_scanner_sees_paths_and_grouped_imports() {
    let modules: BTreeSet<String> = ["core", "store", "flow", "api"]
        .into_iter()
        .map(String::from)
        .collect();
    let source = "use crate::{core::id::new_id, store};\n\
                  fn f() { crate::flow::load(); }\n\
                  // crate::api is only mentioned in a comment\n";
    let found = crate_references(source, &modules);
    assert_eq!(
        found,
        ["core", "flow", "store"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

/// Files that may read the process environment: the configuration, parsed once at start, and
/// the test helper that finds the PostgreSQL test database.
const ENV_READERS: &[&str] = &["cli/config.rs", "store/testing.rs"];

/// What reading the environment looks like in source: `std::env::var`, `env::vars_os` and the
/// like, imports of them, and tracing's filter reading `RUST_LOG` by itself.
const ENV_READS: &[&str] = &["env::var", "std::env::{", "from_default_env", "from_env("];

/// The lines of `source` (comments left out) that read the environment, as `line: text`.
fn env_reads(source: &str) -> Vec<String> {
    source
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
        .filter(|(_, code)| ENV_READS.iter().any(|pattern| code.contains(pattern)))
        .map(|(n, code)| format!("{n}: {}", code.trim()))
        .collect()
}

/// Settings are flags with environment variables, parsed once into the `Config` and handed
/// down; a module that reads the environment itself escapes the checks and the warnings there.
#[test]
fn only_the_config_reads_the_environment() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut readers = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if ENV_READERS.contains(&relative.as_str()) {
            continue;
        }
        for read in env_reads(&std::fs::read_to_string(&file).unwrap()) {
            readers.push(format!("src/{relative}:{read}"));
        }
    }
    assert!(
        readers.is_empty(),
        "only src/cli/config.rs reads the environment; add a flag with `env = \"FLOWD_…\"` to its \
         ConfigArgs and hand the value down instead:\n{}",
        readers.join("\n")
    );
}

#[test]
fn the_environment_scanner_sees_each_form() {
    for read in [
        "let v = std::env::var(\"FLOWD_X\");",
        "for (k, v) in env::vars() {}",
        "let v = env::var_os(\"HOME\");",
        "use std::env::{self, var};",
        "let f = EnvFilter::try_from_default_env();",
        "let p = NetPolicy::from_env()?;",
    ] {
        assert_eq!(env_reads(read).len(), 1, "{read}");
    }
    for fine in [
        "let v = env!(\"CARGO_PKG_VERSION\");",
        "// std::env::var is only mentioned in a comment",
        "#[arg(long, env = \"FLOWD_LISTEN\")]",
    ] {
        assert_eq!(env_reads(fine), Vec::<String>::new(), "{fine}");
    }
}
