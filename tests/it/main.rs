//! The integration tests, in one binary (`cargo test --test it`): one module per area, sharing
//! the helpers of `support/`. One binary links flowd once instead of once per file, and lets the
//! test harness run every test of the suite in parallel.

mod support;

mod api_docs;
mod api_flows;
mod api_robustness;
mod architecture;
mod audit;
mod auth_and_cli;
mod auth_table;
mod bench;
mod bulk;
mod cli_run_export;
mod client_tls;
mod connection_limits;
mod console;
mod contention;
mod crash;
mod delivery;
mod fault_matrix;
mod flow_test;
mod hostile_input;
mod intake;
mod limits;
mod multi_node;
mod ordering;
mod portal;
mod quota;
mod readme_tour;
mod retention;
mod run_controls;
mod run_guarantees;
mod secrets;
mod shutdown;
mod ssrf;
mod steps_e2e;
mod torture;
mod triggers;
mod usage_metrics;
mod validate;
mod webhook_paths;
mod workspaces;
