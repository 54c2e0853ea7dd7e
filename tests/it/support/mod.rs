//! Helpers shared by the integration tests: `flowd` runs the real binary and talks to its API,
//! `sink` is the local HTTP receiver flows deliver to, `smtp` a local SMTP server. The unit tests
//! of `src/step/notify/email.rs` include `smtp.rs` by path as well.

pub mod flowd;
pub mod sink;
pub mod smtp;
