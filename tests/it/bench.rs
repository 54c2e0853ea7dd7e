//! The benchmark harness's own tests (`bench/`, the `flowd-bench` library): its argument
//! checks, percentiles and the W1 workload. They live here so that `cargo test` at the root, the
//! README's command, runs them with the rest of the suite (a workspace member's tests run only
//! with `-p` or `--workspace`).

use std::time::Duration;

use clap::Parser;
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
