//! The `notify` step: tells people. `inbox` stores a notification readable through the API,
//! `email` sends through SMTP (`FLOWD_SMTP_URL`), `slack` and `discord` post to an incoming
//! webhook URL. Output: `{channel, id}`.

pub mod chat;
pub mod email;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::flow::model::TemplateStr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where the notification goes.
    pub channel: Channel,
    /// Email only: the recipient address(es), comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<TemplateStr>,
    /// Slack and Discord only: the incoming-webhook URL, usually a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<TemplateStr>,
    /// Inbox title or email subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<TemplateStr>,
    /// The message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TemplateStr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Inbox,
    Email,
    Slack,
    Discord,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Email => "email",
            Channel::Slack => "slack",
            Channel::Discord => "discord",
        }
    }
}
