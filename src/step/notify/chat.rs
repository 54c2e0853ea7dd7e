//! Slack and Discord incoming-webhook payloads for the `notify` step. These are pure functions:
//! the runner POSTs the value through flowd's guarded HTTP client, so a chat notification gets
//! the same address checks, retries and recorded attempts as an `http` step, and nothing here
//! opens a connection. The subject becomes a bold first line (Slack mrkdwn `*…*`, Discord
//! markdown `**…**`) and the whole message is cut to the service's length limit with an ellipsis,
//! because both services refuse (Discord) or silently truncate (Slack) longer messages.

use serde_json::{Value, json};

/// Slack truncates a message's `text` beyond this many characters.
pub const SLACK_TEXT_LIMIT: usize = 40_000;

/// Discord answers 400 to a message whose `content` is longer than this.
pub const DISCORD_CONTENT_LIMIT: usize = 2_000;

const ELLIPSIS: char = '…';

/// `{"text": "*subject*\ntext"}` for a Slack incoming webhook.
pub fn slack_payload(subject: Option<&str>, text: Option<&str>) -> Value {
    let message = compose(subject, text, "*");
    json!({ "text": truncate(message, SLACK_TEXT_LIMIT) })
}

/// `{"content": "**subject**\ntext", "allowed_mentions": {...}}` for a Discord webhook.
///
/// `allowed_mentions` keeps `@everyone` and `@here` from pinging: the text is rendered from
/// entity data, and a guest who calls themself "@everyone" must not wake the whole server.
/// Explicit user and role mentions (`<@id>`, `<@&id>`) written in a flow still work.
pub fn discord_payload(subject: Option<&str>, text: Option<&str>) -> Value {
    let message = compose(subject, text, "**");
    json!({
        "content": truncate(message, DISCORD_CONTENT_LIMIT),
        "allowed_mentions": { "parse": ["users", "roles"] },
    })
}

/// The bold subject line, then the text; either may be missing or blank.
fn compose(subject: Option<&str>, text: Option<&str>, bold: &str) -> String {
    let subject = subject.map(one_line).filter(|s| !s.is_empty());
    let text = text.filter(|t| !t.trim().is_empty());
    match (subject, text) {
        (Some(subject), Some(text)) => format!("{bold}{subject}{bold}\n{text}"),
        (Some(subject), None) => format!("{bold}{subject}{bold}"),
        (None, Some(text)) => text.to_string(),
        (None, None) => String::new(),
    }
}

/// Markdown bold does not span lines, and spaces just inside the markers break it in Slack.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `message` to at most `limit` characters, the last being an ellipsis. Length is counted
/// in UTF-16 code units, the way JavaScript counts: never less than the number of code points,
/// so the result fits whichever way the service counts.
fn truncate(message: String, limit: usize) -> String {
    if utf16_len(&message) <= limit {
        return message;
    }
    if limit == 0 {
        return String::new();
    }
    let budget = limit.saturating_sub(ELLIPSIS.len_utf16());
    let mut used = 0;
    let mut end = 0;
    for (at, c) in message.char_indices() {
        used += c.len_utf16();
        if used > budget {
            break;
        }
        end = at + c.len_utf8();
    }
    let mut cut = message[..end].trim_end().to_string();
    cut.push(ELLIPSIS);
    cut
}

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack_text(subject: Option<&str>, text: Option<&str>) -> String {
        let payload = slack_payload(subject, text);
        payload["text"].as_str().unwrap_or_default().to_string()
    }

    fn discord_content(subject: Option<&str>, text: Option<&str>) -> String {
        let payload = discord_payload(subject, text);
        payload["content"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn slack_shape() {
        let payload = slack_payload(Some("New guest"), Some("Ada Lovelace\nconfirmed"));
        assert_eq!(
            payload,
            json!({"text": "*New guest*\nAda Lovelace\nconfirmed"})
        );
    }

    #[test]
    fn discord_shape() {
        let payload = discord_payload(Some("New guest"), Some("Café ✓"));
        assert_eq!(
            payload,
            json!({
                "content": "**New guest**\nCafé ✓",
                "allowed_mentions": {"parse": ["users", "roles"]},
            })
        );
    }

    #[test]
    fn missing_or_blank_parts() {
        assert_eq!(slack_text(None, Some("only text")), "only text");
        assert_eq!(slack_text(Some("only subject"), None), "*only subject*");
        assert_eq!(slack_text(Some("  "), Some("text")), "text");
        assert_eq!(slack_text(Some("subject"), Some(" \n")), "*subject*");
        assert_eq!(slack_text(None, None), "");
        assert_eq!(discord_content(Some("s"), None), "**s**");
        assert_eq!(discord_content(None, Some("t")), "t");
    }

    #[test]
    fn subject_is_one_trimmed_line() {
        assert_eq!(
            slack_text(Some("  New\n guest \t"), Some("x")),
            "*New guest*\nx"
        );
        assert_eq!(discord_content(Some("a\r\nb"), None), "**a b**");
    }

    #[test]
    fn short_messages_are_untouched() {
        let text = "x".repeat(DISCORD_CONTENT_LIMIT - "**ab**\n".len());
        let content = discord_content(Some("ab"), Some(&text));
        assert_eq!(utf16_len(&content), DISCORD_CONTENT_LIMIT);
        assert!(!content.ends_with(ELLIPSIS));
    }

    #[test]
    fn discord_is_cut_to_2000_with_an_ellipsis() {
        let text = "x".repeat(3_000);
        let content = discord_content(Some("Subject"), Some(&text));
        assert_eq!(utf16_len(&content), DISCORD_CONTENT_LIMIT);
        assert!(content.starts_with("**Subject**\nxxx"));
        assert!(content.ends_with("x…"));
        // Whitespace before the cut is dropped rather than left dangling before the ellipsis.
        // 8 + 181 × 11 = 1,999 units: the cut lands just after a space.
        let content = discord_content(Some("Sub"), Some(&"abcdefghij ".repeat(200)));
        assert!(content.ends_with("abcdefghij…"), "{content}");
        assert_eq!(utf16_len(&content), DISCORD_CONTENT_LIMIT - 1);
    }

    #[test]
    fn slack_is_cut_to_40000() {
        let text = "é".repeat(50_000);
        let message = slack_text(None, Some(&text));
        assert_eq!(message.chars().count(), SLACK_TEXT_LIMIT);
        assert!(message.ends_with("é…"));
    }

    #[test]
    fn truncation_never_splits_a_character() {
        // "😀" is two UTF-16 units: the cut must land between emoji, never inside one.
        let text = "😀".repeat(1_500);
        let content = discord_content(None, Some(&text));
        assert!(utf16_len(&content) <= DISCORD_CONTENT_LIMIT);
        assert_eq!(content.chars().filter(|c| *c == '😀').count(), 999);
        assert!(content.ends_with('…'));
    }

    #[test]
    fn tiny_limits_do_not_panic() {
        assert_eq!(truncate("abc".to_string(), 0), "");
        assert_eq!(truncate("abc".to_string(), 1), "…");
        assert_eq!(truncate("abc".to_string(), 2), "a…");
        assert_eq!(truncate("abc".to_string(), 3), "abc");
    }
}
