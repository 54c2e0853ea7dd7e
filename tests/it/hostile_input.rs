//! Hostile flow files: malformed YAML, binary garbage, a 50 MB file, deep nesting and alias
//! bombs must each produce a clear error, never a panic, a hang or an out-of-memory.

use std::io::Write;
use std::time::{Duration, Instant};

use flowd::flow::load::load_file;
use flowd::flow::validate::{Options, validate_source};

fn first_error_of_file(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.yaml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    let report = load_file(&path, &Options::default()).report;
    assert!(report.flow.is_none());
    report
        .diagnostics
        .first()
        .map(|d| format!("{}:{}: {d}", d.line, d.column))
        .unwrap()
}

/// Runs `f` and fails the test if it takes unreasonably long (a hang), on a loaded machine too.
fn within_a_minute<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    out
}

#[test]
fn malformed_yaml_is_an_error_with_a_position() {
    let cases = [
        "triggers: [entity: guest\nsteps: []\n",
        "a: b: c\n",
        "steps:\n  - id: a\n   map: 1\n",
        "\"unterminated\n",
        "key: 'single\n",
        "- [}\n",
        "\t- tab indented\n",
        "&a [*a]\n",
        "*nothing\n",
        "!!binary xyz\n",
        "%YAML 9.9\n---\na: 1\n",
    ];
    for case in cases {
        let report = validate_source(case, Some("x"), &Options::default());
        assert!(report.flow.is_none(), "{case:?} should be rejected");
        let first = &report.diagnostics[0];
        assert!(first.line >= 1 && first.column >= 1, "{case:?}: {first:?}");
    }
}

#[test]
fn binary_garbage_is_rejected_as_not_text() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let message = first_error_of_file(&garbage);
    assert!(message.contains("not UTF-8 text"), "{message}");
    let nul = first_error_of_file(b"id: a\x00\x01\x02\ntriggers: []\n");
    assert_eq!(
        nul,
        "1:6: invalid YAML: control character U+0000 is not allowed in YAML text (is this a binary file?)"
    );
}

#[test]
fn a_50_megabyte_file_is_refused_without_reading_it_whole() {
    let big = "a".repeat(50 * 1024 * 1024);
    let message = within_a_minute(|| first_error_of_file(big.as_bytes()));
    assert_eq!(
        message,
        "1:1: the file is 50.0 MiB; flow files may be at most 1 MiB"
    );
    let report = validate_source(&big, None, &Options::default());
    assert!(
        report.diagnostics[0]
            .message
            .contains("at most 1048576 bytes")
    );
}

#[test]
fn deep_nesting_is_refused() {
    for deep in [
        "[".repeat(200_000),
        "{a: ".repeat(10_000),
        (0..500)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect::<String>(),
        (0..500)
            .map(|i| format!("{}-\n", " ".repeat(i)))
            .collect::<String>(),
    ] {
        let report = within_a_minute(|| validate_source(&deep, None, &Options::default()));
        let message = &report.diagnostics[0].message;
        assert!(
            message.contains("deeper than 64 levels") || message.contains("invalid YAML"),
            "{message}"
        );
    }
    let message =
        &validate_source(&"[".repeat(200_000), None, &Options::default()).diagnostics[0].message;
    assert!(
        message.contains("nesting is deeper than 64 levels"),
        "{message}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..12 {
        let prev = level - 1;
        let refs = vec![format!("*a{prev}"); 9].join(", ").replace("*a0", "*a");
        bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    let report = within_a_minute(|| validate_source(&bomb, None, &Options::default()));
    assert!(
        report.diagnostics[0].message.contains("alias bomb"),
        "{:?}",
        report.diagnostics
    );

    // Many cheap aliases within the limit are still fine YAML (and then just not a flow).
    let ok = "base: &b {x: 1}\nlist: [*b, *b, *b]\n";
    let report = validate_source(ok, None, &Options::default());
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| !d.message.contains("alias bomb"))
    );
}

/// The probe's quadratic case: one 100 KB anchor repeated by 9,000 aliases is few values but
/// 900 MB of text. It must be refused by the byte budget, pointing at an alias and its anchor.
#[test]
fn one_large_anchor_repeated_by_many_aliases_is_refused_by_the_byte_budget() {
    let mut flow = format!("big: &big \"{}\"\nlist:\n", "x".repeat(100_000));
    for _ in 0..9_000 {
        flow.push_str("  - *big\n");
    }
    let report = within_a_minute(|| validate_source(&flow, None, &Options::default()));
    let first = &report.diagnostics[0];
    assert!(
        first.message.contains("MiB of text") && first.message.contains("anchor at line 1"),
        "{first:?}"
    );
    assert!(
        first.line > 2,
        "points at an alias, not at the top: {first:?}"
    );

    // The same anchor used a few times stays well inside the budget.
    let few = format!(
        "big: &big \"{}\"\nlist: [*big, *big, *big]\n",
        "x".repeat(100_000)
    );
    let report = validate_source(&few, None, &Options::default());
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| !d.message.contains("alias bomb")),
        "{:?}",
        report.diagnostics
    );
}

#[test]
fn huge_lists_within_the_size_limit_are_refused_by_the_value_budget() {
    let many = format!("[{}]", vec!["1"; 400_000].join(","));
    let report = within_a_minute(|| validate_source(&many, None, &Options::default()));
    assert!(
        report.diagnostics[0]
            .message
            .contains("more than 100000 values"),
        "{:?}",
        report.diagnostics[0]
    );
}

#[test]
fn odd_but_valid_text_passes_through_unharmed() {
    let source = "triggers: [{entity: guest}]\nsteps:\n  - id: a\n    map:\n      quote: \"she said \\\"hi\\\"\"\n      braces: \"{{entity.name}} \\\\{{\"\n      multi: |\n        line one\n        line two\n      unicode: \"Café ✓ 日本\"\n";
    let report = validate_source(source, Some("odd"), &Options::default());
    let flow = report
        .flow
        .unwrap_or_else(|| panic!("{:?}", report.diagnostics));
    let map = &flow.def.steps[0].map.as_ref().unwrap().0;
    assert_eq!(map["quote"], "she said \"hi\"");
    assert_eq!(map["multi"], "line one\nline two\n");
    assert_eq!(map["unicode"], "Café ✓ 日本");
}
