//! flowd: a self-hosted workflow automation engine. Declarative YAML flows connect triggers
//! (entity events, manual actions, schedules, webhooks) to steps (mapping, HTTP calls,
//! notifications, delays), executed by a persisted state-machine runner.

pub mod api;
pub mod cli;
pub mod console;
pub mod core;
pub mod engine;
pub mod flow;
pub mod metrics;
pub mod outbound;
pub mod runner;
pub mod secrets;
pub mod step;
pub mod store;
pub mod template;
pub mod trigger;
