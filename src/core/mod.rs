//! The shared vocabulary of flowd, at the bottom of the dependency rule (see
//! `docs/architecture.md`): ids, run and step statuses, what started a run, the one way to make
//! a new run, durations, diagnostics, error chains, time formatting, and the clock and jitter
//! that the runner and the triggers receive instead of reading the system clock. Nothing here
//! imports another flowd module.

pub mod clock;
pub mod diagnostic;
pub mod duration;
pub mod error;
pub mod id;
pub mod jitter;
pub mod new_run;
pub mod status;
pub mod time;
pub mod trigger_data;
pub mod wake;
pub mod workspace;
