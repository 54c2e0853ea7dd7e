//! The `map` step: evaluates a mapping (any YAML value with templates inside its strings) and
//! outputs the result. A string that is exactly one expression keeps its JSON type.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
