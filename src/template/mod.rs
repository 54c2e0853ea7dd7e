//! Handlebars templates inside flow definitions: compiled once per flow
//! revision, rendered against a JSON context many times per second.
//!
//! The handlebars crate is used only as a parser. Its renderer clones the
//! context on every call and turns arrays and objects into unusable text, so
//! the parsed template is converted into the small AST below and evaluated
//! by our own renderer, which borrows the context. Two product rules shape
//! the design: a template that is exactly one expression (`"{{steps.contact}}"`)
//! yields the typed JSON value instead of text, and rendering is total —
//! missing data and wrongly typed helper arguments produce `null` or empty
//! text, never an error, because by then the flow is already running.
//! Everything that can be wrong with a template (syntax, unknown helpers,
//! arity, unsupported constructs, hostile nesting) is reported at compile
//! time with a line and column.

mod build;
mod helpers;
mod render;
mod scan;

use std::fmt;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use helpers::is_truthy;

use helpers::HelperSpec;

/// Blocks and subexpressions together may nest this deep. Real templates
/// stay far below it; the limit exists so that hostile input cannot exhaust
/// the stack in the parser or the renderer.
pub const MAX_NESTING: usize = 64;

/// What a secret (or anything derived from one) is shown as.
pub const MASK: &str = "***";

/// Every helper name, inline and block, for documentation and suggestions.
pub const HELPERS: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "in",
    "len",
    "lowercase",
    "uppercase",
    "trim",
    "default",
    "concat",
    "replace",
    "split",
    "join",
    "json",
    "number",
    "date_format",
    "base64",
    "url_encode",
    "sha256",
    "if",
    "unless",
    "each",
    "with",
];

/// A compile error with a 1-based position inside the template source
/// (the column counts characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// A compiled template. Cloning is cheap: the compiled form is shared.
#[derive(Clone)]
pub struct Template {
    inner: Arc<Compiled>,
}

struct Compiled {
    source: Box<str>,
    body: Body,
    /// Whether rendering reads `secrets` (or the whole context): what it yields is secret.
    reads_secrets: bool,
}

#[derive(Debug)]
enum Body {
    /// No `{{` at all: rendering returns the source without evaluation.
    Literal,
    /// Exactly one expression: rendering yields its JSON value.
    Typed(Expr),
    Text(Vec<Node>),
}

#[derive(Debug)]
enum Node {
    Text(Box<str>),
    Value(Expr),
    Block(Box<Chain>),
}

/// A block with its `{{else ...}}` chain flattened into a list, so that a
/// long `else if` chain costs no nesting depth.
#[derive(Debug)]
struct Chain {
    links: Vec<Link>,
    otherwise: Vec<Node>,
}

#[derive(Debug)]
struct Link {
    kind: BlockKind,
    subject: Expr,
    body: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    If,
    Unless,
    Each,
    With,
}

impl BlockKind {
    fn from_name(name: &str) -> Option<BlockKind> {
        match name {
            "if" => Some(BlockKind::If),
            "unless" => Some(BlockKind::Unless),
            "each" => Some(BlockKind::Each),
            "with" => Some(BlockKind::With),
            _ => None,
        }
    }

    /// `each` and `with` give their body a new `this`; `if` and `unless`
    /// do not, so `../` skips them (as in Handlebars.js).
    fn changes_scope(self) -> bool {
        matches!(self, BlockKind::Each | BlockKind::With)
    }
}

#[derive(Debug)]
enum Expr {
    Literal(Value),
    Path(Path),
    Local {
        up: usize,
        var: LocalVar,
    },
    Call {
        helper: &'static HelperSpec,
        args: Vec<Expr>,
    },
}

#[derive(Debug)]
struct Path {
    base: Base,
    segments: Box<[Segment]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// The current scope, or an outer one for each `../`.
    Scope {
        up: usize,
    },
    Root,
}

#[derive(Debug)]
struct Segment {
    key: Box<str>,
    /// Pre-parsed so that array indexing does not parse on every render.
    index: Option<usize>,
}

/// The `@` variables of `#each`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalVar {
    Index,
    Key,
    First,
    Last,
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let body = if source.contains("{{") {
            build::compile(source)?
        } else {
            Body::Literal
        };
        let reads_secrets = body_paths(&body)
            .iter()
            .any(|path| path.first().is_none_or(|root| root == SECRETS_ROOT));
        Ok(Template {
            inner: Arc::new(Compiled {
                source: source.into(),
                body,
                reads_secrets,
            }),
        })
    }

    /// True when the template reads `secrets.*` (or the whole context, as `{{json this}}` at the
    /// top does): whatever helpers did to it, what it renders is a secret.
    pub fn reads_secrets(&self) -> bool {
        self.inner.reads_secrets
    }

    /// The names of the secrets the template reads by name (`secrets.NAME`), in order of use.
    pub fn secret_names(&self) -> Vec<String> {
        self.references()
            .into_iter()
            .filter(|path| path.first().is_some_and(|root| root == SECRETS_ROOT))
            .filter_map(|path| path.get(1).cloned())
            .fold(Vec::new(), |mut names, name| {
                if !names.contains(&name) {
                    names.push(name);
                }
                names
            })
    }

    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// True when the source contains no `{{`, so it renders as itself.
    pub fn is_literal(&self) -> bool {
        matches!(self.inner.body, Body::Literal)
    }

    /// True when the template is a single expression and therefore renders
    /// to a typed JSON value rather than text.
    pub fn is_typed(&self) -> bool {
        matches!(self.inner.body, Body::Typed(_))
    }

    /// Context-rooted paths the template reads, in order of first use and
    /// without duplicates. Paths relative to an `#each`/`#with` scope are
    /// left out (they do not name context data); `@root.x` is reported as
    /// `["x"]`, and `../x` counts when it climbs back to the root scope.
    /// A bare `{{this}}` at the root names no path and is left out too.
    pub fn references(&self) -> Vec<Vec<String>> {
        let mut out = body_paths(&self.inner.body);
        out.retain(|path| !path.is_empty());
        out
    }

    /// Renders with the typed rule: a single-expression template yields the
    /// expression's JSON value, any other template yields a string.
    pub fn render(&self, ctx: &Value) -> Value {
        match &self.inner.body {
            Body::Literal => Value::String(self.inner.source.to_string()),
            Body::Typed(expr) => render::evaluate(expr, ctx),
            Body::Text(nodes) => Value::String(render::render_text(nodes, ctx, self.size_hint())),
        }
    }

    /// Renders as text, whatever the shape of the template.
    pub fn render_text(&self, ctx: &Value) -> String {
        let mut out = String::with_capacity(self.size_hint());
        self.render_text_into(ctx, &mut out);
        out
    }

    /// Appends the text rendering to `out`, for callers that assemble a
    /// larger string and want to avoid an intermediate allocation.
    pub fn render_text_into(&self, ctx: &Value, out: &mut String) {
        match &self.inner.body {
            Body::Literal => out.push_str(&self.inner.source),
            Body::Typed(expr) => render::write_expression(expr, ctx, out),
            Body::Text(nodes) => render::write_nodes(nodes, ctx, out),
        }
    }

    /// What each part of the template that reads `secrets` renders, alone: every top-level
    /// expression or block that reads them (the whole rendering for a lone expression). Where a
    /// person reads the text (a notification), these are masked and the words around them stay.
    pub fn secret_parts(&self, ctx: &Value) -> Vec<String> {
        if !self.reads_secrets() {
            return Vec::new();
        }
        match &self.inner.body {
            Body::Literal => Vec::new(),
            Body::Typed(_) => vec![self.render_text(ctx)],
            Body::Text(nodes) => nodes
                .iter()
                .filter(|node| node_reads_secrets(node))
                .map(|node| {
                    let mut out = String::new();
                    render::write_nodes(std::slice::from_ref(node), ctx, &mut out);
                    out
                })
                .collect(),
        }
    }

    fn size_hint(&self) -> usize {
        self.inner.source.len()
    }
}

/// Whether a node reads `secrets` (or the whole context).
fn node_reads_secrets(node: &Node) -> bool {
    let mut paths = Vec::new();
    node_references(std::slice::from_ref(node), 0, &mut paths);
    paths
        .iter()
        .any(|path| path.first().is_none_or(|root| root == SECRETS_ROOT))
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.inner.source).finish()
    }
}

/// The root of the context that holds the secrets.
const SECRETS_ROOT: &str = "secrets";

/// Context-rooted paths a body reads, a bare root (`{{this}}` at the top) as an empty path.
fn body_paths(body: &Body) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    match body {
        Body::Literal => {}
        Body::Typed(expr) => expr_references(expr, 0, &mut out),
        Body::Text(nodes) => node_references(nodes, 0, &mut out),
    }
    out
}

fn push_reference(path: &Path, scope_depth: usize, out: &mut Vec<Vec<String>>) {
    let rooted = match path.base {
        Base::Root => true,
        Base::Scope { up } => up >= scope_depth,
    };
    if !rooted {
        return;
    }
    let names: Vec<String> = path.segments.iter().map(|s| s.key.to_string()).collect();
    if !out.contains(&names) {
        out.push(names);
    }
}

fn expr_references(expr: &Expr, scope_depth: usize, out: &mut Vec<Vec<String>>) {
    match expr {
        Expr::Path(path) => push_reference(path, scope_depth, out),
        Expr::Call { args, .. } => {
            for arg in args {
                expr_references(arg, scope_depth, out);
            }
        }
        Expr::Literal(_) | Expr::Local { .. } => {}
    }
}

fn node_references(nodes: &[Node], scope_depth: usize, out: &mut Vec<Vec<String>>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Value(expr) => expr_references(expr, scope_depth, out),
            Node::Block(chain) => {
                for link in &chain.links {
                    expr_references(&link.subject, scope_depth, out);
                    let inner = scope_depth + usize::from(link.kind.changes_scope());
                    node_references(&link.body, inner, out);
                }
                node_references(&chain.otherwise, scope_depth, out);
            }
        }
    }
}

/// A mapping value (any JSON tree) whose strings are templates, compiled
/// once. Object keys are taken literally. Subtrees without templates are
/// kept as plain JSON and cloned on render.
#[derive(Debug, Clone)]
pub struct CompiledValue {
    root: Arc<Shape>,
}

#[derive(Debug)]
enum Shape {
    Static(Value),
    Template(Template),
    Array(Vec<Shape>),
    Object(Vec<(String, Shape)>),
}

/// Errors from [`CompiledValue::compile`], each with the JSON-pointer-like
/// location of the offending string (`""` for the root, `"/tags/1"`).
pub type ValueErrors = Vec<(String, TemplateError)>;

impl CompiledValue {
    /// Compiles every template string in the tree and reports all errors,
    /// not just the first, so a flow author sees every problem at once.
    pub fn compile(value: &Value) -> Result<CompiledValue, ValueErrors> {
        let mut errors = Vec::new();
        let mut pointer = String::new();
        let root = compile_shape(value, &mut pointer, &mut errors);
        if errors.is_empty() {
            Ok(CompiledValue {
                root: Arc::new(root),
            })
        } else {
            Err(errors)
        }
    }

    pub fn render(&self, ctx: &Value) -> Value {
        render_shape(&self.root, ctx)
    }

    /// Whether any template in the tree reads secrets.
    pub fn reads_secrets(&self) -> bool {
        shape_reads_secrets(&self.root)
    }

    /// `rendered` (what [`CompiledValue::render`] made) with every part rendered by a template
    /// that reads secrets replaced by `mask`: the form to store and show.
    pub fn mask(&self, rendered: &Value, mask: &str) -> Value {
        mask_shape(&self.root, rendered, mask)
    }

    /// The strings of `rendered` that templates reading secrets produced, for redaction.
    pub fn secret_strings(&self, rendered: &Value) -> Vec<String> {
        let mut out = Vec::new();
        collect_secret_strings(&self.root, rendered, &mut out);
        out
    }

    /// Union of the references of all templates in the tree, deduplicated.
    pub fn references(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        shape_references(&self.root, &mut out);
        out
    }
}

fn shape_reads_secrets(shape: &Shape) -> bool {
    match shape {
        Shape::Static(_) => false,
        Shape::Template(t) => t.reads_secrets(),
        Shape::Array(items) => items.iter().any(shape_reads_secrets),
        Shape::Object(fields) => fields.iter().any(|(_, s)| shape_reads_secrets(s)),
    }
}

/// Walks the compiled shape and its rendering together (they have the same structure: keys are
/// literal, arrays keep their length), masking what secret-reading templates made.
fn mask_shape(shape: &Shape, rendered: &Value, mask: &str) -> Value {
    match (shape, rendered) {
        (Shape::Template(t), _) if t.reads_secrets() => mask_leaves(rendered, mask),
        (Shape::Array(items), Value::Array(values)) => Value::Array(
            items
                .iter()
                .zip(values)
                .map(|(s, v)| mask_shape(s, v, mask))
                .collect(),
        ),
        (Shape::Object(fields), Value::Object(values)) => Value::Object(
            values
                .iter()
                .map(|(key, value)| {
                    let masked = match fields.iter().find(|(k, _)| k == key) {
                        Some((_, s)) => mask_shape(s, value, mask),
                        None => value.clone(),
                    };
                    (key.clone(), masked)
                })
                .collect(),
        ),
        _ => rendered.clone(),
    }
}

/// Every scalar of a secret value becomes the mask; its shape (lists, keys) stays.
fn mask_leaves(value: &Value, mask: &str) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Array(items) => Value::Array(items.iter().map(|v| mask_leaves(v, mask)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), mask_leaves(v, mask)))
                .collect(),
        ),
        _ => Value::String(mask.to_string()),
    }
}

fn collect_secret_strings(shape: &Shape, rendered: &Value, out: &mut Vec<String>) {
    match (shape, rendered) {
        (Shape::Template(t), _) if t.reads_secrets() => string_leaves(rendered, out),
        (Shape::Array(items), Value::Array(values)) => {
            for (s, v) in items.iter().zip(values) {
                collect_secret_strings(s, v, out);
            }
        }
        (Shape::Object(fields), Value::Object(values)) => {
            for (key, s) in fields {
                if let Some(v) = values.get(key) {
                    collect_secret_strings(s, v, out);
                }
            }
        }
        _ => {}
    }
}

/// Every string and number inside a value, as text.
pub fn string_leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| string_leaves(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| string_leaves(v, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

fn contains_template(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("{{"),
        Value::Array(items) => items.iter().any(contains_template),
        Value::Object(map) => map.values().any(contains_template),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Appends one JSON-pointer token (RFC 6901 escaping) and returns the length
/// to truncate back to, so one buffer serves the whole walk.
fn push_pointer(pointer: &mut String, token: &str) -> usize {
    let before = pointer.len();
    pointer.push('/');
    pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
    before
}

fn compile_shape(value: &Value, pointer: &mut String, errors: &mut ValueErrors) -> Shape {
    if !contains_template(value) {
        return Shape::Static(value.clone());
    }
    match value {
        Value::String(s) => match Template::compile(s) {
            Ok(t) => Shape::Template(t),
            Err(e) => {
                errors.push((pointer.clone(), e));
                Shape::Static(Value::Null)
            }
        },
        Value::Array(items) => {
            let mut shapes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let before = push_pointer(pointer, &i.to_string());
                shapes.push(compile_shape(item, pointer, errors));
                pointer.truncate(before);
            }
            Shape::Array(shapes)
        }
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, item) in map {
                let before = push_pointer(pointer, key);
                fields.push((key.clone(), compile_shape(item, pointer, errors)));
                pointer.truncate(before);
            }
            Shape::Object(fields)
        }
        // contains_template() is false for scalars, handled above.
        other => Shape::Static(other.clone()),
    }
}

fn render_shape(shape: &Shape, ctx: &Value) -> Value {
    match shape {
        Shape::Static(v) => v.clone(),
        Shape::Template(t) => t.render(ctx),
        Shape::Array(items) => Value::Array(items.iter().map(|s| render_shape(s, ctx)).collect()),
        Shape::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, s)| (k.clone(), render_shape(s, ctx)))
                .collect(),
        ),
    }
}

fn shape_references(shape: &Shape, out: &mut Vec<Vec<String>>) {
    match shape {
        Shape::Static(_) => {}
        Shape::Template(t) => {
            for path in t.references() {
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
        Shape::Array(items) => items.iter().for_each(|s| shape_references(s, out)),
        Shape::Object(fields) => fields.iter().for_each(|(_, s)| shape_references(s, out)),
    }
}

/// A string that may hold Handlebars templates; compiled when a flow revision is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateStr(pub String);

impl TemplateStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for TemplateStr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "Text with Handlebars templates, e.g. `{{entity.email}}`."})
    }
}

/// Compiles a template, turning an error into text (for compiling definitions that passed
/// validation, where an error can only mean a stored definition was tampered with).
/// One template or a list of them: a signing secret during a key rotation, when the old and the
/// new key both sign (or are both accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TemplateList {
    One(TemplateStr),
    Many(Vec<TemplateStr>),
}

impl TemplateList {
    pub fn items(&self) -> &[TemplateStr] {
        match self {
            TemplateList::One(one) => std::slice::from_ref(one),
            TemplateList::Many(many) => many,
        }
    }

    /// Each template compiled.
    pub fn compile(&self) -> Result<Vec<Template>, String> {
        self.items()
            .iter()
            .map(|t| compile_text(t.as_str()))
            .collect()
    }
}

pub fn compile_text(source: &str) -> Result<Template, String> {
    Template::compile(source).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "entity": {
                "id": 42,
                "price": "19.50",
                "active": true,
                "email": "Ann@Example.com",
                "tags": ["a", "b", "c"],
                "deleted_at": null,
                "weird key": "w",
                "counts": {"x": 1, "y": 2},
            },
            "steps": {
                "contact": {"full_name": "Ann Lee", "id": "c-1"},
                "empty": [],
            },
            "evil": "{{entity.id}} \"quoted\" 'single'\nline2 ünïcödé 🎉 \\{{x}}",
            "items": [
                {"name": "x", "qty": 1},
                {"name": "y", "qty": 0},
            ],
        })
    }

    fn render(source: &str) -> Value {
        Template::compile(source)
            .unwrap_or_else(|e| panic!("{source:?} failed: {e:?}"))
            .render(&ctx())
    }

    fn text(source: &str) -> String {
        Template::compile(source)
            .unwrap_or_else(|e| panic!("{source:?} failed: {e:?}"))
            .render_text(&ctx())
    }

    fn compile_error(source: &str) -> TemplateError {
        match Template::compile(source) {
            Ok(t) => panic!("{source:?} should not compile: {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn single_expression_keeps_its_json_type() {
        assert_eq!(render("{{entity.id}}"), json!(42));
        assert_eq!(render("{{ entity.active }}"), json!(true));
        assert_eq!(
            render("{{steps.contact}}"),
            json!({"full_name": "Ann Lee", "id": "c-1"})
        );
        assert_eq!(render("{{entity.tags}}"), json!(["a", "b", "c"]));
        assert_eq!(render("{{entity.deleted_at}}"), json!(null));
        assert_eq!(render("{{entity.missing.deeper}}"), json!(null));
        assert_eq!(render("{{{entity.id}}}"), json!(42));
        assert_eq!(render("{{~ entity.id ~}}"), json!(42));
        assert_eq!(render("{{number entity.price}}"), json!(19.5));
        assert_eq!(render("{{(len entity.tags)}}"), json!(3));
        assert_eq!(render("{{eq entity.id '42'}}"), json!(true));
        assert_eq!(render("{{split 'a,b' ','}}"), json!(["a", "b"]));
        assert_eq!(render("{{7}}"), json!(7));
        assert_eq!(render("{{null}}"), json!(null));
        assert!(Template::compile("{{x}}").is_ok_and(|t| t.is_typed()));
    }

    #[test]
    fn anything_else_renders_as_text() {
        assert_eq!(render(" {{entity.id}}"), json!(" 42"));
        assert_eq!(render("{{entity.id}}\n"), json!("42\n"));
        assert_eq!(render("{{entity.id}}{{entity.id}}"), json!("4242"));
        assert_eq!(
            render("{{#if entity.active}}{{entity.id}}{{/if}}"),
            json!("42")
        );
        assert_eq!(render("{{! note }}{{entity.id}}"), json!("42"));
        assert_eq!(render("plain text"), json!("plain text"));
        assert_eq!(render(""), json!(""));
    }

    #[test]
    fn text_form_of_values() {
        assert_eq!(
            text(
                "{{entity.id}}|{{entity.active}}|{{entity.deleted_at}}|{{entity.nope}}|{{entity.email}}"
            ),
            "42|true|||Ann@Example.com"
        );
        assert_eq!(text("tags={{entity.tags}}"), r#"tags=["a","b","c"]"#);
        assert_eq!(
            text("{{steps.contact}}"),
            r#"{"full_name":"Ann Lee","id":"c-1"}"#
        );
        assert_eq!(text("{{entity.price}}"), "19.50");
        let mut out = String::from(">");
        Template::compile("{{entity.id}}!")
            .expect("compiles")
            .render_text_into(&ctx(), &mut out);
        assert_eq!(out, ">42!");
    }

    #[test]
    fn literal_sources_take_the_fast_path() {
        let t = Template::compile("no braces { here } at all").expect("compiles");
        assert!(t.is_literal());
        assert_eq!(t.render(&json!(null)), json!("no braces { here } at all"));
        assert_eq!(t.references(), Vec::<Vec<String>>::new());
        assert!(!Template::compile("{{x}}").expect("compiles").is_literal());
        assert_eq!(t.source(), "no braces { here } at all");
    }

    #[test]
    fn paths_and_literals() {
        assert_eq!(render("{{entity.[weird key]}}"), json!("w"));
        assert_eq!(render("{{entity.tags.0}}"), json!("a"));
        assert_eq!(render("{{entity.tags.[2]}}"), json!("c"));
        assert_eq!(render("{{entity.tags.9}}"), json!(null));
        assert_eq!(render("{{entity.tags.x}}"), json!(null));
        assert_eq!(render("{{entity/id}}"), json!(42));
        assert_eq!(render("{{this.entity.id}}"), json!(42));
        assert_eq!(render("{{@root.entity.id}}"), json!(42));
        assert_eq!(render("{{entity.id.deeper}}"), json!(null));
        assert_eq!(
            render("{{concat 'it''s' \"a \\\"b\\\"\" -1.5 true null}}"),
            json!("itsa \"b\"-1.5true")
        );
        assert_eq!(render("{{concat 'it\\'s'}}"), json!("it's"));
        let whole = Template::compile("{{this}}").expect("compiles");
        assert_eq!(whole.render(&json!({"a": 1})), json!({"a": 1}));
        assert_eq!(
            Template::compile("{{@root}}")
                .expect("compiles")
                .render(&json!([1])),
            json!([1])
        );
    }

    #[test]
    fn context_values_are_never_reevaluated() {
        let evil = ctx()["evil"].clone();
        assert_eq!(render("{{evil}}"), evil);
        let expected = format!("<{}>", evil.as_str().expect("string"));
        assert_eq!(text("<{{evil}}>"), expected);
        assert_eq!(
            text("{{uppercase evil}}"),
            expected[1..expected.len() - 1].to_uppercase()
        );
        assert_eq!(
            render("{{json evil}}"),
            json!(serde_json::to_string(&evil).expect("json"))
        );
    }

    #[test]
    fn source_text_passes_through() {
        let source = "Grüße \"{{entity.id}}\" 'x'\n\ttab 🎉 { } }} \\{{escaped}}";
        assert_eq!(
            text(source),
            "Grüße \"42\" 'x'\n\ttab 🎉 { } }} {{escaped}}"
        );
        assert_eq!(text("{{concat '{{'}}x}}"), "{{x}}");
    }

    #[test]
    fn if_unless_and_else_chains() {
        assert_eq!(text("{{#if entity.active}}yes{{else}}no{{/if}}"), "yes");
        assert_eq!(text("{{#if entity.deleted_at}}yes{{else}}no{{/if}}"), "no");
        assert_eq!(text("{{#if steps.empty}}yes{{^}}no{{/if}}"), "no");
        assert_eq!(text("{{#if (eq entity.id 42)}}42{{/if}}"), "42");
        assert_eq!(
            text("{{#unless entity.missing}}absent{{else}}present{{/unless}}"),
            "absent"
        );
        let chain = "{{#if (gt entity.id 100)}}big{{else if (gt entity.id 10)}}mid{{else unless entity.active}}off{{else}}small{{/if}}";
        assert_eq!(text(chain), "mid");
        let long_chain = format!(
            "{{{{#if a}}}}a{}{{{{else}}}}none{{{{/if}}}}",
            (0..100)
                .map(|i| format!("{{{{else if x{i}}}}}{i}"))
                .collect::<String>()
        );
        assert_eq!(text(&long_chain), "none");
        assert_eq!(
            text("{{#if x}}1{{else}}{{#if entity.id}}2{{else}}3{{/if}}{{/if}}"),
            "2"
        );
        assert_eq!(text("{{#if 'false'}}t{{else}}f{{/if}}"), "f");
        assert_eq!(text("{{#if entity.counts}}t{{/if}}"), "t");
    }

    #[test]
    fn each_over_arrays_and_objects() {
        assert_eq!(
            text(
                "{{#each entity.tags}}{{@index}}:{{this}}{{#if @first}}(first){{/if}}{{#if @last}}(last){{/if}};{{/each}}"
            ),
            "0:a(first);1:b;2:c(last);"
        );
        assert_eq!(
            text("{{#each entity.counts}}{{@key}}={{this}}@{{@index}} {{/each}}"),
            "x=1@0 y=2@1 "
        );
        assert_eq!(
            text(
                "{{#each items}}{{name}}x{{qty}} of {{../entity.id}}/{{@root.entity.id}}; {{/each}}"
            ),
            "xx1 of 42/42; yx0 of 42/42; "
        );
        assert_eq!(text("{{#each entity.tags}}{{@key}}{{/each}}"), "012");
        assert_eq!(
            text("{{#each steps.empty}}x{{else}}empty{{/each}}"),
            "empty"
        );
        assert_eq!(
            text("{{#each entity.missing}}x{{else}}none{{/each}}"),
            "none"
        );
        assert_eq!(
            text("{{#each entity.id}}x{{else}}scalar{{/each}}"),
            "scalar"
        );
        assert_eq!(
            text(
                "{{#each items}}{{#each ../entity.tags}}{{@../index}}{{@index}}{{this}} {{/each}}{{/each}}"
            ),
            "00a 01b 02c 10a 11b 12c "
        );
        assert_eq!(
            text("{{#each (split 'p,q' ',')}}[{{this}}]{{/each}}"),
            "[p][q]"
        );
        assert_eq!(
            text("{{#each items}}{{#if qty}}{{../../entity.id}}{{/if}}{{/each}}"),
            "42"
        );
        assert_eq!(text("{{@index}}{{@first}}"), "");
    }

    #[test]
    fn with_changes_scope() {
        assert_eq!(
            text("{{#with steps.contact}}{{full_name}} ({{../entity.id}}){{/with}}"),
            "Ann Lee (42)"
        );
        assert_eq!(
            text("{{#with entity.missing}}x{{else}}no contact{{/with}}"),
            "no contact"
        );
        assert_eq!(text("{{#with 0}}[{{this}}]{{/with}}"), "[0]");
        assert_eq!(text("{{#with ''}}x{{else}}empty{{/with}}"), "empty");
        assert_eq!(
            text("{{#each items}}{{#with this}}{{@index}}{{name}}{{/with}}{{/each}}"),
            "0x1y"
        );
    }

    #[test]
    fn standalone_block_lines_are_trimmed_like_handlebars() {
        let source = "list:\n{{#each entity.tags}}\n- {{this}}\n{{/each}}\nend";
        assert_eq!(text(source), "list:\n- a\n- b\n- c\nend");
    }

    #[test]
    fn helpers_compose_in_templates() {
        assert_eq!(
            render("{{lowercase (concat entity.email '!')}}"),
            json!("ann@example.com!")
        );
        assert_eq!(render("{{default entity.missing 'n/a'}}"), json!("n/a"));
        assert_eq!(render("{{join (split 'a b c' ' ') '-'}}"), json!("a-b-c"));
        assert_eq!(
            render("{{and entity.active (not entity.deleted_at)}}"),
            json!(true)
        );
        assert_eq!(
            render("{{sha256 (base64 'x')}}").as_str().map(str::len),
            Some(64)
        );
        assert_eq!(
            render("{{url_encode (date_format 0 '%Y-%m-%d %H:%M')}}"),
            json!("1970-01-01%2000%3A00")
        );
        assert_eq!(render("{{len entity.missing}}"), json!(0));
        assert_eq!(render("{{number entity.email}}"), json!(null));
        assert_eq!(
            text("{{#if (or (lt entity.id 0) (gte entity.id 42))}}in{{/if}}"),
            "in"
        );
    }

    /// SPEC §2's helpers, copied from the SPEC by hand: the list flowd publishes and the helpers
    /// it knows must both be exactly these, so a helper lost or added shows up here.
    const SPEC_INLINE: [&str; 25] = [
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "and",
        "or",
        "not",
        "len",
        "lowercase",
        "uppercase",
        "trim",
        "default",
        "concat",
        "replace",
        "split",
        "join",
        "json",
        "number",
        "date_format",
        "base64",
        "url_encode",
        "sha256",
        "in",
    ];
    const SPEC_BLOCK: [&str; 4] = ["if", "unless", "each", "with"];

    #[test]
    fn the_helpers_are_the_specs() {
        let mut spec: Vec<&str> = SPEC_INLINE.iter().chain(&SPEC_BLOCK).copied().collect();
        spec.sort_unstable();
        let mut listed: Vec<&str> = HELPERS.to_vec();
        listed.sort_unstable();
        assert_eq!(listed, spec, "HELPERS differs from SPEC §2");
        let mut known: Vec<&str> = helpers::INLINE_HELPERS.iter().map(|h| h.name).collect();
        known.extend_from_slice(helpers::BLOCK_HELPERS);
        known.sort_unstable();
        assert_eq!(
            known, spec,
            "the helpers templates know differ from SPEC §2"
        );
        // And each one is accepted by the compiler, as a template would use it.
        for name in SPEC_INLINE {
            let source = format!("{{{{{name} entity.a entity.b}}}}");
            if let Err(e) = Template::compile(&source) {
                assert!(
                    !e.message.contains("unknown helper"),
                    "{source}: {}",
                    e.message
                );
            }
        }
        for name in SPEC_BLOCK {
            let source = format!("{{{{#{name} entity.a}}}}x{{{{/{name}}}}}");
            if let Err(e) = Template::compile(&source) {
                panic!("{source}: {}", e.message);
            }
        }
        assert!(
            compile_error("{{sha512 entity.a}}")
                .message
                .contains("unknown helper")
        );
    }

    #[test]
    fn syntax_errors_carry_positions() {
        let e = compile_error("line one\n  {{#if a}}x");
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("syntax error"), "{}", e.message);
        let e = compile_error("ab\n {{foo 1}");
        assert_eq!((e.line, e.column), (2, 9));
        let e = compile_error("x{{#if a}}y{{/each}}");
        assert_eq!((e.line, e.column), (1, 12));
        assert!(e.message.contains("\"if\""), "{}", e.message);
        let e = compile_error("{{");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn unknown_helpers_are_reported_with_a_suggestion() {
        let e = compile_error("Hello\n  {{lowrcase entity.email}}");
        assert_eq!(
            e.message,
            "unknown helper `lowrcase`, did you mean `lowercase`?"
        );
        assert_eq!((e.line, e.column), (2, 5));
        let e = compile_error("{{concat a (uppercas b)}}");
        assert_eq!(
            e.message,
            "unknown helper `uppercas`, did you mean `uppercase`?"
        );
        assert_eq!((e.line, e.column), (1, 13));
        let e = compile_error("{{#iff a}}x{{/iff}}");
        assert_eq!(e.message, "unknown helper `iff`, did you mean `if`?");
        assert_eq!(
            compile_error("{{frobnicate x}}").message,
            "unknown helper `frobnicate`"
        );
        assert_eq!(compile_error("{{(foo)}}").message, "unknown helper `foo`");
        let e = compile_error("{{#if a}}x{{else if b}}y{{else iff c}}z{{/if}}");
        assert_eq!(e.message, "unknown helper `iff`, did you mean `if`?");
        assert_eq!((e.line, e.column), (1, 32));
    }

    #[test]
    fn arity_and_misuse_are_compile_errors() {
        let e = compile_error("{{replace entity.email}}");
        assert_eq!(
            e.message,
            "helper `replace` expects 3 arguments ({{replace text from to}}), got 1"
        );
        assert!(
            compile_error("{{eq a b c}}")
                .message
                .contains("expects 2 arguments")
        );
        assert!(
            compile_error("{{(lowercase)}}")
                .message
                .contains("expects 1 argument")
        );
        assert!(
            compile_error("{{#each}}x{{/each}}")
                .message
                .contains("expects 1 argument")
        );
        assert!(
            compile_error("{{#if a b}}x{{/if}}")
                .message
                .contains("expects 1 argument")
        );
        assert!(compile_error("{{if a}}").message.contains("block helper"));
        assert!(
            compile_error("{{#lowercase a}}x{{/lowercase}}")
                .message
                .contains("not a block helper")
        );
        assert!(
            compile_error("{{lowercase a mode=1}}")
                .message
                .contains("hash arguments")
        );
        assert!(
            compile_error("{{#each xs as |x|}}{{x}}{{/each}}")
                .message
                .contains("block parameters")
        );
        assert!(
            compile_error("{{@foo}}")
                .message
                .contains("unknown variable `@foo`")
        );
        assert!(
            compile_error("{{concat [1, 2]}}")
                .message
                .contains("literals are not supported")
        );
        // A bare name is a path even when it matches a helper.
        assert_eq!(render("{{lowercase}}"), json!(null));
    }

    #[test]
    fn unsupported_constructs_are_rejected() {
        let e = compile_error("a\n{{> header}}");
        assert_eq!(
            (e.message.as_str(), e.line, e.column),
            ("partials are not supported", 2, 1)
        );
        assert!(
            compile_error("{{#> layout}}x{{/layout}}")
                .message
                .contains("partials")
        );
        assert!(
            compile_error("{{#*inline \"p\"}}x{{/inline}}")
                .message
                .contains("inline partials")
        );
        assert!(
            compile_error("{{*decorator}}")
                .message
                .contains("decorators")
        );
        assert!(
            compile_error("{{{{raw}}}}{{x}}{{{{/raw}}}}")
                .message
                .contains("raw blocks")
        );
        assert!(
            compile_error("{{concat {\"a\": 1}}}")
                .message
                .contains("object literals")
        );
        let e = compile_error("{{entity.id}} {{ '{{' }}");
        assert_eq!((e.line, e.column), (1, 15));
        assert!(e.message.contains("write `\\{{`"), "{}", e.message);
    }

    #[test]
    fn hostile_nesting_is_rejected_without_overflowing() {
        let deep_parens = format!(
            "{{{{concat {}x{}}}}}",
            "(concat ".repeat(100_000),
            ")".repeat(100_000)
        );
        let e = compile_error(&deep_parens);
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
        let deep_blocks = format!("{}{}", "{{#if a}}".repeat(10_000), "{{/if}}".repeat(10_000));
        assert!(
            compile_error(&deep_blocks)
                .message
                .contains("nested too deeply")
        );
        let deep_each = "{{#each a}}".repeat(65) + &"{{/each}}".repeat(65);
        let e = compile_error(&deep_each);
        assert_eq!((e.line, e.column), (1, 64 * 11 + 1));
        // Right at the limit it compiles and renders.
        let at_limit = format!("{}x{}", "{{#with this}}".repeat(64), "{{/with}}".repeat(64));
        assert_eq!(
            Template::compile(&at_limit)
                .expect("compiles")
                .render(&json!({})),
            json!("x")
        );
        let mixed = format!(
            "{}{{{{len {}x{}}}}}{}",
            "{{#if 1}}".repeat(32),
            "(len ".repeat(33),
            ")".repeat(33),
            "{{/if}}".repeat(32)
        );
        assert!(compile_error(&mixed).message.contains("nested too deeply"));
    }

    #[test]
    fn hostile_input_compiles_on_a_small_stack() {
        // Engines run templates on worker threads; keep well within their stacks.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let nested = format!("{}x{}", "{{#each a}}".repeat(64), "{{/each}}".repeat(64));
                let t = Template::compile(&nested).expect("compiles");
                let mut value = json!("leaf");
                for _ in 0..64 {
                    value = json!({"a": [value]});
                }
                let _ = t.render(&value);
                let parens = format!("{{{{len {}x{}}}}}", "(len ".repeat(63), ")".repeat(63));
                Template::compile(&parens).expect("compiles").render(&value)
            })
            .expect("spawn");
        assert_eq!(handle.join().expect("no overflow"), json!(null));
    }

    #[test]
    fn references_list_context_rooted_paths() {
        let t = Template::compile(
            "{{steps.contact.full_name}} {{lowercase entity.email}} {{#each entity.tags}}{{this}}{{name}}{{../steps.x}}{{@root.steps.y}}{{@index}}{{/each}}{{#if flag}}{{#with steps.contact}}{{id}}{{../../z}}{{/with}}{{/if}}{{entity.email}}{{this}}{{7}}",
        )
        .expect("compiles");
        let expected: Vec<Vec<String>> = vec![
            vec!["steps".into(), "contact".into(), "full_name".into()],
            vec!["entity".into(), "email".into()],
            vec!["entity".into(), "tags".into()],
            vec!["steps".into(), "x".into()],
            vec!["steps".into(), "y".into()],
            vec!["flag".into()],
            vec!["steps".into(), "contact".into()],
            vec!["z".into()],
        ];
        assert_eq!(t.references(), expected);
        assert_eq!(
            Template::compile("{{steps.contact}}")
                .expect("compiles")
                .references(),
            vec![vec!["steps".to_owned(), "contact".to_owned()]]
        );
    }

    #[test]
    fn compiled_values_render_recursively() {
        let mapping = json!({
            "id": "{{entity.id}}",
            "name": "Contact: {{steps.contact.full_name}}",
            "tags": ["static", "{{entity.tags}}", {"k{{x}}": "{{entity.active}}"}],
            "fixed": {"n": 1, "s": "plain"},
            "count": 3,
        });
        let compiled = CompiledValue::compile(&mapping).expect("compiles");
        assert_eq!(
            compiled.render(&ctx()),
            json!({
                "id": 42,
                "name": "Contact: Ann Lee",
                "tags": ["static", ["a", "b", "c"], {"k{{x}}": true}],
                "fixed": {"n": 1, "s": "plain"},
                "count": 3,
            })
        );
        assert_eq!(
            compiled.references(),
            vec![
                vec!["entity".to_owned(), "id".to_owned()],
                vec![
                    "steps".to_owned(),
                    "contact".to_owned(),
                    "full_name".to_owned()
                ],
                vec!["entity".to_owned(), "tags".to_owned()],
                vec!["entity".to_owned(), "active".to_owned()],
            ]
        );
        let plain = CompiledValue::compile(&json!("{{x}}")).expect("compiles");
        assert_eq!(plain.render(&json!({"x": [1]})), json!([1]));
    }

    #[test]
    fn templates_that_read_secrets_are_marked_whatever_the_helpers() {
        for source in [
            "{{secrets.TOKEN}}",
            "Bearer {{uppercase secrets.TOKEN}}",
            "{{split secrets.CSV ','}}",
            "{{json secrets}}",
            "{{base64 (concat 'u:' secrets.P)}}",
            "{{#with secrets}}{{TOKEN}}{{/with}}",
            "{{json this}}",
            "{{#each this}}{{this}}{{/each}}",
            "{{#each entity.tags}}{{@root.secrets.X}}{{/each}}",
        ] {
            let t = Template::compile(source).expect("compiles");
            assert!(t.reads_secrets(), "{source}");
        }
        for source in [
            "plain",
            "{{entity.id}}",
            "{{#each entity.tags}}{{this}}{{/each}}",
        ] {
            let t = Template::compile(source).expect("compiles");
            assert!(!t.reads_secrets(), "{source}");
        }
        let t = Template::compile("{{secrets.A}}{{concat secrets.B secrets.A}}{{json secrets}}")
            .expect("compiles");
        assert_eq!(t.secret_names(), ["A", "B"]);
    }

    /// The parts that read secrets, each rendered alone; the words around them are not secret.
    #[test]
    fn secret_parts_are_the_expressions_that_read_secrets() {
        let cx = json!({"secrets": {"T": "ab/cd"}, "entity": {"id": 7}});
        let parts = |source: &str| {
            Template::compile(source)
                .expect("compiles")
                .secret_parts(&cx)
        };
        assert_eq!(
            parts("Token {{uppercase secrets.T}} for {{entity.id}}: {{split secrets.T '/'}}"),
            ["AB/CD", "[\"ab\",\"cd\"]"]
        );
        assert_eq!(parts("{{base64 secrets.T}}"), ["YWIvY2Q="]);
        assert_eq!(parts("x {{#with secrets}}{{T}}{{/with}} y"), ["ab/cd"]);
        assert!(parts("Guest {{entity.id}}").is_empty());
    }

    #[test]
    fn compiled_values_mask_what_secret_templates_made() {
        let mapping = json!({
            "id": "{{entity.id}}",
            "token": "x-{{lowercase secrets.T}}",
            "parts": "{{split secrets.CSV ','}}",
            "list": ["{{entity.id}}", "{{secrets.T}}"],
            "fixed": "plain",
        });
        let compiled = CompiledValue::compile(&mapping).expect("compiles");
        assert!(compiled.reads_secrets());
        let cx = json!({"entity": {"id": 7}, "secrets": {"T": "AbC", "CSV": "p,q"}});
        let rendered = compiled.render(&cx);
        assert_eq!(rendered["parts"], json!(["p", "q"]));
        assert_eq!(
            compiled.mask(&rendered, "***"),
            json!({"id": 7, "token": "***", "parts": ["***", "***"], "list": [7, "***"], "fixed": "plain"})
        );
        let mut strings = compiled.secret_strings(&rendered);
        strings.sort();
        assert_eq!(strings, ["AbC", "p", "q", "x-abc"]);
    }

    #[test]
    fn compiled_values_collect_every_error() {
        let mapping = json!({
            "a": "{{lowrcase x}}",
            "list": ["ok", "{{#if}}", "{{> p}}"],
            "we/ird~key": "{{replace x}}",
        });
        let errors = CompiledValue::compile(&mapping).expect_err("has errors");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["/a", "/list/1", "/list/2", "/we~1ird~0key"]);
        assert!(errors[0].1.message.contains("did you mean `lowercase`"));
        let root = CompiledValue::compile(&json!("{{x")).expect_err("has errors");
        assert_eq!(root[0].0, "");
    }

    #[test]
    fn templates_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Template>();
        assert_send_sync::<CompiledValue>();
        let t = Template::compile("{{entity.id}}").expect("compiles");
        let copy = t.clone();
        let joined = std::thread::spawn(move || copy.render(&ctx()))
            .join()
            .expect("join");
        assert_eq!(joined, t.render(&ctx()));
    }

    /// Random token soup must never panic, hang or overflow, whether or not
    /// it compiles, and whatever it renders against.
    #[test]
    fn random_templates_never_panic() {
        const PIECES: &[&str] = &[
            "{{",
            "}}",
            "{{{",
            "}}}",
            "{{#if ",
            "{{#each ",
            "{{#with ",
            "{{#unless ",
            "{{/if}}",
            "{{/each}}",
            "{{/with}}",
            "{{else}}",
            "{{else if ",
            "{{^}}",
            "(",
            ")",
            "(eq ",
            "(concat ",
            "'",
            "\"",
            "\\",
            "[",
            "]",
            "a.[b c]",
            " ",
            "\n",
            "x",
            "this",
            "../",
            "@index",
            "@root.",
            "@key",
            "~",
            "!",
            "{{!-- ",
            " --}}",
            "{{>",
            "{{*",
            "#",
            "/",
            ".",
            "0",
            "-1.5",
            "true",
            "null",
            "lowercase ",
            "len ",
            "date_format ",
            "é",
            "=",
            "as |x|",
            "{",
            "}",
            "a",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let data = json!({"a": [{"b c": 1}, "x"], "x": {"y": [true, null]}, "this": 0});
        let mut compiled = 0;
        for _ in 0..3000 {
            let len = (next() % 24) as usize;
            let source: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if let Ok(t) = Template::compile(&source) {
                compiled += 1;
                let _ = t.render(&data);
                let _ = t.render_text(&json!(null));
                let _ = t.references();
            }
        }
        assert!(compiled > 100, "only {compiled} random templates compiled");
    }
}
