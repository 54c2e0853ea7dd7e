//! TEMPORARY STUB (replaced by the template engine).
use serde_json::Value;
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
}
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}
impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            source: source.to_string(),
        })
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn references(&self) -> Vec<Vec<String>> {
        Vec::new()
    }
    pub fn render(&self, _ctx: &Value) -> Value {
        Value::String(self.source.clone())
    }
}
pub struct CompiledValue;
impl CompiledValue {
    pub fn compile(_v: &Value) -> Result<CompiledValue, Vec<(String, TemplateError)>> {
        Ok(CompiledValue)
    }
    pub fn references(&self) -> Vec<Vec<String>> {
        Vec::new()
    }
}
