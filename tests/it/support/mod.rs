//! Helpers shared by the integration tests: `engine` runs an engine in the test process, `flowd`
//! the real binary, `api` is the client of either's REST API, `sink` the local HTTP receiver
//! flows deliver to and `smtp` a local SMTP server. The unit tests of `src/step/notify/email.rs`
//! include `smtp.rs` by path as well.

pub mod api;
pub mod browser;
pub mod checks;
pub mod engine;
pub mod flowd;
pub mod sink;
pub mod smtp;
