//! Helpers shared by the end-to-end tests: `flowd` runs the real binary and talks to its API,
//! `sink` is the local HTTP receiver its flows deliver to. Use them with `mod support;`.
//!
//! `smtp.rs` lives beside them but is not declared here: `src/step/notify/email.rs` and tests
//! include it by path, and declaring it twice would compile it into binaries that do not use it.

pub mod flowd;
pub mod sink;
