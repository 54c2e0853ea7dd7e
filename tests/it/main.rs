//! The integration tests, in one binary (`cargo test --test it`): one module per area, sharing
//! the helpers of `support/`. One binary links flowd once instead of once per file, and lets the
//! test harness run every test of the suite in parallel.

mod support;

mod api_docs;
mod api_flows;
mod api_robustness;
mod architecture;
mod auth_and_cli;
mod auth_table;
mod bench;
mod cli_run_export;
mod connection_limits;
mod console;
mod crash;
mod delivery;
mod hostile_input;
mod multi_node;
mod run_controls;
mod secrets;
mod steps_e2e;
mod triggers;
mod usage_metrics;
mod validate;
mod webhook_paths;
