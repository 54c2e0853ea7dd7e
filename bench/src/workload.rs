//! Workload W1 ("guest sync", SPEC §9): the flow file, the events the clients send and the body
//! the sink must receive for each of them.
//!
//! Event `n` (0-based) carries entity id `n + 1`. Its data has no `id` field, so flowd puts the
//! entity id into `entity.id` as text, and the mapped `guest_id` comes back as the string
//! `"<n + 1>"`: that is how the sink finds the event of every delivery.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// Id of the benchmark flow.
pub const FLOW_ID: &str = "w1";
/// Id of the HTTP step; the `Idempotency-Key` of a delivery is `<run_id>_<HTTP_STEP>`.
pub const HTTP_STEP: &str = "push";
/// Path the flow posts to on the sink.
pub const SINK_PATH: &str = "/w1";

/// The W1 flow: an entity trigger on `guest` creates, a `map` of five fields, an HTTP POST of
/// the mapped object to the sink. Retries are short so that a failed delivery shows up within
/// the drain time instead of after the default five hours of backoff.
pub fn flow_yaml(sink_url: &str) -> String {
    format!(
        r#"# Workload W1 "guest sync" (SPEC §9), written by flowd-bench.
id: {FLOW_ID}
name: W1 guest sync (benchmark)
triggers:
  - entity: guest
    on: [create]
steps:
  - id: contact
    map:
      guest_id: "{{{{entity.id}}}}"
      full_name: "{{{{entity.first_name}}}} {{{{entity.last_name}}}}"
      email: "{{{{lowercase entity.email}}}}"
      status: "{{{{entity.status}}}}"
      event: "{{{{entity.event_uid}}}}"
  - id: {HTTP_STEP}
    http:
      method: POST
      url: "{sink_url}"
      body: "{{{{steps.contact}}}}"
      timeout: 10s
      retry: {{attempts: 5, delay: 1s, max_delay: 5s}}
"#
    )
}

/// Appends event `n` as JSON. Written by hand (no serde) because the clients build tens of
/// thousands of these per second on the same two cores as flowd. The last name holds an
/// apostrophe and the company an ampersand: HTML escaping would show in the mapped body.
pub fn write_event(out: &mut String, n: usize) {
    let id = n + 1;
    let _ = write!(
        out,
        r#"{{"entity":"guest","action":"create","id":"{id}","data":{{"first_name":"Ada{id}","last_name":"Lovelace-O'Brien","email":"Ada.Lovelace+{id}@Example.COM","status":"confirmed","event_uid":"summit-2025","ticket_type":"standard","company":"Analytical Engines & Co"}}}}"#
    );
}

/// The body of one request: events `first..last`, a lone object when `batch` is 1, else an
/// array.
pub fn request_body(first: usize, last: usize, batch: usize) -> String {
    let mut body = String::with_capacity(280 * (last - first) + 2);
    if batch == 1 {
        write_event(&mut body, first);
        return body;
    }
    body.push('[');
    for n in first..last {
        if n > first {
            body.push(',');
        }
        write_event(&mut body, n);
    }
    body.push(']');
    body
}

/// What the `map` step must produce for event `n`, hence the exact body at the sink.
pub fn expected_body(n: usize) -> Value {
    let id = n + 1;
    json!({
        "guest_id": id.to_string(),
        "full_name": format!("Ada{id} Lovelace-O'Brien"),
        "email": format!("ada.lovelace+{id}@example.com"),
        "status": "confirmed",
        "event": "summit-2025",
    })
}

/// The event index a delivered body belongs to, from its `guest_id`.
pub fn event_index(body: &Value) -> Option<usize> {
    let id: usize = body.get("guest_id")?.as_str()?.parse().ok()?;
    id.checked_sub(1)
}
