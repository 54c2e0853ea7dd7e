//! Turns template source into our AST: pre-scan, handlebars parse, then a
//! conversion that validates helpers, arity and supported constructs.
//!
//! The handlebars AST only records positions for top-level elements, so
//! positions come from the pre-scan instead: it lists every tag in source
//! order, and the conversion consumes that list in the same order as it
//! walks the tree (block open, body, each `{{else}}`, close).

use handlebars::template::{
    HelperTemplate, Parameter, Subexpression, Template as HbTemplate, TemplateElement,
};
use handlebars::{Path as HbPath, PathSeg, TemplateErrorReason};
use serde_json::Value;

use super::helpers::{self, BLOCK_HELPERS, HelperSpec};
use super::{
    Base, BlockKind, Body, Chain, Expr, HELPERS, Link, LocalVar, MAX_NESTING, Node, Path, Segment,
    TemplateError, scan,
};

pub(super) fn compile(source: &str) -> Result<Body, TemplateError> {
    if let Some(body) = compile_simple(source) {
        return Ok(body);
    }
    compile_general(source)
}

/// Most templates are text with plain `{{a.b.c}}` paths. Those are built directly, skipping
/// the general parser, which is by far the slowest part of validating thousands of flows.
/// Anything else (helpers, blocks, escapes, whitespace control) returns `None`.
fn compile_simple(source: &str) -> Option<Body> {
    let mut nodes = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let text = &rest[..open];
        if text.contains("}}") || text.ends_with('\\') {
            return None;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text.into()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        nodes.push(Node::Value(simple_expression(after[..close].trim())?));
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return None;
    }
    if !rest.is_empty() {
        nodes.push(Node::Text(rest.into()));
    }
    match nodes.as_slice() {
        [Node::Value(_)] => match nodes.pop() {
            Some(Node::Value(expr)) => Some(Body::Typed(expr)),
            _ => None,
        },
        _ => Some(Body::Text(nodes)),
    }
}

/// `entity.email`, or an inline helper applied to simple paths and plain literals:
/// `lowercase entity.email`, `eq entity.status 'confirmed'`. Anything else is left to the
/// general parser, which also words the errors.
fn simple_expression(inner: &str) -> Option<Expr> {
    let mut tokens = inner.split(' ');
    let first = tokens.next()?;
    let args: Vec<&str> = tokens.collect();
    if args.is_empty() {
        return is_simple_path(first).then(|| simple_path(first));
    }
    let helper = helpers::find_inline(first).filter(|h| h.arity.accepts(args.len()))?;
    let args = args
        .into_iter()
        .map(simple_argument)
        .collect::<Option<Vec<_>>>()?;
    Some(Expr::Call { helper, args })
}

/// A path, a quoted string without quotes, escapes or spaces inside, or a whole number.
fn simple_argument(token: &str) -> Option<Expr> {
    let quoted = |q: char| {
        token
            .strip_prefix(q)
            .and_then(|t| t.strip_suffix(q))
            .filter(|t| !t.contains(['\'', '"', '\\']))
    };
    if let Some(text) = quoted('\'').or_else(|| quoted('"')) {
        return Some(Expr::Literal(Value::String(text.to_owned())));
    }
    if !token.is_empty() && token.len() < 16 && token.bytes().all(|b| b.is_ascii_digit()) {
        return token
            .parse::<u64>()
            .ok()
            .map(|n| Expr::Literal(Value::from(n)));
    }
    is_simple_path(token).then(|| simple_path(token))
}

fn simple_path(text: &str) -> Expr {
    Expr::Path(Path {
        base: Base::Scope { up: 0 },
        segments: text
            .split('.')
            .map(segment)
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    })
}

/// `entity.email`, `steps.contact.tags.0`: identifiers separated by dots, starting with a
/// name that is not a keyword.
fn is_simple_path(text: &str) -> bool {
    let mut segments = text.split('.');
    let first_ok = segments.next().is_some_and(|first| {
        first.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !matches!(
                first,
                "this" | "true" | "false" | "null" | "undefined" | "else"
            )
    });
    first_ok
        && text.split('.').all(|seg| {
            !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

fn compile_general(source: &str) -> Result<Body, TemplateError> {
    let tags =
        scan::scan(source, MAX_NESTING).map_err(|e| error_at(source, e.offset, e.message))?;
    let parsed = parse(source)?;
    let typed = matches!(
        parsed.elements.as_slice(),
        [TemplateElement::Expression(_) | TemplateElement::HtmlExpression(_)]
    );
    let mut builder = Builder {
        source,
        tags,
        next_tag: 0,
    };
    let mut nodes = builder.nodes(Some(&parsed), 0)?;
    match nodes.pop() {
        Some(Node::Value(expr)) if typed && nodes.is_empty() => Ok(Body::Typed(expr)),
        last => {
            nodes.extend(last);
            Ok(Body::Text(nodes))
        }
    }
}

/// The pre-scan has bounded nesting, but the handlebars parser still
/// `unwrap()`s internally; a panic there must become a compile error rather
/// than take down the engine.
fn parse(source: &str) -> Result<HbTemplate, TemplateError> {
    match std::panic::catch_unwind(|| HbTemplate::compile(source)) {
        Ok(Ok(parsed)) => Ok(parsed),
        Ok(Err(e)) => Err(convert_parse_error(source, &e)),
        Err(_) => Err(error_at(source, 0, "template could not be parsed")),
    }
}

/// The parser names its grammar rules ("expected trailing_tilde_to_omit_whitespace"); people
/// need to hear what to fix instead.
fn readable_syntax_error(detail: &str) -> String {
    if detail.contains("expected") && detail.contains('_') {
        "an expression is not closed: every `{{` needs a matching `}}`, and block helpers are written `{{#if x}}…{{/if}}`".to_string()
    } else {
        detail.to_string()
    }
}

fn convert_parse_error(source: &str, e: &handlebars::TemplateError) -> TemplateError {
    let message = match e.reason() {
        TemplateErrorReason::InvalidSyntax(detail) => {
            format!("syntax error: {}", readable_syntax_error(detail))
        }
        other => other.to_string(),
    };
    if let Some((line, column)) = e.pos() {
        return TemplateError {
            message,
            line,
            column,
        };
    }
    // Invalid literals are reported without a position; find the literal.
    let offset = match e.reason() {
        TemplateErrorReason::InvalidParam(param) => source.find(param.as_str()).unwrap_or(0),
        _ => 0,
    };
    error_at(source, offset, message)
}

/// Converts a byte offset into the 1-based line and character column used
/// by the handlebars parser (`\r\n` counts as one line break).
pub(super) fn error_at(source: &str, offset: usize, message: impl Into<String>) -> TemplateError {
    let mut line = 1;
    let mut column = 1;
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if i >= offset {
            break;
        }
        match c {
            '\n' => {
                line += 1;
                column = 1;
            }
            '\r' if chars.peek().is_some_and(|&(_, next)| next == '\n') => {}
            _ => column += 1,
        }
    }
    TemplateError {
        message: message.into(),
        line,
        column,
    }
}

struct Builder<'a> {
    source: &'a str,
    tags: Vec<usize>,
    next_tag: usize,
}

impl Builder<'_> {
    fn take_tag(&mut self) -> usize {
        let offset = self.tags.get(self.next_tag).copied();
        self.next_tag += 1;
        offset.unwrap_or(self.source.len())
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> TemplateError {
        error_at(self.source, offset, message)
    }

    fn unsupported(&mut self, message: &str) -> TemplateError {
        let tag = self.take_tag();
        self.error(tag, message)
    }

    fn nodes(
        &mut self,
        tpl: Option<&HbTemplate>,
        depth: usize,
    ) -> Result<Vec<Node>, TemplateError> {
        let mut nodes = Vec::new();
        for element in tpl.map_or(&[][..], |t| t.elements.as_slice()) {
            self.element(element, depth, &mut nodes)?;
        }
        Ok(nodes)
    }

    fn element(
        &mut self,
        element: &TemplateElement,
        depth: usize,
        nodes: &mut Vec<Node>,
    ) -> Result<(), TemplateError> {
        match element {
            TemplateElement::RawString(text) => push_text(nodes, text),
            TemplateElement::Comment(_) => {
                self.take_tag();
            }
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                let tag = self.take_tag();
                nodes.push(Node::Value(self.expression(ht, tag, depth)?));
            }
            TemplateElement::HelperBlock(ht) => {
                nodes.push(Node::Block(Box::new(self.chain(ht, depth + 1)?)));
            }
            // The pre-scan rejects these first; kept for completeness.
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                return Err(self.unsupported("partials are not supported"));
            }
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                return Err(self.unsupported("inline partials and decorators are not supported"));
            }
            _ => return Err(self.unsupported("unsupported template construct")),
        }
        Ok(())
    }

    fn chain(&mut self, head: &HelperTemplate, depth: usize) -> Result<Chain, TemplateError> {
        let open_tag = self.take_tag();
        if depth > MAX_NESTING {
            return Err(self.error(open_tag, nesting_message()));
        }
        let mut links = vec![self.link(head, open_tag, depth)?];
        let mut current = head;
        let otherwise = loop {
            match current.inverse.as_ref() {
                None => break Vec::new(),
                Some(inverse) => match else_chain_link(inverse) {
                    Some(next) => {
                        let tag = self.take_tag();
                        links.push(self.link(next, tag, depth)?);
                        current = next;
                    }
                    None => {
                        self.take_tag();
                        break self.nodes(Some(inverse), depth)?;
                    }
                },
            }
        };
        self.take_tag();
        Ok(Chain { links, otherwise })
    }

    fn link(
        &mut self,
        ht: &HelperTemplate,
        tag: usize,
        depth: usize,
    ) -> Result<Link, TemplateError> {
        let name = ht.name.as_name().unwrap_or_default();
        let Some(kind) = BlockKind::from_name(name) else {
            let message = match helpers::find_inline(name) {
                Some(_) => format!("`{name}` is not a block helper; use {{{{{name} ...}}}}"),
                None => unknown_helper_message(name, BLOCK_HELPERS),
            };
            return Err(self.error(self.name_offset(tag, name), message));
        };
        self.reject_extras(ht, tag)?;
        let [subject] = ht.params.as_slice() else {
            return Err(self.error(
                self.name_offset(tag, name),
                format!("`#{name}` expects 1 argument, got {}", ht.params.len()),
            ));
        };
        let subject = self.param(subject, tag, depth)?;
        let body = self.nodes(ht.template.as_ref(), depth)?;
        Ok(Link {
            kind,
            subject,
            body,
        })
    }

    fn reject_extras(&self, ht: &HelperTemplate, tag: usize) -> Result<(), TemplateError> {
        if !ht.hash.is_empty() {
            return Err(self.error(
                tag,
                "hash arguments (`key=value`) are not supported; no helper takes them",
            ));
        }
        if ht.block_param.is_some() {
            return Err(self.error(
                tag,
                "block parameters (`as |x|`) are not supported; use `this` and `@index`",
            ));
        }
        Ok(())
    }

    /// A `{{...}}` tag: a helper call when it has arguments, otherwise a path.
    fn expression(
        &self,
        ht: &HelperTemplate,
        tag: usize,
        depth: usize,
    ) -> Result<Expr, TemplateError> {
        self.reject_extras(ht, tag)?;
        match &ht.name {
            Parameter::Path(path) if ht.params.is_empty() => self.path(path, tag),
            Parameter::Subexpression(sub) => self.subexpression(sub, tag, depth + 1),
            Parameter::Literal(value) => self.literal(value, tag),
            name => {
                let name = name.as_name().unwrap_or_default();
                self.call(name, &ht.params, tag, depth)
            }
        }
    }

    /// `(name args...)` always calls a helper, even without arguments.
    fn subexpression(
        &self,
        sub: &Subexpression,
        tag: usize,
        depth: usize,
    ) -> Result<Expr, TemplateError> {
        if depth > MAX_NESTING {
            return Err(self.error(tag, nesting_message()));
        }
        match sub.as_element() {
            TemplateElement::Expression(ht) => {
                self.reject_extras(ht, tag)?;
                let name = ht.name.as_name().unwrap_or_default();
                self.call(name, &ht.params, tag, depth)
            }
            _ => Err(self.error(tag, "unsupported subexpression")),
        }
    }

    fn call(
        &self,
        name: &str,
        params: &[Parameter],
        tag: usize,
        depth: usize,
    ) -> Result<Expr, TemplateError> {
        let at = self.name_offset(tag, name);
        if BLOCK_HELPERS.contains(&name) {
            return Err(self.error(
                at,
                format!("`{name}` is a block helper; use {{{{#{name} ...}}}}...{{{{/{name}}}}}"),
            ));
        }
        let Some(helper) = helpers::find_inline(name) else {
            return Err(self.error(at, unknown_helper_message(name, HELPERS)));
        };
        if !helper.arity.accepts(params.len()) {
            return Err(self.error(at, arity_message(helper, params.len())));
        }
        let args = params
            .iter()
            .map(|p| self.param(p, tag, depth))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expr::Call { helper, args })
    }

    fn param(&self, param: &Parameter, tag: usize, depth: usize) -> Result<Expr, TemplateError> {
        match param {
            Parameter::Path(path) => self.path(path, tag),
            Parameter::Literal(value) => self.literal(value, tag),
            Parameter::Subexpression(sub) => self.subexpression(sub, tag, depth + 1),
            Parameter::Name(name) => Ok(Expr::Path(Path {
                base: Base::Scope { up: 0 },
                segments: Box::new([segment(name)]),
            })),
            _ => Err(self.error(tag, "unsupported parameter")),
        }
    }

    fn literal(&self, value: &Value, tag: usize) -> Result<Expr, TemplateError> {
        match value {
            Value::Array(_) | Value::Object(_) => {
                Err(self.error(tag, "array and object literals are not supported"))
            }
            scalar => Ok(Expr::Literal(scalar.clone())),
        }
    }

    fn path(&self, path: &HbPath, tag: usize) -> Result<Expr, TemplateError> {
        match path {
            HbPath::Local((up, name, _)) => self.local(*up, name, tag),
            HbPath::Relative((segs, raw)) => {
                Ok(keyword_literal(raw)
                    .map_or_else(|| Expr::Path(relative_path(segs)), Expr::Literal))
            }
        }
    }

    fn local(&self, up: usize, name: &str, tag: usize) -> Result<Expr, TemplateError> {
        let var = match name {
            "index" => LocalVar::Index,
            "key" => LocalVar::Key,
            "first" => LocalVar::First,
            "last" => LocalVar::Last,
            "root" => {
                return Ok(Expr::Path(Path {
                    base: Base::Root,
                    segments: Box::new([]),
                }));
            }
            other => {
                return Err(self.error(
                    self.name_offset(tag, &format!("@{other}")),
                    format!(
                        "unknown variable `@{other}`; available: @index, @key, @first, @last, @root"
                    ),
                ));
            }
        };
        Ok(Expr::Local { up, var })
    }

    /// Points errors at the offending name inside the tag when it can be
    /// found there, otherwise at the tag itself.
    fn name_offset(&self, tag: usize, name: &str) -> usize {
        let rest = self.source.get(tag..).unwrap_or_default();
        let tag_len = rest.find("}}").map_or(rest.len(), |end| end + 2);
        let is_name_char =
            |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | ':' | '.' | '/' | '@');
        let within = &rest[..tag_len];
        let found = within.match_indices(name).find(|&(i, _)| {
            let before = within[..i].chars().next_back();
            let after = within[i + name.len()..].chars().next();
            !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
        });
        found.map_or(tag, |(i, _)| tag + i)
    }
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    if text.is_empty() {
        return;
    }
    // Comments between two texts leave them adjacent; merge them.
    if let Some(Node::Text(previous)) = nodes.last_mut() {
        let merged = format!("{previous}{text}");
        *previous = merged.into_boxed_str();
    } else {
        nodes.push(Node::Text(text.into()));
    }
}

/// An `{{else if ...}}` continuation is stored by handlebars as an inverse
/// holding exactly one block and no position mapping. A hand-written
/// `{{else}}{{#if}}...{{/if}}` has a mapping and is kept as nested, so the
/// tag walk still sees its own open and close tags.
fn else_chain_link(inverse: &HbTemplate) -> Option<&HelperTemplate> {
    match inverse.elements.as_slice() {
        [TemplateElement::HelperBlock(next)] if inverse.mapping.is_empty() => Some(next),
        _ => None,
    }
}

/// `{{true}}`, `{{null}}` and `{{42}}` parse as paths; treat them as the
/// literals they look like.
fn keyword_literal(raw: &str) -> Option<Value> {
    match raw {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        "null" => Some(Value::Null),
        _ if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            serde_json::from_str::<Value>(raw)
                .ok()
                .filter(Value::is_number)
        }
        _ => None,
    }
}

/// handlebars keeps `../` and `@root` as grammar rule markers whose type is
/// private, so they are recognised by their debug names.
fn relative_path(segs: &[PathSeg]) -> Path {
    let mut up = 0;
    let mut root = false;
    let mut segments = Vec::with_capacity(segs.len());
    for seg in segs {
        match seg {
            PathSeg::Named(name) => segments.push(segment(name)),
            PathSeg::Ruled(rule) => match format!("{rule:?}").as_str() {
                "path_root" => root = true,
                "path_up" => up += 1,
                _ => {}
            },
            _ => {}
        }
    }
    let base = if root { Base::Root } else { Base::Scope { up } };
    Path {
        base,
        segments: segments.into_boxed_slice(),
    }
}

fn segment(name: &str) -> Segment {
    Segment {
        key: name.into(),
        index: name.parse().ok(),
    }
}

fn nesting_message() -> String {
    format!(
        "template is nested too deeply (more than {MAX_NESTING} levels of blocks and subexpressions)"
    )
}

fn arity_message(helper: &HelperSpec, got: usize) -> String {
    let expected = match helper.arity {
        helpers::Arity::Exactly(1) => "1 argument".to_owned(),
        helpers::Arity::Exactly(n) => format!("{n} arguments"),
        helpers::Arity::AtLeast(n) => {
            format!("at least {n} argument{}", if n == 1 { "" } else { "s" })
        }
    };
    format!(
        "helper `{}` expects {expected} ({{{{{} {}}}}}), got {got}",
        helper.name, helper.name, helper.signature
    )
}

fn unknown_helper_message(name: &str, candidates: &[&str]) -> String {
    match suggest(name, candidates) {
        Some(s) => format!("unknown helper `{name}`, did you mean `{s}`?"),
        None => format!("unknown helper `{name}`"),
    }
}

/// Closest known name, if it is close enough to be a plausible typo:
/// within two edits, and within a third of the name's length for long names.
fn suggest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lowered = name.to_lowercase();
    let (best, distance) = candidates
        .iter()
        .map(|c| (*c, edit_distance(&lowered, c)))
        .min_by_key(|&(_, d)| d)?;
    let allowed = (name.chars().count() / 3).clamp(1, 2);
    (distance <= allowed).then_some(best)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_and_crlf() {
        let src = "ab\r\ncé{{x}}";
        let e = error_at(src, src.find("{{").unwrap(), "m");
        assert_eq!((e.line, e.column), (2, 3));
        let e = error_at("a\rb", 2, "m");
        assert_eq!((e.line, e.column), (1, 3));
        assert_eq!(error_at("", 0, "m").line, 1);
    }

    #[test]
    fn suggestions_need_a_close_match() {
        assert_eq!(suggest("lowrcase", HELPERS), Some("lowercase"));
        assert_eq!(suggest("Uppercase", HELPERS), Some("uppercase"));
        assert_eq!(suggest("dat_format", HELPERS), Some("date_format"));
        assert_eq!(suggest("lenn", HELPERS), Some("len"));
        assert_eq!(suggest("x", HELPERS), None);
        assert_eq!(suggest("frobnicate", HELPERS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn keyword_literals() {
        assert_eq!(keyword_literal("true"), Some(Value::Bool(true)));
        assert_eq!(keyword_literal("-1.5"), Some(serde_json::json!(-1.5)));
        assert_eq!(keyword_literal("1a"), None);
        assert_eq!(keyword_literal("name"), None);
    }

    #[test]
    fn the_fast_path_builds_what_the_general_parser_builds() {
        for source in [
            "{{entity.id}}",
            "{{ entity.email }}",
            "Hello {{entity.first_name}} {{entity.last_name}}!",
            "https://crm.example.com/api/{{steps.contact.tags.0}}/x",
            "{{a}}{{b_c.d2}}",
            "{{_private.x}}",
            "{{lowercase entity.email}}",
            "Hi {{eq entity.status 'confirmed'}} and {{default entity.name \"n/a\"}}",
            "{{replace entity.name 'a' 'b'}}{{concat a b c}}",
            "{{gt entity.total 100}}",
            "{{json steps.contact}}",
        ] {
            let fast = compile_simple(source).expect("simple");
            let general = compile_general(source).expect("compiles");
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{source}");
        }
        for source in [
            "{{lowrcase entity.email}}",
            "{{replace a}}",
            "{{if a}}",
            "{{eq a 'two words'}}",
            "{{eq a -1}}",
            "{{eq a  b}}",
            "{{eq a (lowercase b)}}",
            "{{#if a}}x{{/if}}",
            "{{this}}",
            "{{true}}",
            "{{../a}}",
            "{{@index}}",
            "{{{a}}}",
            "\\{{a}}",
            "{{a.[b c]}}",
            "{{~a}}",
            "a }} b {{c}}",
            "{{a",
            "{{a-b}}",
        ] {
            assert!(
                compile_simple(source).is_none(),
                "{source} must take the general path"
            );
        }
    }
}
