//! Validation of flow files end to end: each rule of the flow format has a broken flow in
//! `tests/fixtures/flows/invalid/` next to its expected diagnostics (`*.expected`, one
//! `line:column: message` per line), the example flows are valid and match the JSON Schema, a
//! flow using every field round-trips through the model, and the `flowd validate` command
//! prints and exits as documented.
//!
//! To refresh the expected files after deliberately changing a message, run with
//! `FLOWD_BLESS=1` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use flowd::flow::load::{find_flow_files, load_file, load_files};
use flowd::flow::model::FlowDef;
use flowd::flow::schema::flow_schema;
use flowd::flow::validate::{Options, validate_source};
use flowd::flow::yaml;

use crate::support::flowd::output_within;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows")
}

fn rendered(path: &Path) -> String {
    let report = load_file(path, &Options::default());
    report
        .report
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}: {d}\n", d.line, d.column))
        .collect()
}

#[test]
fn each_invalid_fixture_gives_its_expected_diagnostics() {
    let files = find_flow_files(&[fixtures().join("invalid")]).unwrap();
    assert!(files.len() >= 25, "fixtures missing: {files:?}");
    let bless = std::env::var_os("FLOWD_BLESS").is_some();
    let mut mismatches = Vec::new();
    for file in files {
        let actual = rendered(&file);
        assert!(
            load_file(&file, &Options::default()).report.has_errors(),
            "{} should be invalid",
            file.display()
        );
        let expected_path = file.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                file.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn example_flows_are_valid() {
    let files = find_flow_files(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")]).unwrap();
    assert!(files.len() >= 4, "expected at least four example flows");
    for report in load_files(&files, &Options::default()) {
        assert!(
            report.report.flow.is_some(),
            "{}: {:?}",
            report.path.display(),
            report.report.diagnostics
        );
    }
}

#[test]
fn example_flows_and_the_everything_flow_match_the_json_schema() {
    let schema = flow_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let mut files =
        find_flow_files(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")]).unwrap();
    files.push(fixtures().join("valid/everything.yaml"));
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let instance = yaml::parse(&source).unwrap().to_json();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    // The schema must also reject what validation rejects, or editors would mislead people.
    let bad = yaml::parse("triggers: [{entity: guest}]\nsteps: [{id: a, http: {methd: POST}}]\n")
        .unwrap();
    assert!(!validator.is_valid(&bad.to_json()));
}

#[test]
fn a_flow_using_every_field_round_trips_through_the_model() {
    let source = std::fs::read_to_string(fixtures().join("valid/everything.yaml")).unwrap();
    let report = validate_source(&source, None, &Options::default());
    let flow = report
        .flow
        .unwrap_or_else(|| panic!("{:?}", report.diagnostics));
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    assert_eq!(flow.def.triggers.len(), 6);
    assert_eq!(flow.def.steps.len(), 11);

    let as_yaml = yaml::to_string(&flow.def).unwrap();
    let again = validate_source(&as_yaml, None, &Options::default());
    assert!(
        again.diagnostics.is_empty(),
        "{:?}\n{as_yaml}",
        again.diagnostics
    );
    assert_eq!(
        again.flow.map(|f| f.def),
        Some(flow.def.clone()),
        "YAML round trip:\n{as_yaml}"
    );

    let as_json = serde_json::to_string(&flow.def).unwrap();
    let from_json: FlowDef = serde_json::from_str(&as_json).unwrap();
    assert_eq!(from_json, flow.def);
    // JSON is YAML too: the API accepts flows in either.
    let via_yaml_parser = validate_source(&as_json, None, &Options::default());
    assert_eq!(via_yaml_parser.flow.map(|f| f.def), Some(flow.def));
}

#[test]
fn flow_ids_and_webhook_paths_must_be_unique_across_files() {
    let files = find_flow_files(&[fixtures().join("collide")]).unwrap();
    let reports = load_files(&files, &Options::default());
    let messages: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.report
                .diagnostics
                .iter()
                .map(move |d| format!("{}: {d}", r.path.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        reports[0].report.flow.is_some(),
        "the first file keeps its id: {messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("second.yaml: id: duplicate flow id `shared` (also used by")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("second.yaml: triggers[0].webhook.path: webhook path `orders` is already used by flow `shared`")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("third.yaml: triggers[1].webhook.path: webhook path `refunds` is used twice in this flow")),
        "{messages:?}"
    );
    // Paths that differ only in letter case look alike: refused, naming both flows.
    assert!(
        messages.iter().any(|m| m.contains("fourth.yaml: triggers[0].webhook.path: webhook path `Orders` of flow `cased` differs only in letter case from `orders` of flow `shared` (")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("third.yaml: triggers[2].webhook.path: webhook paths `refunds` and `REFUNDS` of this flow differ only in letter case")),
        "{messages:?}"
    );
}

#[test]
fn require_https_rejects_literal_http_urls() {
    let source = "triggers: [{entity: guest}]\nsteps:\n  - id: a\n    http: {url: \"http://crm.example.com\"}\n  - id: b\n    http: {url: \"https://crm.example.com\"}\n";
    assert!(
        validate_source(source, Some("f"), &Options::default())
            .flow
            .is_some()
    );
    let strict = Options {
        require_https: true,
        ..Options::default()
    };
    let report = validate_source(source, Some("f"), &strict);
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}: {d}", d.line, d.column))
        .collect();
    assert_eq!(
        messages,
        [
            "4:17: steps[0].http.url: `http://crm.example.com` uses http, but FLOWD_HTTP_REQUIRE_HTTPS is set: use an https:// URL"
        ]
    );
}

fn flowd(args: &[&str]) -> std::process::Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_flowd"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        None,
    )
}

#[test]
fn validate_command_exits_zero_on_the_examples_and_one_on_broken_flows() {
    let ok = flowd(&["validate", "flows/"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let bad = flowd(&["validate", "tests/fixtures/flows/invalid"]);
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains("tests/fixtures/flows/invalid/unknown-key.yaml:6:7: steps[0].http: unknown key `methd`, did you mean `method`?"),
        "{out}"
    );
    let summary = String::from_utf8_lossy(&bad.stderr);
    assert!(summary.contains("invalid"), "{summary}");

    let missing = flowd(&["validate", "no/such/folder"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no/such/folder: no such file or folder")
    );
}

#[test]
fn validate_command_speaks_json() {
    let out = flowd(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/flows/invalid/missing-url.yaml",
        "flows/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = items.as_array().unwrap();
    let missing = items
        .iter()
        .find(|i| i["file"].as_str().unwrap().ends_with("missing-url.yaml"))
        .unwrap();
    assert_eq!(missing["valid"], false);
    assert_eq!(missing["diagnostics"][0]["path"], "steps[0].http");
    assert_eq!(missing["diagnostics"][0]["message"], "`url` is required");
    assert_eq!(missing["diagnostics"][0]["line"], 6);
    assert!(items.iter().filter(|i| i["valid"] == true).count() >= 4);
}

#[test]
fn schema_command_prints_the_schema() {
    let out = flowd(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, flow_schema());
    assert_eq!(printed["title"], "flowd flow");
}

/// Each `good` snippet in `flow` validates cleanly; each `bad` one is refused with a problem
/// on line 4, where every snippet sits.
fn check_snippets(flow: impl Fn(&str) -> String, good: &[&str], bad: &[&str]) {
    for good in good {
        let report = validate_source(&flow(good), None, &Options::default());
        assert!(
            report.diagnostics.is_empty() && report.flow.is_some(),
            "{good}: {:?}",
            report.diagnostics
        );
    }
    for bad in bad {
        let report = validate_source(&flow(bad), None, &Options::default());
        assert!(report.flow.is_none(), "{bad} is refused");
        assert!(
            report.diagnostics.iter().any(|d| d.line == 4),
            "{bad}: {:?}",
            report.diagnostics
        );
    }
}

/// The delivery settings: `on_pause`, `auto_pause` (`off` or limits, with a channel to tell),
/// `order_key` (a template without secrets) and `retention` are read, and a wrong value is
/// named at its line.
#[test]
fn delivery_settings_validate_with_positions() {
    let flow = |settings: &str| {
        format!(
            "id: d\ntriggers: [{{manual: {{label: Go}}}}]\nsettings:\n  {settings}\nsteps: [{{id: m, map: {{}}}}]\n"
        )
    };
    check_snippets(
        flow,
        &[
            "on_pause: drop",
            "auto_pause: off",
            "auto_pause: {after_failed_runs: 5}",
            "auto_pause: {or_failing_for: 5d}",
            "auto_pause: {after_failed_runs: 5, notify: {channel: slack, url: \"{{secrets.HOOK}}\"}}",
            "auto_pause: {notify: {channel: email, to: ops@example.com}}",
            "order_key: \"{{entity.id}}\"",
            "retention: 7d",
        ],
        &[
            "on_pause: keep",
            "auto_pause: of",
            "auto_pause: {after_failed_runs: 0}",
            "auto_pause: {after_failures: 5}",
            "auto_pause: {notify: {channel: slack}}",
            "auto_pause: {notify: {channel: email, to: a@b.c, text: hi}}",
            "order_key: \"{{secrets.KEY}}\"",
            "order_key: \"{{entity.id\"",
            "retention: 0s",
            "retention: forever",
        ],
    );
}

/// `match:` takes scalars or lists of them under any key; other shapes are named at their line.
#[test]
fn match_filters_validate() {
    let flow = |filter: &str| {
        format!(
            "id: m\ntriggers:\n  - entity: guest\n    match: {filter}\nsteps: [{{id: m, map: {{}}}}]\n"
        )
    };
    check_snippets(
        flow,
        &[
            "{store: [S1, S2], \"customer.country\": IT}",
            "{lines: 2, vip: true}",
        ],
        &["{store: {nested: map}}", "[S1]", "{store: [[S1]]}"],
    );
}
