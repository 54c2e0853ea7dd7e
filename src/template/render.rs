//! The evaluator: walks the compiled AST against a borrowed JSON context.
//!
//! Path lookups return references into the context and only helper results
//! are owned, so rendering allocates little beyond its output. Recursion
//! follows the AST, whose depth the compiler bounds, so no input data can
//! make rendering recurse deeper than the template itself.

use std::borrow::Cow;

use serde_json::Value;

use super::helpers::{is_truthy, write_text};
use super::{Base, BlockKind, Chain, Expr, Link, LocalVar, Node, Path};

static NULL: Value = Value::Null;

/// One level of `this`. Scopes live on the Rust stack and point to their
/// parent, so entering `#each` or `#with` costs no allocation.
struct Scope<'s> {
    this: &'s Value,
    root: &'s Value,
    parent: Option<&'s Scope<'s>>,
    iteration: Option<Iteration<'s>>,
}

struct Iteration<'s> {
    index: usize,
    len: usize,
    /// Object key; `None` while iterating an array, where `@key` is the index.
    key: Option<&'s str>,
}

impl<'s> Scope<'s> {
    fn root(ctx: &'s Value) -> Scope<'s> {
        Scope {
            this: ctx,
            root: ctx,
            parent: None,
            iteration: None,
        }
    }

    fn child(&'s self, this: &'s Value, iteration: Option<Iteration<'s>>) -> Scope<'s> {
        Scope {
            this,
            root: self.root,
            parent: Some(self),
            iteration,
        }
    }

    /// `../` beyond the outermost scope stays at the root rather than
    /// failing, matching what `references()` reports as rooted.
    fn ancestor(&self, up: usize) -> &Scope<'s> {
        let mut scope = self;
        for _ in 0..up {
            match scope.parent {
                Some(parent) => scope = parent,
                None => break,
            }
        }
        scope
    }

    /// `@index` and friends belong to the nearest `#each`, even from inside
    /// a `#with` nested in it; `@../index` skips one `#each` outward.
    fn iteration(&self, up: usize) -> Option<&Iteration<'s>> {
        let mut remaining = up;
        let mut scope = Some(self);
        while let Some(current) = scope {
            if let Some(iteration) = &current.iteration {
                if remaining == 0 {
                    return Some(iteration);
                }
                remaining -= 1;
            }
            scope = current.parent;
        }
        None
    }
}

pub(super) fn evaluate(expr: &Expr, ctx: &Value) -> Value {
    eval(expr, &Scope::root(ctx)).into_owned()
}

pub(super) fn write_expression(expr: &Expr, ctx: &Value, out: &mut String) {
    write_text(out, &eval(expr, &Scope::root(ctx)));
}

pub(super) fn render_text(nodes: &[Node], ctx: &Value, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    write_nodes(nodes, ctx, &mut out);
    out
}

pub(super) fn write_nodes(nodes: &[Node], ctx: &Value, out: &mut String) {
    render_nodes(nodes, &Scope::root(ctx), out);
}

fn eval<'s>(expr: &'s Expr, scope: &Scope<'s>) -> Cow<'s, Value> {
    match expr {
        Expr::Literal(v) => Cow::Borrowed(v),
        Expr::Path(path) => Cow::Borrowed(lookup(path, scope)),
        Expr::Local { up, var } => Cow::Owned(local(scope, *up, *var)),
        Expr::Call { helper, args } => {
            let values: Vec<Cow<'s, Value>> = args.iter().map(|a| eval(a, scope)).collect();
            Cow::Owned((helper.call)(&values))
        }
    }
}

fn lookup<'s>(path: &Path, scope: &Scope<'s>) -> &'s Value {
    let mut value = match path.base {
        Base::Root => scope.root,
        Base::Scope { up } => scope.ancestor(up).this,
    };
    for segment in path.segments.iter() {
        let next = match value {
            Value::Object(map) => map.get(&*segment.key),
            Value::Array(items) => segment.index.and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return &NULL,
        }
    }
    value
}

fn local(scope: &Scope<'_>, up: usize, var: LocalVar) -> Value {
    let Some(it) = scope.iteration(up) else {
        return Value::Null;
    };
    match var {
        LocalVar::Index => Value::from(it.index),
        LocalVar::Key => it
            .key
            .map_or_else(|| Value::from(it.index), |k| Value::String(k.to_owned())),
        LocalVar::First => Value::Bool(it.index == 0),
        LocalVar::Last => Value::Bool(it.index + 1 == it.len),
    }
}

fn render_nodes<'s>(nodes: &'s [Node], scope: &Scope<'s>, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Value(expr) => write_text(out, &eval(expr, scope)),
            Node::Block(chain) => render_chain(chain, scope, out),
        }
    }
}

/// Tries each link in turn; the first that accepts its subject renders, and
/// `{{else}}` renders when none does.
fn render_chain<'s>(chain: &'s Chain, scope: &Scope<'s>, out: &mut String) {
    for link in &chain.links {
        if render_link(link, scope, out) {
            return;
        }
    }
    render_nodes(&chain.otherwise, scope, out);
}

fn render_link<'s>(link: &'s Link, scope: &Scope<'s>, out: &mut String) -> bool {
    let subject = eval(&link.subject, scope);
    match link.kind {
        BlockKind::If => render_if(is_truthy(&subject), &link.body, scope, out),
        BlockKind::Unless => render_if(!is_truthy(&subject), &link.body, scope, out),
        BlockKind::Each => render_each(&subject, &link.body, scope, out),
        BlockKind::With => render_with(&subject, &link.body, scope, out),
    }
}

fn render_if<'s>(condition: bool, body: &'s [Node], scope: &Scope<'s>, out: &mut String) -> bool {
    if condition {
        render_nodes(body, scope, out);
    }
    condition
}

fn render_each<'a>(
    subject: &'a Value,
    body: &'a [Node],
    scope: &'a Scope<'a>,
    out: &mut String,
) -> bool {
    match subject {
        Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                let iteration = Iteration {
                    index,
                    len: items.len(),
                    key: None,
                };
                render_nodes(body, &scope.child(item, Some(iteration)), out);
            }
            true
        }
        Value::Object(map) if !map.is_empty() => {
            for (index, (key, item)) in map.iter().enumerate() {
                let iteration = Iteration {
                    index,
                    len: map.len(),
                    key: Some(key),
                };
                render_nodes(body, &scope.child(item, Some(iteration)), out);
            }
            true
        }
        _ => false,
    }
}

/// Handlebars.js semantics: `#with` skips to `{{else}}` for null, false,
/// empty text and empty arrays, but enters for `0` and `{}`.
fn render_with<'a>(
    subject: &'a Value,
    body: &'a [Node],
    scope: &'a Scope<'a>,
    out: &mut String,
) -> bool {
    let empty = match subject {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    if !empty {
        render_nodes(body, &scope.child(subject, None), out);
    }
    !empty
}
