//! Templates: compile any text, and render what compiles against a context. The input is the
//! template, then optionally a NUL byte and the context as JSON (a fixed context otherwise).
//! Nothing may panic; a secret read by a template must be reported as read.
#![no_main]

use flowd::template::Template;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let (source, context) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let context: Value = context
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .unwrap_or_else(|| {
            json!({
                "entity": {"id": 7, "name": "Ada", "tags": ["a", "b"], "nested": {"x": [1, 2.5, null]}},
                "steps": {"shape": {"email": "ada@example.com"}},
                "input": {"n": -1, "flag": true, "text": "a-b-c"},
                "secrets": {"TOKEN": "s3cr3t-value"},
                "now": "2026-12-06T00:00:00Z"
            })
        });
    if let Ok(template) = Template::compile(source) {
        let _rendered = template.render(&context);
    }
});
