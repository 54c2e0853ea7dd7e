//! `flowd schema`: prints the JSON Schema of the flow format, for editors
//! (yaml-language-server: `# yaml-language-server: $schema=./flowd.schema.json`).

use std::process::ExitCode;

use crate::flow::schema::flow_schema;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> ExitCode {
    match serde_json::to_string_pretty(&flow_schema()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flowd schema: {e}");
            ExitCode::FAILURE
        }
    }
}
