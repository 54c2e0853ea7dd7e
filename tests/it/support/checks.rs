//! Checks of finished runs that several end-to-end tests share; each returns the problems it
//! found, so a test can report all of them at once.

use serde_json::Value;

/// The problems of a run that should have succeeded with exactly `expected` steps, in order,
/// each of them succeeded.
pub fn succeeded_with_steps(run_id: &str, run: &Value, expected: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if run["status"] != "succeeded" {
        problems.push(format!(
            "run {run_id} ended {} (error {})",
            run["status"], run["error"]
        ));
    }
    let steps = run["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    if ids != expected {
        problems.push(format!(
            "run {run_id} has steps {ids:?}, expected {expected:?}"
        ));
    }
    for step in steps {
        if step["status"] != "succeeded" {
            problems.push(format!(
                "run {run_id}: step {} is {} (error {})",
                step["id"], step["status"], step["error"]
            ));
        }
    }
    problems
}
