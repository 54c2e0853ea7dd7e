//! The benchmark harness's own tests (`bench/`, the `flowd-bench` library): its argument
//! checks, percentiles and the W1 workload. They live here so that `cargo test` at the root, the
//! README's command, runs them with the rest of the suite (a workspace member's tests run only
//! with `-p` or `--workspace`).

use std::time::Duration;

use clap::Parser;
use flowd_bench::goals::{Bound, Goal};
use flowd_bench::render;
use flowd_bench::report::percentile;
use flowd_bench::workload::{event_index, expected_body, flow_yaml, request_body};
use flowd_bench::{Args, check_args, parse_duration};
use serde_json::{Value, json};

#[test]
fn an_explicit_relative_flowd_path_is_made_absolute() {
    // flowd is started in the run's temporary folder: a relative --flowd would name nothing
    // there. Tests run in the package's folder, which holds its Cargo.toml.
    let found = flowd_bench::flowd::locate(Some(std::path::Path::new("Cargo.toml")), true).unwrap();
    assert!(found.is_absolute(), "{}", found.display());
    assert_eq!(
        found,
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")
    );
    let missing =
        flowd_bench::flowd::locate(Some(std::path::Path::new("no-such-flowd")), true).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no flowd binary at no-such-flowd"),
        "{missing}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("s").is_err());
}

#[test]
fn several_nodes_need_postgres() {
    let args = |extra: &[&str]| {
        let mut all = vec!["flowd-bench"];
        all.extend(extra);
        Args::try_parse_from(all).expect("parse")
    };
    let refused = check_args(&args(&["--nodes", "2"])).unwrap_err();
    assert!(refused.to_string().contains("postgres://"), "{refused}");
    let sqlite = args(&["--nodes", "2", "--database-url", "sqlite:///tmp/x.db"]);
    assert!(check_args(&sqlite).is_err());
    assert!(check_args(&args(&["--nodes", "0"])).is_err());
    let pg = ["--nodes", "3", "--database-url", "postgres://h:5432"];
    assert!(check_args(&args(&pg)).is_ok());
    assert!(check_args(&args(&[])).is_ok());
}

#[test]
fn arguments_parse() {
    Args::try_parse_from([
        "flowd-bench",
        "--rate",
        "1000",
        "--perf-args",
        "-F 99 -g",
        "--flowd-env",
        "FLOWD_SQLITE_SYNC=full",
    ])
    .expect("parse");
}

#[test]
fn nearest_rank_percentiles() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 0.5), Some(50));
    assert_eq!(percentile(&v, 0.99), Some(99));
    assert_eq!(percentile(&v, 1.0), Some(100));
    assert_eq!(percentile(&[7], 0.99), Some(7));
    assert_eq!(percentile(&[], 0.5), None);
}

#[test]
fn events_are_valid_json_and_round_trip_their_index() {
    let one: Value = serde_json::from_str(&request_body(4, 5, 1)).expect("json");
    assert_eq!(one["id"], "5");
    assert_eq!(one["data"]["last_name"], "Lovelace-O'Brien");
    let many: Value = serde_json::from_str(&request_body(0, 3, 3)).expect("json");
    assert_eq!(many.as_array().map(Vec::len), Some(3));
    assert_eq!(event_index(&expected_body(41)), Some(41));
    assert_eq!(event_index(&json!({"guest_id": "0"})), None);
    assert_eq!(event_index(&json!({"guest_id": 3})), None);
}

#[test]
fn the_flow_names_the_sink() {
    let yaml = flow_yaml("http://127.0.0.1:9/w1");
    assert!(yaml.contains(r#"url: "http://127.0.0.1:9/w1""#));
    assert!(yaml.contains(r#"body: "{{steps.contact}}""#));
    assert!(yaml.contains(r#"guest_id: "{{entity.id}}""#));
}

/// A small database made by the population code is one flowd serves: its flows in the
/// grid, its failed runs in the log, a run with its steps and attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_population_makes_a_database_flowd_serves() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flowd"));
    if std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `sqlite3` shell (Debian package sqlite3)");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no `sqlite3` shell (CI=true: this test must run)"
        );
        return;
    }
    let _provider = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client");
    let sizes = render::Sizes {
        flows: 3,
        runs: 300,
        requests: 3,
    };
    let url = render::populate(&bin, dir.path(), sizes, &http)
        .await
        .expect("populate");
    let mut flowd = render::serve(&bin, dir.path(), &url, &http)
        .await
        .expect("serve");
    let base = flowd.base_url.clone();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let answer = http.get(&url).send().await.expect("an answer");
            assert_eq!(answer.status().as_u16(), 200, "GET {url}");
            answer.text().await.expect("a body")
        }
    };
    let grid = get("/").await;
    assert!(grid.contains("flow-0002") && grid.contains("crm.example.com"));
    let runs = render::failed_runs(&http, &base)
        .await
        .expect("failed runs");
    assert_eq!(runs.len(), 30, "one in ten runs failed");
    let run = get(&format!("/runs/{}", runs[0])).await;
    assert!(
        run.contains("HTTP 503") && run.contains("try later"),
        "{run}"
    );
    let log = get("/runs?status=failed").await;
    assert!(log.contains(&runs[0]));
    let figures = render::measure_pages(&http, &base, sizes)
        .await
        .expect("measure");
    assert_eq!(figures.len(), 5);
    flowd
        .terminate(Duration::from_secs(30))
        .await
        .expect("stop flowd");
}

#[test]
fn a_goal_is_met_by_its_measured_figure() {
    let goal = |bound, figure| Goal::new("g".into(), bound, "runs/s", figure);
    assert_eq!(
        goal(Bound::AtLeast(10_000.0), Some(9_999.0)).met(),
        Some(false)
    );
    assert_eq!(
        goal(Bound::AtLeast(10_000.0), Some(10_000.0)).met(),
        Some(true)
    );
    assert_eq!(goal(Bound::Below(25.0), Some(25.0)).met(), Some(false));
    assert_eq!(goal(Bound::Below(25.0), None).met(), None);
    let line = goal(Bound::AtLeast(10_000.0), Some(12_345.6)).human();
    assert!(
        line.contains("12,346 runs/s") && line.contains("≥ 10,000"),
        "{line}"
    );
    assert!(line.ends_with("met"), "{line}");
}

#[test]
fn goals_refuses_a_fixed_rate() {
    let refused = Args::try_parse_from(["flowd-bench", "--goals", "--rate", "100"]);
    assert!(refused.is_err());
    let goals = Args::try_parse_from(["flowd-bench", "--goals", "--count", "100"]).expect("parse");
    assert!(check_args(&goals).is_ok());
    let args = Args::try_parse_from(["flowd-bench", "--backlog", "--rate", "100"]).expect("parse");
    assert!(check_args(&args).is_err());
}

/// A small W1 run against the debug `flowd`, as CI runs it: every check passes (each event
/// delivered exactly once with the mapped body, no request errors, no errors in flowd's log,
/// a clean stop) and the goal lines of a SQLite closed loop are there, met or not (a debug build
/// on a loaded machine says nothing about the goals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_w1_run_passes_every_check_and_reports_the_goals() {
    let _provider = rustls::crypto::ring::default_provider().install_default();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flowd"));
    let args = Args::try_parse_from([
        "flowd-bench",
        "--count",
        "2000",
        "--concurrency",
        "16",
        "--drain-timeout",
        "120s",
    ])
    .expect("parse");
    let report = flowd_bench::w1(&args, &bin)
        .await
        .expect("the benchmark runs");
    assert!(report.ok, "{}", report.human);
    let check = &report.json["check"];
    assert_eq!(check["missing"], 0, "{}", report.human);
    assert_eq!(check["extra_deliveries"], 0);
    assert_eq!(check["body_mismatches"], 0);
    assert_eq!(report.json["runs"]["delivered"], 2000);
    assert_eq!(report.json["flowd_log"]["error"], 0);
    let names: Vec<&str> = report.goals.iter().map(|g| g.name.trim()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names[0].contains("SQLite closed loop, 16 clients"),
        "{names:?}"
    );
    assert!(
        names[1].contains("p99") && names[2].contains("accepted"),
        "{names:?}"
    );
    assert!(
        report.goals.iter().all(|g| g.met().is_some()),
        "{}",
        report.human
    );
    let json_goals = report.json["goals"].as_array().expect("goals in the JSON");
    assert_eq!(json_goals.len(), 3);
    assert!(json_goals[0]["figure"].as_f64().is_some_and(|f| f > 0.0));
    assert_eq!(
        report.human.matches("  goal ").count(),
        3,
        "{}",
        report.human
    );
}

/// `--backlog`: the flow is paused while events are posted, so every run waits as `held`;
/// the backlog is all of them, and resuming delivers each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_backlog_is_measured_then_delivered() {
    let _provider = rustls::crypto::ring::default_provider().install_default();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flowd"));
    let args = Args::try_parse_from([
        "flowd-bench",
        "--backlog",
        "--count",
        "500",
        "--concurrency",
        "8",
    ])
    .expect("parse");
    let report = flowd_bench::w1(&args, &bin)
        .await
        .expect("the benchmark runs");
    assert!(report.ok, "{}", report.human);
    assert_eq!(report.json["runs"]["delivered"], 500);
    let backlog = report.goals.last().expect("the backlog goal");
    assert!(backlog.name.contains("backlog"), "{}", backlog.name);
    assert_eq!(backlog.note, "backlog reached 500 runs");
    // 500 runs are not the goal's 100,000: not measured rather than a verdict.
    assert_eq!(backlog.met(), None);
}
