//! The helper library available inside flow templates, plus the value
//! conversions (text form, truthiness, loose equality) the evaluator shares
//! with it.
//!
//! Every helper is a pure, total function from JSON arguments to a JSON value:
//! the same function serves typed evaluation (`"{{number x}}"` yields a
//! number) and text rendering. Run-time input is untrusted data from
//! triggers and steps, so a wrong argument type yields `null` or a documented
//! coercion, never an error or a panic. Arity is checked when the template is
//! compiled, which is why the functions below may assume it but still fall
//! back to `null` for a missing argument.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Number, Value};
use sha2::{Digest as _, Sha256};

use crate::core::error::CanFail;

/// Signature shared by all helpers; arguments are borrowed from the context
/// whenever possible so a helper call never clones the data it only reads.
pub(super) type HelperFn = fn(&[Cow<'_, Value>]) -> Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Arity {
    pub(super) fn accepts(self, count: usize) -> bool {
        match self {
            Arity::Exactly(n) => count == n,
            Arity::AtLeast(n) => count >= n,
        }
    }
}

pub(super) struct HelperSpec {
    pub(super) name: &'static str,
    /// Argument names, shown in arity errors and documentation.
    pub(super) signature: &'static str,
    pub(super) arity: Arity,
    pub(super) call: HelperFn,
}

impl std::fmt::Debug for HelperSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Block helpers are evaluated by the renderer itself (they control which
/// sub-template runs), so they only need a name and their single argument.
pub(super) const BLOCK_HELPERS: &[&str] = &["if", "unless", "each", "with"];

const fn helper(
    name: &'static str,
    signature: &'static str,
    arity: Arity,
    call: HelperFn,
) -> HelperSpec {
    HelperSpec {
        name,
        signature,
        arity,
        call,
    }
}

use Arity::{AtLeast, Exactly};

pub(super) static INLINE_HELPERS: &[HelperSpec] = &[
    helper("eq", "a b", Exactly(2), eq),
    helper("ne", "a b", Exactly(2), ne),
    helper("gt", "a b", Exactly(2), gt),
    helper("gte", "a b", Exactly(2), gte),
    helper("lt", "a b", Exactly(2), lt),
    helper("lte", "a b", Exactly(2), lte),
    helper("and", "a b ...", AtLeast(1), and),
    helper("or", "a b ...", AtLeast(1), or),
    helper("not", "a", Exactly(1), not),
    helper("in", "value a b ...", AtLeast(2), is_in),
    helper("len", "value", Exactly(1), len),
    helper("lowercase", "text", Exactly(1), lowercase),
    helper("uppercase", "text", Exactly(1), uppercase),
    helper("trim", "text", Exactly(1), trim),
    helper("default", "value fallback", Exactly(2), default),
    helper("concat", "a b ...", AtLeast(1), concat),
    helper("replace", "text from to", Exactly(3), replace),
    helper("split", "text separator", Exactly(2), split),
    helper("join", "list separator", Exactly(2), join),
    helper("json", "value", Exactly(1), json),
    helper("number", "text", Exactly(1), number),
    helper("date_format", "timestamp format", Exactly(2), date_format),
    helper("base64", "text", Exactly(1), base64),
    helper("url_encode", "text", Exactly(1), url_encode),
    helper("sha256", "text", Exactly(1), sha256),
];

pub(super) fn find_inline(name: &str) -> Option<&'static HelperSpec> {
    INLINE_HELPERS.iter().find(|h| h.name == name)
}

static NULL: Value = Value::Null;

fn arg<'v>(args: &'v [Cow<'_, Value>], index: usize) -> &'v Value {
    args.get(index).map_or(&NULL, |a| a.as_ref())
}

// ---------------------------------------------------------------------------
// Conversions shared with the renderer
// ---------------------------------------------------------------------------

/// Text form of a value as it appears in rendered text: strings verbatim,
/// `null` as nothing, everything else as compact JSON.
pub(super) fn text_form(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        other => Cow::Owned(other.to_string()),
    }
}

/// Appends the text form without an intermediate allocation for the common
/// string and number cases (this runs for every `{{x}}` in text templates).
pub(super) fn write_text(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Writing to a String cannot fail and Value's Display never errors; were it to, the
        // value would render short, which is no reason to fail the step.
        other => write!(out, "{other}").can_fail("A value cannot be written as text."),
    }
}

/// Flow conditions are often produced by text templates (`"{{eq a b}}"`), so
/// the texts `"false"`, `"0"` and `"null"` must be as falsy as the values
/// they spell; surrounding whitespace from YAML formatting is ignored.
pub fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !matches!(s.trim(), "" | "false" | "0" | "null"),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// JSON equality, widened so that values which look the same in a rendered
/// template compare equal (`42` vs `"42"`, `1` vs `1.0`, missing vs `""`).
pub(super) fn loosely_equal(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ if is_scalar(a) && is_scalar(b) => text_form(a) == text_form(b),
        _ => false,
    }
}

/// Numbers and numeric strings compare numerically, so that values read from
/// query strings or CSV (`"10"`) order correctly against `9`.
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Comparison and logic
// ---------------------------------------------------------------------------

fn eq(args: &[Cow<'_, Value>]) -> Value {
    Value::Bool(loosely_equal(arg(args, 0), arg(args, 1)))
}

fn ne(args: &[Cow<'_, Value>]) -> Value {
    Value::Bool(!loosely_equal(arg(args, 0), arg(args, 1)))
}

/// `in v a b …`: whether `v` equals (as `eq` compares) one of the rest; a list among the rest
/// counts as its items, so `{{in entity.store allowed_stores}}` works too.
fn is_in(args: &[Cow<'_, Value>]) -> Value {
    let value = arg(args, 0);
    let found = args
        .iter()
        .skip(1)
        .any(|candidate| match candidate.as_ref() {
            Value::Array(items) => items.iter().any(|item| loosely_equal(value, item)),
            other => loosely_equal(value, other),
        });
    Value::Bool(found)
}

fn ordered(args: &[Cow<'_, Value>], accept: fn(std::cmp::Ordering) -> bool) -> Value {
    Value::Bool(compare(arg(args, 0), arg(args, 1)).is_some_and(accept))
}

fn gt(args: &[Cow<'_, Value>]) -> Value {
    ordered(args, std::cmp::Ordering::is_gt)
}

fn gte(args: &[Cow<'_, Value>]) -> Value {
    ordered(args, std::cmp::Ordering::is_ge)
}

fn lt(args: &[Cow<'_, Value>]) -> Value {
    ordered(args, std::cmp::Ordering::is_lt)
}

fn lte(args: &[Cow<'_, Value>]) -> Value {
    ordered(args, std::cmp::Ordering::is_le)
}

fn and(args: &[Cow<'_, Value>]) -> Value {
    Value::Bool(args.iter().all(|a| is_truthy(a)))
}

fn or(args: &[Cow<'_, Value>]) -> Value {
    Value::Bool(args.iter().any(|a| is_truthy(a)))
}

fn not(args: &[Cow<'_, Value>]) -> Value {
    Value::Bool(!is_truthy(arg(args, 0)))
}

/// The fallback replaces only a missing value (null or empty text), not a meaningful `0` or
/// `false`: `{{default entity.qty 1}}` keeps a quantity of 0.
fn default(args: &[Cow<'_, Value>]) -> Value {
    let value = arg(args, 0);
    match value {
        Value::Null => arg(args, 1).clone(),
        Value::String(s) if s.is_empty() => arg(args, 1).clone(),
        _ => value.clone(),
    }
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

fn len(args: &[Cow<'_, Value>]) -> Value {
    let count = match arg(args, 0) {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::String(s) => s.chars().count(),
        // A missing list is an empty list for the purpose of counting.
        Value::Null => 0,
        Value::Bool(_) | Value::Number(_) => return Value::Null,
    };
    Value::from(count)
}

/// Text helpers propagate a missing input as `null` (so a typed mapping of a
/// missing field stays missing) and coerce other values to their text form.
fn map_text(v: &Value, f: impl FnOnce(&str) -> String) -> Value {
    match v {
        Value::Null => Value::Null,
        other => Value::String(f(&text_form(other))),
    }
}

fn lowercase(args: &[Cow<'_, Value>]) -> Value {
    map_text(arg(args, 0), str::to_lowercase)
}

fn uppercase(args: &[Cow<'_, Value>]) -> Value {
    map_text(arg(args, 0), str::to_uppercase)
}

fn trim(args: &[Cow<'_, Value>]) -> Value {
    map_text(arg(args, 0), |s| s.trim().to_owned())
}

fn concat(args: &[Cow<'_, Value>]) -> Value {
    let mut out = String::new();
    for a in args {
        write_text(&mut out, a);
    }
    Value::String(out)
}

fn replace(args: &[Cow<'_, Value>]) -> Value {
    let from = text_form(arg(args, 1));
    let to = text_form(arg(args, 2));
    // An empty pattern would insert `to` between every character.
    map_text(arg(args, 0), |s| {
        if from.is_empty() {
            s.to_owned()
        } else {
            s.replace(from.as_ref(), &to)
        }
    })
}

fn split(args: &[Cow<'_, Value>]) -> Value {
    let text = match arg(args, 0) {
        Value::Null => return Value::Null,
        other => text_form(other),
    };
    let separator = text_form(arg(args, 1));
    let parts: Vec<Value> = if separator.is_empty() {
        text.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        text.split(separator.as_ref())
            .map(|p| Value::String(p.to_owned()))
            .collect()
    };
    Value::Array(parts)
}

fn join(args: &[Cow<'_, Value>]) -> Value {
    let separator = text_form(arg(args, 1));
    match arg(args, 0) {
        Value::Null => Value::Null,
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&separator);
                }
                write_text(&mut out, item);
            }
            Value::String(out)
        }
        other => Value::String(text_form(other).into_owned()),
    }
}

fn json(args: &[Cow<'_, Value>]) -> Value {
    Value::String(arg(args, 0).to_string())
}

// ---------------------------------------------------------------------------
// Numbers and dates
// ---------------------------------------------------------------------------

/// Integral results become JSON integers so that `{{number "3"}}` feeds an
/// API expecting an integer with `3`, not `3.0`.
fn number(args: &[Cow<'_, Value>]) -> Value {
    match arg(args, 0) {
        Value::Number(n) => Value::Number(n.clone()),
        Value::String(s) => parse_number(s.trim()).map_or(Value::Null, Value::Number),
        _ => Value::Null,
    }
}

fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(u.into());
    }
    let f = s.parse::<f64>().ok().filter(|f| f.is_finite())?;
    // 2^63 is exactly representable, so this range check is exact.
    const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && (-I64_BOUND..I64_BOUND).contains(&f) {
        return Some((f as i64).into());
    }
    Number::from_f64(f)
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            match DateTime::parse_from_rfc3339(s) {
                Ok(dt) => Some(dt.with_timezone(&Utc)),
                Err(_) => unix_seconds(s.parse::<f64>().ok()?),
            }
        }
        Value::Number(n) => match n.as_i64() {
            Some(secs) => DateTime::from_timestamp(secs, 0),
            None => unix_seconds(n.as_f64()?),
        },
        _ => None,
    }
}

fn unix_seconds(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs.abs() > 1e15 {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9) as u32;
    DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
}

fn date_format(args: &[Cow<'_, Value>]) -> Value {
    let Some(when) = timestamp(arg(args, 0)) else {
        return Value::Null;
    };
    let format = text_form(arg(args, 1));
    let mut out = String::new();
    // chrono reports an invalid specifier as a formatting error, which
    // `to_string()` would turn into a panic; `write!` lets us map it to null.
    match write!(out, "{}", when.format(&format)) {
        Ok(()) => Value::String(out),
        Err(_) => Value::Null,
    }
}

// ---------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------

fn base64(args: &[Cow<'_, Value>]) -> Value {
    map_text(arg(args, 0), |s| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    })
}

/// RFC 3986 unreserved characters stay as they are; everything else is
/// percent-encoded, which is safe for both path segments and query values.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn url_encode(args: &[Cow<'_, Value>]) -> Value {
    map_text(arg(args, 0), |s| {
        percent_encoding::utf8_percent_encode(s, URL_COMPONENT).to_string()
    })
}

fn sha256(args: &[Cow<'_, Value>]) -> Value {
    map_text(arg(args, 0), |s| {
        let digest = Sha256::digest(s.as_bytes());
        let mut hex = String::with_capacity(digest.len() * 2);
        for byte in digest {
            write!(hex, "{byte:02x}").can_fail("A hash cannot be written as hex.");
        }
        hex
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, args: &[Value]) -> Value {
        let spec = find_inline(name).expect("known helper");
        let args: Vec<Cow<'_, Value>> = args.iter().map(Cow::Borrowed).collect();
        (spec.call)(&args)
    }

    #[test]
    fn truthiness_table() {
        let falsy = [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!("false"),
            json!("0"),
            json!("null"),
            json!("  false \n"),
            json!("   "),
        ];
        for v in &falsy {
            assert!(!is_truthy(v), "{v} should be falsy");
        }
        let truthy = [
            json!(true),
            json!(1),
            json!(-0.5),
            json!("x"),
            json!("False"),
            json!("no"),
            json!([0]),
            json!({}),
            json!({"a": 1}),
        ];
        for v in &truthy {
            assert!(is_truthy(v), "{v} should be truthy");
        }
    }

    #[test]
    fn equality_is_json_or_text_equality() {
        assert_eq!(call("eq", &[json!(42), json!("42")]), json!(true));
        assert_eq!(
            call("in", &[json!("S2"), json!("S1"), json!("S2")]),
            json!(true)
        );
        assert_eq!(call("in", &[json!(7), json!("7")]), json!(true));
        assert_eq!(
            call("in", &[json!("S3"), json!("S1"), json!("S2")]),
            json!(false)
        );
        assert_eq!(call("in", &[json!("b"), json!(["a", "b"])]), json!(true));
        assert_eq!(call("in", &[Value::Null, json!("x")]), json!(false));
        assert_eq!(call("eq", &[json!(1), json!(1.0)]), json!(true));
        assert_eq!(
            call("eq", &[json!({"a": [1]}), json!({"a": [1]})]),
            json!(true)
        );
        assert_eq!(call("eq", &[json!(true), json!("true")]), json!(true));
        assert_eq!(call("eq", &[json!(null), json!("")]), json!(true));
        assert_eq!(call("eq", &[json!("a"), json!("b")]), json!(false));
        assert_eq!(call("eq", &[json!([1]), json!("[1]")]), json!(false));
        assert_eq!(call("ne", &[json!(1), json!(2)]), json!(true));
        assert_eq!(call("ne", &[json!("x"), json!("x")]), json!(false));
    }

    #[test]
    fn ordering_is_numeric_then_lexicographic() {
        assert_eq!(call("gt", &[json!("10"), json!(9)]), json!(true));
        assert_eq!(call("gt", &[json!("b"), json!("a")]), json!(true));
        assert_eq!(call("gte", &[json!(2), json!(2.0)]), json!(true));
        assert_eq!(call("lt", &[json!(" 1.5 "), json!(2)]), json!(true));
        assert_eq!(call("lte", &[json!("abc"), json!("abd")]), json!(true));
        // Mixed or non-comparable types are never ordered.
        assert_eq!(call("gt", &[json!("abc"), json!(1)]), json!(false));
        assert_eq!(call("lt", &[json!(null), json!(1)]), json!(false));
        assert_eq!(call("gte", &[json!([1]), json!([1])]), json!(false));
        // Non-finite "numbers" are compared as text.
        assert_eq!(call("lte", &[json!("inf"), json!("nan")]), json!(true));
    }

    #[test]
    fn logic_helpers_use_truthiness() {
        assert_eq!(
            call("and", &[json!(1), json!("x"), json!([1])]),
            json!(true)
        );
        assert_eq!(call("and", &[json!(1), json!("false")]), json!(false));
        assert_eq!(
            call("or", &[json!(0), json!(null), json!("y")]),
            json!(true)
        );
        assert_eq!(call("or", &[json!(0), json!("")]), json!(false));
        assert_eq!(call("not", &[json!("0")]), json!(true));
        assert_eq!(call("not", &[json!({})]), json!(false));
        assert_eq!(call("default", &[json!(""), json!("dflt")]), json!("dflt"));
        assert_eq!(call("default", &[Value::Null, json!(1)]), json!(1));
        assert_eq!(call("default", &[json!(0), json!(1)]), json!(0));
        assert_eq!(call("default", &[json!(false), json!(true)]), json!(false));
        assert_eq!(
            call("default", &[json!({"a": 1}), json!(2)]),
            json!({"a": 1})
        );
    }

    #[test]
    fn len_counts_items_and_characters() {
        assert_eq!(call("len", &[json!([1, 2, 3])]), json!(3));
        assert_eq!(call("len", &[json!({"a": 1})]), json!(1));
        assert_eq!(call("len", &[json!("héllo")]), json!(5));
        assert_eq!(call("len", &[json!(null)]), json!(0));
        assert_eq!(call("len", &[json!(12)]), json!(null));
    }

    #[test]
    fn text_helpers() {
        assert_eq!(call("lowercase", &[json!("ÀB")]), json!("àb"));
        assert_eq!(call("uppercase", &[json!("straße")]), json!("STRASSE"));
        assert_eq!(call("trim", &[json!("  x \n")]), json!("x"));
        assert_eq!(call("lowercase", &[json!(null)]), json!(null));
        assert_eq!(call("uppercase", &[json!(true)]), json!("TRUE"));
        assert_eq!(call("trim", &[json!(5)]), json!("5"));
        assert_eq!(
            call("concat", &[json!("a"), json!(1), json!(null), json!([2])]),
            json!("a1[2]")
        );
        assert_eq!(
            call("replace", &[json!("a-b-c"), json!("-"), json!("+")]),
            json!("a+b+c")
        );
        assert_eq!(
            call("replace", &[json!("abc"), json!(""), json!("x")]),
            json!("abc")
        );
        assert_eq!(
            call("replace", &[json!(null), json!("a"), json!("b")]),
            json!(null)
        );
        assert_eq!(
            call("replace", &[json!(1001), json!(0), json!(9)]),
            json!("1991")
        );
    }

    #[test]
    fn split_and_join() {
        assert_eq!(
            call("split", &[json!("a,b,,c"), json!(",")]),
            json!(["a", "b", "", "c"])
        );
        assert_eq!(
            call("split", &[json!("añb"), json!("")]),
            json!(["a", "ñ", "b"])
        );
        assert_eq!(call("split", &[json!(null), json!(",")]), json!(null));
        assert_eq!(
            call("split", &[json!(12.5), json!(".")]),
            json!(["12", "5"])
        );
        assert_eq!(
            call("join", &[json!(["a", 1, null, {"b": 2}]), json!(", ")]),
            json!("a, 1, , {\"b\":2}")
        );
        assert_eq!(call("join", &[json!("solo"), json!(",")]), json!("solo"));
        assert_eq!(call("join", &[json!(null), json!(",")]), json!(null));
    }

    #[test]
    fn json_serializes_compactly() {
        assert_eq!(
            call("json", &[json!({"a": [1, "x"]})]),
            json!("{\"a\":[1,\"x\"]}")
        );
        assert_eq!(call("json", &[json!("q\"")]), json!("\"q\\\"\""));
        assert_eq!(call("json", &[json!(null)]), json!("null"));
    }

    #[test]
    fn number_parses_text() {
        assert_eq!(call("number", &[json!("42")]), json!(42));
        assert_eq!(call("number", &[json!(" -7 ")]), json!(-7));
        assert_eq!(call("number", &[json!("3.0")]), json!(3));
        assert_eq!(call("number", &[json!("2.5")]), json!(2.5));
        assert_eq!(call("number", &[json!("1e3")]), json!(1000));
        assert_eq!(
            call("number", &[json!("18446744073709551615")]),
            json!(u64::MAX)
        );
        assert_eq!(call("number", &[json!(7.25)]), json!(7.25));
        assert_eq!(call("number", &[json!("abc")]), json!(null));
        assert_eq!(call("number", &[json!("inf")]), json!(null));
        assert_eq!(call("number", &[json!("")]), json!(null));
        assert_eq!(call("number", &[json!(true)]), json!(null));
        assert_eq!(call("number", &[json!([1])]), json!(null));
    }

    #[test]
    fn date_format_accepts_rfc3339_and_unix_seconds() {
        let fmt = json!("%Y-%m-%d %H:%M:%S");
        assert_eq!(
            call(
                "date_format",
                &[json!("2024-03-01T10:00:00+02:00"), fmt.clone()]
            ),
            json!("2024-03-01 08:00:00")
        );
        assert_eq!(
            call("date_format", &[json!(0), fmt.clone()]),
            json!("1970-01-01 00:00:00")
        );
        assert_eq!(
            call("date_format", &[json!(1.5), json!("%S.%3f")]),
            json!("01.500")
        );
        assert_eq!(
            call("date_format", &[json!("86400"), json!("%F")]),
            json!("1970-01-02")
        );
        assert_eq!(
            call("date_format", &[json!("yesterday"), fmt.clone()]),
            json!(null)
        );
        assert_eq!(
            call("date_format", &[json!(null), fmt.clone()]),
            json!(null)
        );
        assert_eq!(call("date_format", &[json!(1e300), fmt]), json!(null));
        // An invalid specifier must not panic.
        assert_eq!(call("date_format", &[json!(0), json!("%Q %")]), json!(null));
    }

    #[test]
    fn encodings() {
        assert_eq!(call("base64", &[json!("hello?")]), json!("aGVsbG8/"));
        assert_eq!(call("base64", &[json!("a")]), json!("YQ=="));
        assert_eq!(call("base64", &[json!(12)]), json!("MTI="));
        assert_eq!(call("base64", &[json!(null)]), json!(null));
        assert_eq!(
            call("url_encode", &[json!("a b&c/d~e-f_g.h é")]),
            json!("a%20b%26c%2Fd~e-f_g.h%20%C3%A9")
        );
        assert_eq!(call("url_encode", &[json!(null)]), json!(null));
        assert_eq!(
            call("sha256", &[json!("abc")]),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            call("sha256", &[json!(1)]),
            json!("6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b")
        );
        assert_eq!(call("sha256", &[json!(null)]), json!(null));
    }

    #[test]
    fn helpers_tolerate_missing_arguments() {
        for spec in INLINE_HELPERS {
            let _ = (spec.call)(&[]);
        }
    }

    #[test]
    fn text_form_of_each_type() {
        assert_eq!(text_form(&json!("s")), "s");
        assert_eq!(text_form(&json!(null)), "");
        assert_eq!(text_form(&json!(1.5)), "1.5");
        assert_eq!(text_form(&json!(false)), "false");
        assert_eq!(text_form(&json!({"k": [1, null]})), "{\"k\":[1,null]}");
        let mut out = String::new();
        write_text(&mut out, &json!([true, "x"]));
        write_text(&mut out, &json!(-3));
        assert_eq!(out, "[true,\"x\"]-3");
    }
}
