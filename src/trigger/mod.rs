//! Triggers: how runs begin. One file per trigger kind.
pub mod cron;
