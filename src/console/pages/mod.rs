//! One file per page: its query, its data shaped for its template, its actions.

pub mod actions;
pub mod audit;
pub mod flow;
pub mod flow_test;
pub mod flows;
pub mod inbox;
pub mod nodes;
pub mod run;
pub mod runs;
pub mod secrets;
pub mod usage;
pub mod workspaces;
