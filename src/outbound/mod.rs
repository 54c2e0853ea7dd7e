//! Outbound HTTP: everything flowd sends to other systems goes through here. The guarded client
//! ([`client::HttpClient`]), the SSRF guard that decides which addresses may be reached
//! ([`guard`]), Standard Webhooks signing and verifying ([`sign`]), the record of each attempt
//! with secrets redacted ([`record`]), body encoding ([`body`]) and what a response status means
//! for the next attempt ([`status`]). It sits below the step kinds: the `http` step and the chat
//! channels of `notify` send through it, and the webhook trigger verifies signatures with it,
//! so none of them reaches into another's internals.

pub mod body;
pub mod client;
pub mod guard;
pub mod record;
pub mod sign;
pub mod status;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

// `Method` and `Format` are also part of the flow format (the `http` step's `method:` and
// `format:`), so their JSON Schema is what `flowd schema` prints for those fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Form,
    Xml,
    Text,
}

/// Whether requests are sent (`Send`, always in `flowd serve`) or only prepared and recorded as
/// they would be sent, then not sent (`DryRun`, for `flowd run --dry-run`). A dry run goes
/// through the same rendering, checks, encoding and redaction as a real attempt, so what it
/// shows is what would go out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    #[default]
    Send,
    DryRun,
}
