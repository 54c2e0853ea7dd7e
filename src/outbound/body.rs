//! Encodes a request's body value for the wire, one function per `format:` of the `http` step.
//!
//! - `json` (default): the value serialised, `application/json`.
//! - `form`: `application/x-www-form-urlencoded` of a flat object. Scalars are sent as text,
//!   `null` as an empty value, an array of scalars repeats the key (`tag=a&tag=b`), and a nested
//!   object or array is sent as its JSON text. A string body is taken as already encoded and sent
//!   as is; any other non-object body is an error.
//! - `xml`: `application/xml`, a simple element tree. The root element is `<root>`, unless the
//!   body is an object with a single key whose value is not an array: that key becomes the root.
//!   Object keys become child elements, an array repeats its element once per item (an array
//!   directly inside an array, or a top-level array, uses `<item>` elements), `null` is an empty
//!   element, other scalars are text. No attributes. Text is escaped (`& < >`), and characters
//!   XML 1.0 cannot carry at all (control characters other than tab, newline and carriage
//!   return) become U+FFFD. Element names are sanitised: every character outside
//!   `[A-Za-z0-9_.-]` becomes `_`, and a name that is empty, starts with a digit, `-` or `.`, or
//!   starts with `xml` in any case (reserved) gets a `_` prefix.
//! - `text`: `text/plain; charset=utf-8`, a string as is, anything else as its JSON text.
//!
//! A `null` (or absent) body sends no body at all, in every format.

use serde_json::{Map, Value};

use super::Format;

/// A body ready to send, with the content type its format implies (an explicit `Content-Type`
/// header from the flow wins over it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody {
    pub content_type: &'static str,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("format form needs an object body (or an already encoded string), got {0}")]
    FormNeedsObject(&'static str),
    #[error("the body cannot be serialised as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Form => "application/x-www-form-urlencoded",
        Format::Xml => "application/xml",
        Format::Text => "text/plain; charset=utf-8",
    }
}

/// Encodes `body` in `format`; `None` for a `null` body.
pub fn encode(format: Format, body: &Value) -> Result<Option<EncodedBody>, BodyError> {
    if body.is_null() {
        return Ok(None);
    }
    let text = match format {
        Format::Json => serde_json::to_string(body)?,
        Format::Form => form(body)?,
        Format::Xml => xml(body),
        Format::Text => text(body)?,
    };
    Ok(Some(EncodedBody {
        content_type: content_type(format),
        text,
    }))
}

fn text(body: &Value) -> Result<String, BodyError> {
    match body {
        Value::String(s) => Ok(s.clone()),
        other => Ok(serde_json::to_string(other)?),
    }
}

fn form(body: &Value) -> Result<String, BodyError> {
    let fields = match body {
        Value::Object(fields) => fields,
        Value::String(encoded) => return Ok(encoded.clone()),
        other => return Err(BodyError::FormNeedsObject(kind(other))),
    };
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        match value {
            Value::Array(items) if items.iter().all(is_scalar) => {
                for item in items {
                    out.append_pair(key, &form_scalar(item));
                }
            }
            other => {
                out.append_pair(key, &form_scalar(other));
            }
        }
    }
    Ok(out.finish())
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// A form value as text: strings as is, null empty, everything else as JSON.
fn form_scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn xml(body: &Value) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    match single_root(body) {
        Some((name, value)) => element(&mut out, name, value),
        None => element(&mut out, "root", &top_level(body)),
    }
    out
}

/// `{"guest": {...}}` becomes `<guest>...</guest>` rather than `<root><guest>...</guest></root>`;
/// not for arrays, which would give several root elements.
fn single_root(body: &Value) -> Option<(&str, &Value)> {
    let Value::Object(fields) = body else {
        return None;
    };
    let mut iter = fields.iter();
    match (iter.next(), iter.next()) {
        (Some((name, value)), None) if !value.is_array() => Some((name.as_str(), value)),
        _ => None,
    }
}

/// A top-level array is wrapped so its items become `<item>` children of `<root>`.
fn top_level(body: &Value) -> Value {
    match body {
        Value::Array(items) => {
            let mut wrapper = Map::new();
            wrapper.insert("item".to_owned(), Value::Array(items.clone()));
            Value::Object(wrapper)
        }
        other => other.clone(),
    }
}

/// Writes `value` as element(s) named `name`: an array repeats the element.
fn element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| single(out, name, item)),
        other => single(out, name, other),
    }
}

fn single(out: &mut String, name: &str, value: &Value) {
    let name = xml_name(name);
    match value {
        Value::Null => {
            out.push('<');
            out.push_str(&name);
            out.push_str("/>");
        }
        Value::Object(fields) => wrap(out, &name, |out| {
            fields.iter().for_each(|(key, v)| element(out, key, v));
        }),
        Value::Array(items) => wrap(out, &name, |out| {
            items.iter().for_each(|item| single(out, "item", item));
        }),
        Value::String(s) => wrap(out, &name, |out| out.push_str(&escape_text(s))),
        other => wrap(out, &name, |out| out.push_str(&other.to_string())),
    }
}

fn wrap(out: &mut String, name: &str, inner: impl FnOnce(&mut String)) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    inner(out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Makes `name` a valid XML element name (rule in the module doc).
pub fn xml_name(name: &str) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let bad_start = clean
        .chars()
        .next()
        .is_none_or(|c| c.is_ascii_digit() || c == '-' || c == '.');
    let reserved = clean
        .get(..3)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("xml"));
    if bad_start || reserved {
        clean.insert(0, '_');
    }
    clean
}

/// Escapes XML text content and replaces characters XML 1.0 forbids.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(format: Format, body: Value) -> String {
        encode(format, &body)
            .expect("encodes")
            .expect("has a body")
            .text
    }

    #[test]
    fn null_means_no_body() {
        for format in [Format::Json, Format::Form, Format::Xml, Format::Text] {
            assert_eq!(encode(format, &Value::Null).expect("ok"), None);
        }
    }

    #[test]
    fn json_and_content_types() {
        let body = encode(Format::Json, &json!({"a": [1, "x"]}))
            .expect("ok")
            .expect("body");
        assert_eq!(body.text, r#"{"a":[1,"x"]}"#);
        assert_eq!(body.content_type, "application/json");
        assert_eq!(content_type(Format::Text), "text/plain; charset=utf-8");
    }

    #[test]
    fn form_encodes_a_flat_object() {
        // Keys in sorted order, so the test holds with and without serde_json's preserve_order.
        let body = json!({
            "age": 36,
            "name": "Ada Lovelace & co",
            "nested": {"k": 1},
            "note": null,
            "tags": ["a", "b c"],
            "vip": true,
        });
        assert_eq!(
            encoded(Format::Form, body),
            "age=36&name=Ada+Lovelace+%26+co&nested=%7B%22k%22%3A1%7D&note=&tags=a&tags=b+c&vip=true"
        );
        assert_eq!(encoded(Format::Form, json!("a=1&b=2")), "a=1&b=2");
        assert!(matches!(
            encode(Format::Form, &json!([1])),
            Err(BodyError::FormNeedsObject("an array"))
        ));
    }

    #[test]
    fn text_is_sent_as_is() {
        assert_eq!(encoded(Format::Text, json!("héllo\n")), "héllo\n");
        assert_eq!(encoded(Format::Text, json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(encoded(Format::Text, json!(42)), "42");
    }

    #[test]
    fn xml_uses_root_for_several_keys() {
        let body = json!({"age": 3, "name": "A & B <c>", "none": null});
        assert_eq!(
            encoded(Format::Xml, body),
            r#"<?xml version="1.0" encoding="UTF-8"?><root><age>3</age><name>A &amp; B &lt;c&gt;</name><none/></root>"#
        );
    }

    #[test]
    fn xml_single_key_becomes_the_root_and_arrays_repeat() {
        let body = json!({"guest": {"matrix": [[1, 2]], "ok": false, "tags": ["a", "b"]}});
        assert_eq!(
            encoded(Format::Xml, body),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                "<guest><matrix><item>1</item><item>2</item></matrix>",
                "<ok>false</ok><tags>a</tags><tags>b</tags></guest>"
            )
        );
        assert_eq!(
            encoded(Format::Xml, json!({"tags": ["a", "b"]})),
            r#"<?xml version="1.0" encoding="UTF-8"?><root><tags>a</tags><tags>b</tags></root>"#
        );
        assert_eq!(
            encoded(Format::Xml, json!([1, {"a": 2}])),
            r#"<?xml version="1.0" encoding="UTF-8"?><root><item>1</item><item><a>2</a></item></root>"#
        );
        assert_eq!(
            encoded(Format::Xml, json!("hi")),
            r#"<?xml version="1.0" encoding="UTF-8"?><root>hi</root>"#
        );
    }

    #[test]
    fn xml_names_are_sanitised() {
        assert_eq!(xml_name("first name"), "first_name");
        assert_eq!(xml_name("1st"), "_1st");
        assert_eq!(xml_name(""), "_");
        assert_eq!(xml_name("-x"), "_-x");
        assert_eq!(xml_name("XmlThing"), "_XmlThing");
        assert_eq!(xml_name("a:b/é"), "a_b__");
        assert_eq!(xml_name("ok_name-1.2"), "ok_name-1.2");
    }

    #[test]
    fn xml_text_drops_forbidden_characters() {
        assert_eq!(escape_text("a\u{0}b\tc\u{1b}"), "a\u{FFFD}b\tc\u{FFFD}");
    }
}
