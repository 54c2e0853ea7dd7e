//! The persisted state-machine runner: every run is a row whose state moves
//! `pending` → `running` → `succeeded` | `failed` | `cancelled` (with `waiting` for delays and
//! retry backoff). Each transition is committed before the next side effect starts; a node
//! holds a lease on the runs it executes and every write is conditional on still holding it.

pub mod claim;
pub mod context;
pub mod execute;
pub mod status;
pub mod worker;
