//! YAML in and out. Flow files are parsed into a [`Node`] tree that remembers the line and column
//! of every value, so validation can point at the exact place of each problem; YAML is written
//! (for `flowd export` and `Accept: application/yaml`) through serde_yaml. This is the only module
//! that knows which YAML libraries we use, so they can be swapped without touching the rest.
//!
//! Parsing is hardened against hostile input: nesting deeper than [`MAX_DEPTH`], alias expansion
//! beyond [`MAX_NODES`] values or beyond [`MAX_EXPANDED_BYTES`] of text are errors, not stack
//! overflows or memory blow-ups. Counting bytes matters as much as counting values: one large
//! anchor used by a few thousand aliases stays under any value count and still expands to
//! hundreds of megabytes.

use std::collections::HashMap;

use serde_json::Value;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::core::diagnostic::Pos;

/// Deepest nesting of mappings and lists accepted in a flow file.
pub const MAX_DEPTH: usize = 64;
/// Most values a document may hold once aliases are expanded (stops "billion laughs" bombs).
pub const MAX_NODES: usize = 100_000;
/// Most text (keys and scalar values, in bytes) a document may hold once aliases are expanded.
/// Four times the largest request body: a flow written by hand never comes near it.
pub const MAX_EXPANDED_BYTES: usize = 4 * 1024 * 1024;

/// A YAML value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in source order; keys are scalars rendered as text, with their own position.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A syntax problem, or a document that breaks one of the parser's limits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// Describes the kind of value for messages: "a string", "a list", …
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "true/false",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// The value of `key` if this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The position of `key` itself (not its value) if this node is a mapping that has it.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(k, _)| k.pos),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to JSON; non-finite floats become null because JSON cannot hold them.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses one YAML document. An empty document is a null node.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    reject_control_characters(source)?;
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            pos: pos_of(e.marker()),
            message: match e.info() {
                "recursion limit exceeded" => format!("nesting is deeper than {MAX_DEPTH} levels"),
                info => info.to_string(),
            },
        })?;
        if builder.on_event(event, pos_of(&mark))? {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Node {
        value: NodeValue::Null,
        pos: Pos::START,
    }))
}

/// Writes any serializable value as YAML text. It goes through JSON first because serde_yaml
/// writes enums as YAML tags (`!basic`), which flow files do not use.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    let json =
        serde_json::to_value(value).map_err(<serde_yaml::Error as serde::ser::Error>::custom)?;
    serde_yaml::to_string(&json)
}

/// YAML forbids control characters other than tab and line breaks; binary data shows up here.
fn reject_control_characters(source: &str) -> Result<(), YamlError> {
    let Some(at) =
        source.find(|c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}'))
    else {
        return Ok(());
    };
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let code = source[at..].chars().next().map_or(0, u32::from);
    Err(err(
        Pos { line, column },
        &format!(
            "control character U+{code:04X} is not allowed in YAML text (is this a binary file?)"
        ),
    ))
}

/// yaml-rust2 counts lines from 1 but columns from 0.
fn pos_of(mark: &Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

/// A collection being built, with the key waiting for its value when it is a mapping.
enum Open {
    Seq(Node, Vec<Node>, usize),
    Map(Node, Vec<(Key, Node)>, Option<Key>, usize, Vec<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Each anchor's value with its weight, computed once so every alias costs O(1) to count.
    anchors: HashMap<usize, (Node, Weight)>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    bytes: usize,
}

/// What a value adds to the expanded document: its values and the bytes of its text.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

impl Builder {
    /// Feeds one parser event; returns true at the end of the stream.
    fn on_event(&mut self, event: Event, pos: Pos) -> Result<bool, YamlError> {
        match event {
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(err(
                        pos,
                        "a flow file holds one YAML document; found a second one (`---`)",
                    ));
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::Alias(id) => {
                let (anchored, weight) = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| err(pos, "alias to an unknown anchor"))?;
                let anchor_line = anchored.pos.line;
                let weight = *weight;
                self.count_alias(weight, anchor_line, pos)?;
                let node = self.anchors[&id].0.clone();
                self.push_value(Node { pos, ..node })?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(
                    Weight {
                        nodes: 1,
                        bytes: text.len(),
                    },
                    pos,
                )?;
                let node = Node {
                    value: resolve_scalar(text, style, tag.as_ref()),
                    pos,
                };
                self.remember(anchor, &node);
                self.push_value(node)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(Open::Seq(placeholder(pos), Vec::new(), anchor), pos)?
            }
            Event::MappingStart(anchor, _) => self.open(
                Open::Map(placeholder(pos), Vec::new(), None, anchor, Vec::new()),
                pos,
            )?,
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
        }
        Ok(false)
    }

    fn count(&mut self, weight: Weight, pos: Pos) -> Result<(), YamlError> {
        self.nodes += weight.nodes;
        self.bytes += weight.bytes;
        if self.nodes > MAX_NODES {
            return Err(err(
                pos,
                &format!("the document expands to more than {MAX_NODES} values (an alias bomb?)"),
            ));
        }
        if self.bytes > MAX_EXPANDED_BYTES {
            return Err(err(
                pos,
                &format!(
                    "the document expands to more than {} MiB of text (an alias bomb?)",
                    MAX_EXPANDED_BYTES / (1024 * 1024)
                ),
            ));
        }
        Ok(())
    }

    /// Counts an alias before its value is copied, naming the anchor when the limit is passed.
    fn count_alias(
        &mut self,
        weight: Weight,
        anchor_line: usize,
        pos: Pos,
    ) -> Result<(), YamlError> {
        self.count(weight, pos).map_err(|mut e| {
            e.message = format!(
                "{}: an alias here repeats the anchor at line {anchor_line}",
                e.message
            );
            e
        })
    }

    fn open(&mut self, open: Open, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(
                pos,
                &format!("nesting is deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.count(Weight { nodes: 1, bytes: 0 }, pos)?;
        self.stack.push(open);
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let node = match self.stack.pop() {
            Some(Open::Seq(mut node, items, anchor)) => {
                node.value = NodeValue::Seq(items);
                self.remember(anchor, &node);
                node
            }
            Some(Open::Map(mut node, entries, _, anchor, _)) => {
                node.value = NodeValue::Map(entries);
                self.remember(anchor, &node);
                node
            }
            None => return Ok(()),
        };
        self.push_value(node)
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), weigh(node)));
        }
    }

    /// Places a finished value into its parent: a list item, a mapping key or a mapping value.
    fn push_value(&mut self, node: Node) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq, items, _)) => {
                // A block list's start event comes late; its first item says where it begins.
                if items.is_empty() {
                    seq.pos = seq.pos.min(node.pos);
                }
                items.push(node);
            }
            Some(Open::Map(map, entries, pending, _, merged)) => match pending.take() {
                None => {
                    if entries.is_empty() {
                        map.pos = map.pos.min(node.pos);
                    }
                    *pending = Some(key_of(node)?);
                }
                Some(key) if key.name == "<<" => merged.extend(merge(entries, key, node)?),
                Some(key) => {
                    // A key written by hand wins over one merged in by `<<`, whatever the order.
                    if let Some(at) = merged.iter().position(|m| *m == key.name) {
                        merged.remove(at);
                        entries.retain(|(k, _)| k.name != key.name);
                    }
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                        return Err(err(
                            key.pos,
                            &format!(
                                "duplicate key `{}` (first defined at line {})",
                                key.name, first.pos.line
                            ),
                        ));
                    }
                    entries.push((key, node));
                }
            },
        }
        Ok(())
    }
}

/// Applies a YAML merge key (`<<: *defaults` or `<<: [*a, *b]`): keys already present win.
/// Returns the names it added, so keys written after the merge can still replace them.
fn merge(entries: &mut Vec<(Key, Node)>, key: Key, node: Node) -> Result<Vec<String>, YamlError> {
    let sources = match node.value {
        NodeValue::Map(_) => vec![node],
        NodeValue::Seq(items) => items,
        _ => {
            return Err(err(
                key.pos,
                "`<<` merges mappings: its value must be a mapping or a list of mappings",
            ));
        }
    };
    let mut added = Vec::new();
    for source in sources {
        let NodeValue::Map(more) = source.value else {
            return Err(err(
                source.pos,
                "`<<` merges mappings: this item is not a mapping",
            ));
        };
        for (k, v) in more {
            if !entries.iter().any(|(existing, _)| existing.name == k.name) {
                added.push(k.name.clone());
                entries.push((k, v));
            }
        }
    }
    Ok(added)
}

fn key_of(node: Node) -> Result<Key, YamlError> {
    let name = match node.value {
        NodeValue::Str(s) => s,
        NodeValue::Null => "null".to_string(),
        NodeValue::Bool(b) => b.to_string(),
        NodeValue::Int(i) => i.to_string(),
        NodeValue::Float(f) => f.to_string(),
        NodeValue::Seq(_) | NodeValue::Map(_) => {
            return Err(err(
                node.pos,
                "mapping keys must be plain values, not lists or mappings",
            ));
        }
    };
    Ok(Key {
        name,
        pos: node.pos,
    })
}

fn placeholder(pos: Pos) -> Node {
    Node {
        value: NodeValue::Null,
        pos,
    }
}

fn weigh(node: &Node) -> Weight {
    let mut weight = Weight { nodes: 1, bytes: 0 };
    match &node.value {
        NodeValue::Seq(items) => items.iter().map(weigh).for_each(|w| weight.add(w)),
        NodeValue::Map(entries) => {
            for (key, value) in entries {
                weight.bytes += key.name.len();
                weight.add(weigh(value));
            }
        }
        NodeValue::Str(text) => weight.bytes = text.len(),
        NodeValue::Null | NodeValue::Bool(_) | NodeValue::Int(_) | NodeValue::Float(_) => {
            weight.bytes = 8
        }
    }
    weight
}

impl Weight {
    fn add(&mut self, other: Weight) {
        self.nodes += other.nodes;
        self.bytes += other.bytes;
    }
}

fn err(pos: Pos, message: &str) -> YamlError {
    YamlError {
        pos,
        message: message.to_string(),
    }
}

/// Types a scalar by the YAML 1.2 core schema: only plain (unquoted) scalars can be
/// null, booleans or numbers, so `on:` and `yes` stay strings, unlike YAML 1.1.
fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> NodeValue {
    if let Some(tag) = tag {
        match tag.suffix.as_str() {
            "str" => return NodeValue::Str(text),
            "int" | "float" | "bool" | "null" => {}
            _ => return NodeValue::Str(text),
        }
    }
    if style != TScalarStyle::Plain {
        return NodeValue::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    parse_int(&text)
        .map(NodeValue::Int)
        .or_else(|| parse_float(&text).map(NodeValue::Float))
        .unwrap_or(NodeValue::Str(text))
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_float(text: &str) -> Option<f64> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let looks_numeric = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Node {
        parse(src).expect("valid YAML")
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let node = parse_ok("id: x\nsteps:\n  - id: a\n    map: {b: 1}\n");
        let steps = node.get("steps").unwrap();
        assert_eq!(steps.pos, Pos { line: 3, column: 3 });
        let NodeValue::Seq(items) = &steps.value else {
            panic!("list")
        };
        assert_eq!(items[0].key_pos("map"), Some(Pos { line: 4, column: 5 }));
        assert_eq!(
            items[0].get("map").unwrap().get("b").unwrap().value,
            NodeValue::Int(1)
        );
    }

    #[test]
    fn types_scalars_by_the_core_schema() {
        let node = parse_ok(
            "a: on\nb: yes\nc: 'true'\nd: true\ne: 1.5\nf: ~\ng: '42'\nh: 0x1f\ni: 1e3\nj: 1.2.3\n",
        );
        let get = |k| node.get(k).unwrap().value.clone();
        assert_eq!(get("a"), NodeValue::Str("on".into()));
        assert_eq!(get("b"), NodeValue::Str("yes".into()));
        assert_eq!(get("c"), NodeValue::Str("true".into()));
        assert_eq!(get("d"), NodeValue::Bool(true));
        assert_eq!(get("e"), NodeValue::Float(1.5));
        assert_eq!(get("f"), NodeValue::Null);
        assert_eq!(get("g"), NodeValue::Str("42".into()));
        assert_eq!(get("h"), NodeValue::Int(31));
        assert_eq!(get("i"), NodeValue::Float(1000.0));
        assert_eq!(get("j"), NodeValue::Str("1.2.3".into()));
    }

    #[test]
    fn rejects_duplicate_keys_with_both_lines() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, column: 1 });
        assert!(
            e.message
                .contains("duplicate key `a` (first defined at line 1)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn expands_aliases_and_merge_keys() {
        let node = parse_ok(
            "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\ncopy: *b\nfirst:\n  y: 4\n  <<: *b\n",
        );
        let first = node.get("first").unwrap();
        assert_eq!(first.get("y").unwrap().value, NodeValue::Int(4));
        assert_eq!(first.get("x").unwrap().value, NodeValue::Int(1));
        assert_eq!(
            node.get("copy").unwrap().get("x").unwrap().value,
            NodeValue::Int(1)
        );
        let other = node.get("other").unwrap();
        assert_eq!(other.get("x").unwrap().value, NodeValue::Int(1));
        assert_eq!(other.get("y").unwrap().value, NodeValue::Int(3));
    }

    #[test]
    fn stops_alias_bombs() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{}", e.message);
    }

    #[test]
    fn stops_deep_nesting_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("deeper than 64"), "{}", e.message);
        let deep_block: String = (0..200)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect();
        assert!(parse(&deep_block).unwrap_err().message.contains("deeper"));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        let e = parse("a: b: c\n").unwrap_err();
        assert_eq!(e.pos.line, 1);
    }

    #[test]
    fn rejects_a_second_document() {
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("second"), "{}", e.message);
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse_ok("").value, NodeValue::Null);
        assert_eq!(parse_ok("# only a comment\n").value, NodeValue::Null);
    }

    #[test]
    fn converts_to_json() {
        let node = parse_ok("a: [1, 'b', null, {c: true}]\nbig: .inf\n");
        assert_eq!(
            node.to_json(),
            serde_json::json!({"a": [1, "b", null, {"c": true}], "big": null})
        );
    }
}
