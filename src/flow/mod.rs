//! Flows: the YAML format, its validation, and loading flow files from disk.

pub mod compiled;
pub mod diagnostic;
pub mod duration;
pub mod load;
pub mod model;
pub mod schema;
pub mod template;
pub mod validate;
pub mod yaml;
