//! The `delay` step: a durable wait. The run is parked as `waiting` with a wake-up time in the
//! database, so the wait survives restarts. Output: `{until}`.

use crate::core::duration::Duration;

/// How long to wait, e.g. `10m`.
pub type DelayConfig = Duration;
