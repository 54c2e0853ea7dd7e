//! The `notify` step: tells people. `inbox` stores a notification readable through the API,
//! `email` sends through SMTP (`FLOWD_SMTP_URL`, see `email.rs`), `slack` and `discord` post a
//! payload (see `chat.rs`) to an incoming-webhook URL through `crate::outbound`, with the same
//! address checks, redaction and recorded attempts as an `http` step. Output: `{channel, id}`.
//! Here: the configuration, its rules (`validate`), its compilation and one attempt.

pub mod chat;
pub mod email;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::outbound::record::Redactor;
use crate::outbound::{Delivery, Method, OutboundRequest};
use crate::step::check::{Context, Findings, Secret};
use crate::step::retry::{Retry, RetryPolicy};
use crate::step::{Attempt, StepCall, StepEnv, StepOutcome};
use crate::store::notifications;
use crate::template::{Template, TemplateStr, compile_text};

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

/// Checks a `notify` step at `path` (`steps[i].notify`): the fields its channel needs and
/// uses, that it says something, and its templates.
pub fn validate(notify: &NotifyConfig, path: &FlowPath, cx: &Context<'_>) -> Vec<Diagnostic> {
    let mut found = Findings::new(cx);
    let channel = notify.channel.as_str();
    match (notify.channel, &notify.to, &notify.url) {
        (Channel::Email, None, _) => {
            found.error(path.clone(), "`to` is required for `channel: email`")
        }
        (Channel::Slack | Channel::Discord, _, None) => found.error(
            path.clone(),
            format!("`url` (the incoming-webhook URL) is required for `channel: {channel}`"),
        ),
        _ => {}
    }
    if notify.to.is_some() && notify.channel != Channel::Email {
        found.error(
            path.key("to"),
            format!("`to` is for email only; `channel: {channel}` does not use it"),
        );
    }
    if notify.url.is_some() && !matches!(notify.channel, Channel::Slack | Channel::Discord) {
        found.error(
            path.key("url"),
            format!("`url` is for slack and discord only; `channel: {channel}` does not use it"),
        );
    }
    if notify.subject.is_none() && notify.text.is_none() {
        found.error(path.clone(), "a notification needs a `subject` or a `text`");
    }
    for (value, key) in [
        (&notify.to, "to"),
        (&notify.subject, "subject"),
        (&notify.text, "text"),
    ] {
        if let Some(value) = value {
            found.template(value, path.key(key), Secret::No);
        }
    }
    if let Some(url) = &notify.url {
        found.template(url, path.key("url"), Secret::Yes);
    }
    found.finish()
}

/// A `notify` step compiled once per flow revision.
#[derive(Debug)]
pub struct NotifyStep {
    channel: Channel,
    to: Option<Template>,
    url: Option<Template>,
    subject: Option<Template>,
    text: Option<Template>,
    pub retry: Retry,
}

impl NotifyStep {
    pub fn compile(
        config: &NotifyConfig,
        flow_retry: Option<&RetryPolicy>,
    ) -> Result<NotifyStep, String> {
        let compile =
            |t: &Option<TemplateStr>| t.as_ref().map(|t| compile_text(t.as_str())).transpose();
        Ok(NotifyStep {
            channel: config.channel,
            to: compile(&config.to)?,
            url: compile(&config.url)?,
            subject: compile(&config.subject)?,
            text: compile(&config.text)?,
            retry: Retry::resolve(None, flow_retry),
        })
    }

    /// What the templates reading secrets rendered, redacted in every record like the secrets
    /// (an upper-cased token, the parts of a split one): the whole URL (a webhook URL is a
    /// credential), and in the subject and text each expression that reads a secret, so the
    /// words around it stay readable.
    fn derived_secrets(&self, cx: &serde_json::Value) -> Vec<String> {
        let url = self
            .url
            .iter()
            .filter(|t| t.reads_secrets())
            .map(|t| t.render_text(cx));
        let parts = [&self.to, &self.subject, &self.text]
            .into_iter()
            .flatten()
            .flat_map(|t| t.secret_parts(cx));
        url.chain(parts).collect()
    }

    /// Sends one attempt of the notification.
    pub async fn execute(&self, env: &StepEnv, call: &StepCall<'_>) -> Attempt {
        let render = |t: &Option<Template>| t.as_ref().map(|t| t.render_text(call.context));
        let (subject, text) = (render(&self.subject), render(&self.text));
        let derived = self.derived_secrets(call.context);
        let redactor = env.redactor_with(&derived);
        match self.channel {
            Channel::Inbox => inbox(env, &redactor, call, subject, text).await,
            Channel::Email => {
                email(
                    env,
                    &redactor,
                    call,
                    render(&self.to).unwrap_or_default(),
                    subject,
                    text,
                )
                .await
            }
            Channel::Slack | Channel::Discord => {
                let payload = match self.channel {
                    Channel::Slack => chat::slack_payload(subject.as_deref(), text.as_deref()),
                    _ => chat::discord_payload(subject.as_deref(), text.as_deref()),
                };
                let request = OutboundRequest {
                    body: Some(payload),
                    ..OutboundRequest::new(
                        Method::Post,
                        render(&self.url).unwrap_or_default(),
                        call.idempotency_key(),
                    )
                };
                let mut attempt = Attempt::from(env.send(&request, &derived).await);
                if let StepOutcome::Succeeded(_) = attempt.outcome {
                    attempt.outcome =
                        StepOutcome::Succeeded(output(env, self.channel, call.idempotency_key()));
                }
                attempt
            }
        }
    }
}

async fn inbox(
    env: &StepEnv,
    redactor: &Redactor,
    call: &StepCall<'_>,
    subject: Option<String>,
    text: Option<String>,
) -> Attempt {
    let started = chrono::Utc::now();
    let id = call.idempotency_key();
    if env.delivery == Delivery::DryRun {
        let request = redactor.redact_value(
            &serde_json::json!({"channel": "inbox", "subject": subject, "text": text}),
        );
        let outcome = StepOutcome::Succeeded(output(env, Channel::Inbox, id));
        return finished(outcome, started, Some(request));
    }
    let outcome = match notifications::insert(
        env.store.writer(),
        env.store.backend(),
        &notifications::NewNotification {
            id: id.clone(),
            flow_id: call.flow_id.to_string(),
            run_id: call.run_id.to_string(),
            step_id: call.step_id.to_string(),
            // The inbox is read through the API, where secrets are always `***` (SPEC §2).
            title: redactor.redact(&subject.unwrap_or_default()),
            text: redactor.redact(&text.unwrap_or_default()),
            created_at: started.timestamp_millis(),
        },
    )
    .await
    {
        Ok(()) => StepOutcome::Succeeded(serde_json::json!({"channel": "inbox", "id": id})),
        Err(e) => StepOutcome::Retry {
            error: format!("could not store the notification: {e}"),
            after: None,
        },
    };
    finished(outcome, started, None)
}

async fn email(
    env: &StepEnv,
    redactor: &Redactor,
    call: &StepCall<'_>,
    to: String,
    subject: Option<String>,
    text: Option<String>,
) -> Attempt {
    let started = chrono::Utc::now();
    // The record of the attempt is stored and shown: secrets in it become `***` (SPEC §2);
    // the message itself is sent as rendered.
    let request =
        redactor.redact_value(&serde_json::json!({"to": to, "subject": subject, "text": text}));
    if env.delivery == Delivery::DryRun {
        let outcome = StepOutcome::Succeeded(output(env, Channel::Email, call.idempotency_key()));
        return finished(outcome, started, Some(request));
    }
    let Some(mailer) = &env.mailer else {
        let error =
            "email is not configured: set FLOWD_SMTP_URL (e.g. smtp://127.0.0.1:2525)".to_string();
        return finished(
            StepOutcome::Fail {
                error,
                output: None,
            },
            started,
            Some(request),
        );
    };
    let outcome = match mailer
        .send(
            &to,
            subject.as_deref().unwrap_or(call.flow_id),
            text.as_deref().unwrap_or_default(),
        )
        .await
    {
        Ok(id) => StepOutcome::Succeeded(serde_json::json!({"channel": "email", "id": id})),
        Err(e) if e.is_retryable() => StepOutcome::Retry {
            error: redactor.redact(&e.to_string()),
            after: None,
        },
        Err(e) => StepOutcome::Fail {
            error: redactor.redact(&e.to_string()),
            output: None,
        },
    };
    finished(outcome, started, Some(request))
}

/// `{channel, id}`, and `dry_run: true` when nothing was sent.
fn output(env: &StepEnv, channel: Channel, id: String) -> serde_json::Value {
    let mut output = serde_json::json!({"channel": channel.as_str(), "id": id});
    if env.delivery == Delivery::DryRun {
        output["dry_run"] = serde_json::Value::Bool(true);
    }
    output
}

fn finished(
    outcome: StepOutcome,
    started: chrono::DateTime<chrono::Utc>,
    request: Option<serde_json::Value>,
) -> Attempt {
    let duration = (chrono::Utc::now() - started).num_milliseconds().max(0) as u64;
    Attempt {
        outcome,
        request,
        response: None,
        started_at: started,
        duration_ms: duration,
    }
}
