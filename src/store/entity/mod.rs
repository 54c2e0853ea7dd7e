//! One thin sea-orm entity per table (`Model`, `ActiveModel`, `Column`), with no behaviour:
//! repository functions in `store/` turn rows into domain types, and the schema itself is
//! defined by the migrations crate. Conventions: times are `i64` unix milliseconds (UTC), JSON
//! is `String` (TEXT), statuses and sources are their enums stored as text (`values.rs`), ids are `String`. No relations are declared, as the schema
//! has no foreign keys; joins are written where they are needed. Timestamps are not filled in by
//! `ActiveModelBehavior`, because time comes from the runner's injected clock.

pub mod api_keys;
pub mod attempts;
pub mod audit_log;
pub mod events;
pub mod flow_revisions;
pub mod flows;
pub mod nodes;
pub mod notifications;
pub mod operations;
pub mod portal_links;
pub mod runs;
pub mod schedule_fires;
pub mod secrets;
pub mod step_runs;
pub mod usage_daily;
mod values;
pub mod webhook_requests;

#[cfg(test)]
mod tests;
