//! The `map` step: evaluates a mapping (any YAML value with templates inside its strings) and
//! outputs the result. A string that is exactly one expression keeps its JSON type.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::step::check::{Context, Findings};
use crate::template::{CompiledValue, MASK};

/// The mapping: any value; strings may hold templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MapConfig(pub Value);

impl JsonSchema for MapConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mapping".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"description": "Any value: mappings, lists and scalars; strings may hold templates, and a string that is exactly one `{{expression}}` keeps the expression's JSON type."})
    }
}

/// Checks a `map` step at `path` (`steps[i].map`): every template in the mapping compiles and
/// refers to what exists, each reported at its own place.
pub fn validate(map: &MapConfig, path: &FlowPath, cx: &Context<'_>) -> Vec<Diagnostic> {
    let mut found = Findings::new(cx);
    found.value(&map.0, path.clone());
    found.finish()
}

/// A map step compiled once per flow revision.
#[derive(Debug, Clone)]
pub struct MapStep {
    value: CompiledValue,
}

impl MapStep {
    pub fn compile(config: &MapConfig) -> Result<MapStep, String> {
        let value = CompiledValue::compile(&config.0).map_err(|errors| {
            errors
                .iter()
                .map(|(path, e)| format!("{path}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(MapStep { value })
    }

    /// The step's output: the mapping rendered against the run context.
    pub fn execute(&self, context: &Value) -> Value {
        self.value.render(context)
    }

    /// Whether any template of the mapping reads secrets.
    pub fn reads_secrets(&self) -> bool {
        self.value.reads_secrets()
    }

    /// The output as stored and shown: what secret-reading templates made becomes `***`.
    pub fn mask(&self, output: &Value) -> Value {
        self.value.mask(output, MASK)
    }
}
