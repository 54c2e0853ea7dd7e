//! The benchmark harness's own tests (`bench/`, the `flowd-bench` library): its argument
//! checks, percentiles and the W1 workload. They live here so that `cargo test` at the root, the
//! README's command, runs them with the rest of the suite (a workspace member's tests run only
//! with `-p` or `--workspace`).

use std::time::Duration;

use clap::Parser;
use flowd_bench::render;
use flowd_bench::report::percentile;
use flowd_bench::workload::{event_index, expected_body, flow_yaml, request_body};
use flowd_bench::{Args, check_args, parse_duration};
use serde_json::{Value, json};

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
