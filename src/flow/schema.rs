//! The JSON Schema of the flow format, generated from the model types, and the shape check that
//! holds a parsed YAML tree against it. Validating against the same schema that `flowd schema`
//! prints keeps editors and `flowd validate` in agreement, and reports *every* shape problem
//! (unknown keys, missing keys, wrong types, bad values) with its position, where serde would
//! stop at the first.
//!
//! The checker understands the part of JSON Schema that schemars generates for our types:
//! `$ref`, `allOf`, `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`,
//! `anyOf`/`oneOf`, `pattern`, `minimum`, `maximum`, `minItems`, plus our `x-message` keyword,
//! which names what a `pattern` expects in words.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::core::diagnostic::{Diagnostic, FlowPath, suggest};
use crate::flow::model::FlowDef;
use crate::flow::yaml::{Node, NodeValue};

/// The flow format's JSON Schema (draft-07, the draft editors support best).
pub fn flow_schema() -> Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
        let schema = SchemaSettings::draft07()
            .into_generator()
            .into_root_schema_for::<FlowDef>();
        schema.to_value()
    });
    SCHEMA.clone()
}

/// Checks a parsed flow file against the schema; returns every problem found.
pub fn check_shape(node: &Node) -> Vec<Diagnostic> {
    static SCHEMA: LazyLock<Value> = LazyLock::new(flow_schema);
    let mut checker = Checker {
        root: &SCHEMA,
        diagnostics: Vec::new(),
    };
    checker.check(node, &SCHEMA, &FlowPath::root());
    checker.diagnostics
}

struct Checker<'s> {
    root: &'s Value,
    diagnostics: Vec<Diagnostic>,
}

impl<'s> Checker<'s> {
    fn check(&mut self, node: &Node, schema: &'s Value, path: &FlowPath) {
        let Some(schema) = self.resolve(schema) else {
            return;
        };
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.check(node, part, path);
            }
        }
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.check_union(node, branches, path);
            return;
        }
        if !self.check_type(node, schema, path) {
            return;
        }
        self.check_value_rules(node, schema, path);
        match &node.value {
            NodeValue::Map(entries) => self.check_mapping(node, entries, schema, path),
            NodeValue::Seq(items) => self.check_items(items, schema, path),
            _ => {}
        }
    }

    /// Follows `$ref` (within this schema) until a concrete schema object.
    fn resolve(&self, mut schema: &'s Value) -> Option<&'s Map<String, Value>> {
        for _ in 0..16 {
            let object = schema.as_object()?;
            let Some(reference) = object.get("$ref").and_then(Value::as_str) else {
                return Some(object);
            };
            // Direct lookups: JSON-pointer parsing is measurable when validating many flows.
            schema = match reference.strip_prefix("#/definitions/") {
                Some(name) => self.root.get("definitions")?.get(name)?,
                None => self.root.pointer(reference.strip_prefix('#')?)?,
            };
        }
        None
    }

    fn check_type(&mut self, node: &Node, schema: &Map<String, Value>, path: &FlowPath) -> bool {
        let Some(types) = schema.get("type") else {
            return true;
        };
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return true,
        };
        if allowed.iter().any(|t| type_matches(node, t)) {
            return true;
        }
        let expected: Vec<&str> = allowed
            .iter()
            .filter(|t| **t != "null")
            .map(|t| type_words(t))
            .collect();
        self.error(
            node,
            path,
            format!("expected {}, found {}", join_or(&expected), describe(node)),
        );
        false
    }

    fn check_value_rules(&mut self, node: &Node, schema: &Map<String, Value>, path: &FlowPath) {
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            self.check_enum(node, options, path);
        }
        if let Some(constant) = schema.get("const") {
            self.check_enum(node, std::slice::from_ref(constant), path);
        }
        if let (NodeValue::Str(text), Some(pattern)) =
            (&node.value, schema.get("pattern").and_then(Value::as_str))
            && !pattern_matches(pattern, text)
        {
            let what = schema
                .get("x-message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("text matching `{pattern}`"), str::to_string);
            self.error(node, path, format!("`{text}` is not {what}"));
        }
        if let Some(number) = node_number(node) {
            if let Some(min) = schema
                .get("minimum")
                .and_then(Value::as_f64)
                .filter(|m| number < *m)
            {
                self.error(
                    node,
                    path,
                    format!("{number} is too small: the least allowed is {min}"),
                );
            }
            if let Some(max) = schema
                .get("maximum")
                .and_then(Value::as_f64)
                .filter(|m| number > *m)
            {
                self.error(
                    node,
                    path,
                    format!("{number} is too large: the most allowed is {max}"),
                );
            }
        }
    }

    fn check_enum(&mut self, node: &Node, options: &[Value], path: &FlowPath) {
        let value = node.to_json();
        if options.contains(&value) {
            return;
        }
        let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        let listed = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
        let mut message = format!(
            "{} is not allowed here; use {}",
            show_value(node),
            join_or_str(&listed)
        );
        if let Some(close) = node
            .as_str()
            .and_then(|s| suggest(s, names.iter().copied()))
        {
            message.push_str(&format!(" (did you mean `{close}`?)"));
        }
        self.error(node, path, message);
    }

    fn check_mapping(
        &mut self,
        node: &Node,
        entries: &[(crate::flow::yaml::Key, Node)],
        schema: &'s Map<String, Value>,
        path: &FlowPath,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, value) in entries {
            let child = path.key(&key.name);
            match properties.and_then(|p| p.get(&key.name)) {
                Some(property) => self.check(value, property, &child),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> = properties
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let mut message = format!("unknown key `{}`", key.name);
                        if let Some(close) = suggest(&key.name, known.iter().copied()) {
                            message.push_str(&format!(", did you mean `{close}`?"));
                        } else if !known.is_empty() {
                            message.push_str(&format!(
                                "; allowed keys are {}",
                                known
                                    .iter()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                        self.diagnostics
                            .push(Diagnostic::error(path.clone(), key.pos, message));
                    }
                    Some(extra @ Value::Object(_)) => self.check(value, extra, &child),
                    _ => {}
                },
            }
        }
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = required.as_str().filter(|name| node.get(name).is_none()) {
                self.error(node, path, format!("`{name}` is required"));
            }
        }
    }

    fn check_items(&mut self, items: &[Node], schema: &'s Map<String, Value>, path: &FlowPath) {
        if let Some(min) = schema
            .get("minItems")
            .and_then(Value::as_u64)
            .filter(|m| (items.len() as u64) < *m)
        {
            let what = if min == 1 {
                "at least one item".to_string()
            } else {
                format!("at least {min} items")
            };
            self.diagnostics.push(Diagnostic::error(
                path.clone(),
                self.current_pos(items),
                format!("needs {what}"),
            ));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item, item_schema, &path.index(i));
            }
        }
    }

    fn current_pos(&self, items: &[Node]) -> crate::core::diagnostic::Pos {
        items
            .first()
            .map_or(crate::core::diagnostic::Pos::START, |n| n.pos)
    }

    /// Picks the branch of a union that the node means, then checks it against that branch only,
    /// so messages speak of what the author wrote rather than of every alternative.
    fn check_union(&mut self, node: &Node, branches: &'s [Value], path: &FlowPath) {
        let fitting: Vec<&'s Value> = branches
            .iter()
            .filter(|b| {
                self.resolve(b)
                    .is_some_and(|s| branch_accepts_kind(s, node))
            })
            .collect();
        match fitting.as_slice() {
            [] => {
                let expected: Vec<String> = branches
                    .iter()
                    .filter_map(|b| self.resolve(b))
                    .flat_map(branch_type_words)
                    .collect();
                let mut expected: Vec<&str> = expected
                    .iter()
                    .map(String::as_str)
                    .filter(|w| *w != "null")
                    .collect();
                expected.dedup();
                self.error(
                    node,
                    path,
                    format!("expected {}, found {}", join_or(&expected), describe(node)),
                );
            }
            [only] => self.check(node, only, path),
            several => self.check_among(node, several, path),
        }
    }

    /// Several branches accept this kind of value: a mapping picks the branch whose required key
    /// it has (`entity:`, `manual:`, …); anything else takes the first branch that fits cleanly.
    fn check_among(&mut self, node: &Node, branches: &[&'s Value], path: &FlowPath) {
        if matches!(node.value, NodeValue::Map(_)) {
            let chosen = branches.iter().find(|b| {
                self.resolve(b)
                    .and_then(|s| s.get("required"))
                    .and_then(Value::as_array)
                    .is_some_and(|req| {
                        req.iter()
                            .filter_map(Value::as_str)
                            .any(|k| node.get(k).is_some())
                    })
            });
            match chosen {
                Some(branch) => self.check(node, branch, path),
                None => {
                    let keys: Vec<String> = branches
                        .iter()
                        .filter_map(|b| self.resolve(b))
                        .filter_map(|s| {
                            s.get("required")?
                                .as_array()?
                                .first()?
                                .as_str()
                                .map(|k| format!("`{k}`"))
                        })
                        .collect();
                    let mut message = format!("expected one of the keys {}", join_or_str(&keys));
                    if matches!(&node.value, NodeValue::Map(entries) if entries.is_empty()) {
                        message.push_str(", found an empty mapping");
                    }
                    if let NodeValue::Map(entries) = &node.value
                        && !entries.is_empty()
                    {
                        let found: Vec<String> = entries
                            .iter()
                            .map(|(k, _)| format!("`{}`", k.name))
                            .collect();
                        message.push_str(&format!(", found {}", found.join(", ")));
                        let names: Vec<&str> = keys.iter().map(|k| k.trim_matches('`')).collect();
                        if let Some(close) = entries
                            .iter()
                            .find_map(|(k, _)| suggest(&k.name, names.iter().copied()))
                        {
                            message.push_str(&format!(" (did you mean `{close}`?)"));
                        }
                    }
                    self.error(node, path, message);
                }
            }
            return;
        }
        for branch in branches {
            let mut trial = Checker {
                root: self.root,
                diagnostics: Vec::new(),
            };
            trial.check(node, branch, path);
            if trial.diagnostics.is_empty() {
                return;
            }
        }
        self.check(node, branches[0], path);
    }

    fn error(&mut self, node: &Node, path: &FlowPath, message: String) {
        self.diagnostics
            .push(Diagnostic::error(path.clone(), node.pos, message));
    }
}

fn type_matches(node: &Node, json_type: &str) -> bool {
    match (json_type, &node.value) {
        ("string", NodeValue::Str(_))
        | ("boolean", NodeValue::Bool(_))
        | ("null", NodeValue::Null)
        | ("object", NodeValue::Map(_))
        | ("array", NodeValue::Seq(_))
        | ("integer" | "number", NodeValue::Int(_))
        | ("number", NodeValue::Float(_)) => true,
        ("integer", NodeValue::Float(f)) => f.fract() == 0.0,
        _ => false,
    }
}

fn branch_accepts_kind(schema: &Map<String, Value>, node: &Node) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => type_matches(node, t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| type_matches(node, t)),
        _ => match schema.get("const") {
            Some(c) => c == &node.to_json(),
            None => true,
        },
    }
}

fn branch_type_words(schema: &Map<String, Value>) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![type_words(t).to_string()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(|t| type_words(t).to_string())
            .collect(),
        _ => vec!["a value".to_string()],
    }
}

fn type_words(json_type: &str) -> &'static str {
    match json_type {
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "object" => "a mapping",
        "array" => "a list",
        "null" => "null",
        _ => "a value",
    }
}

fn describe(node: &Node) -> String {
    match &node.value {
        NodeValue::Str(_) | NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
            format!("{} {}", node.kind_name(), show_value(node))
        }
        _ => node.kind_name().to_string(),
    }
}

fn show_value(node: &Node) -> String {
    match &node.value {
        NodeValue::Str(s) => format!("`{}`", truncate(s, 60)),
        NodeValue::Int(i) => format!("`{i}`"),
        NodeValue::Float(f) => format!("`{f}`"),
        NodeValue::Bool(b) => format!("`{b}`"),
        NodeValue::Null => "null".to_string(),
        _ => node.kind_name().to_string(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn node_number(node: &Node) -> Option<f64> {
    match node.value {
        NodeValue::Int(i) => Some(i as f64),
        NodeValue::Float(f) => Some(f),
        _ => None,
    }
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    static CACHE: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(Default::default);
    let Ok(mut cache) = CACHE.lock() else {
        return true;
    };
    let regex = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    regex.as_ref().is_none_or(|r| r.is_match(text))
}

fn join_or(words: &[&str]) -> String {
    match words {
        [] => "a value".to_string(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn join_or_str(words: &[String]) -> String {
    join_or(&words.iter().map(String::as_str).collect::<Vec<_>>())
}
