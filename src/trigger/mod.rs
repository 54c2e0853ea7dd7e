//! Triggers: how runs begin. One file per trigger kind: `entity` (events of the host
//! application), `manual` (a person runs an action), `schedule` (cron), `webhook` (an inbound
//! request); `cron` parses and steps through cron expressions for `schedule`.
pub mod cron;
pub mod entity;
pub mod manual;
pub mod schedule;
pub mod webhook;
