//! Flows: the YAML format, its validation, and loading flow files from disk.

pub mod catalog;
pub mod compiled;
pub mod cron;
pub mod load;
pub mod model;
pub mod registry;
pub mod schema;
pub mod summary;
pub mod validate;
pub mod yaml;
