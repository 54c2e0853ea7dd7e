//! Flow YAML: parse and validate any text as a flow file would be. Nothing may panic, a report
//! with errors never carries a flow, and a flow that passes must pass again from its own JSON
//! (the API's other spelling of the same definition).
#![no_main]

use flowd::flow::validate::{Options, validate_source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let report = validate_source(source, Some("fuzz"), &Options::default());
    assert!(
        !(report.has_errors() && report.flow.is_some()),
        "a report with errors carries a flow"
    );
    if let Some(flow) = report.flow {
        let json = serde_json::to_string(&flow.def).expect("a valid flow serialises");
        let again = validate_source(&json, Some("fuzz"), &Options::default());
        assert!(
            again.flow.is_some(),
            "valid as YAML but not as its JSON: {:?}\n{json}",
            again.diagnostics
        );
    }
});
