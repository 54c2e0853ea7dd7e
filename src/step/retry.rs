//! Retry policies of steps with side effects: the `retry` of a step or of the flow's settings
//! as written, its validation, and the policy resolved from both over the defaults of SPEC §4.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::diagnostic::{Diagnostic, FlowPath};
use crate::core::duration::Duration as FlowDuration;
use crate::step::check::{Context, Findings};

/// How often and how patiently a failing step is retried.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub attempts: Option<u32>,
    /// Wait before the second attempt; doubles each time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FlowDuration>,
    /// Longest wait between two attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<FlowDuration>,
}

impl RetryPolicy {
    /// Checks a policy written at `path` (a step's or the flow's `retry`): `delay` is at most
    /// `max_delay`.
    pub fn validate(&self, path: &FlowPath, cx: &Context<'_>) -> Vec<Diagnostic> {
        let mut found = Findings::new(cx);
        if let (Some(delay), Some(max)) = (self.delay, self.max_delay)
            && delay > max
        {
            found.error(
                path.key("delay"),
                format!("`delay` {delay} is longer than `max_delay` {max}"),
            );
        }
        found.finish()
    }
}

/// Default retry policy of steps with side effects (SPEC §4): 12 attempts, 10 s, at most 2 h.
pub const DEFAULT_RETRY: Retry = Retry {
    attempts: 12,
    delay: Duration::from_secs(10),
    max_delay: Duration::from_secs(2 * 3600),
};

/// A resolved retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub delay: Duration,
    pub max_delay: Duration,
}

impl Retry {
    /// The step's policy over the flow's over the defaults, field by field.
    pub fn resolve(step: Option<&RetryPolicy>, flow: Option<&RetryPolicy>) -> Retry {
        let pick =
            |f: fn(&RetryPolicy) -> Option<u64>| step.and_then(f).or_else(|| flow.and_then(f));
        Retry {
            attempts: step
                .and_then(|p| p.attempts)
                .or_else(|| flow.and_then(|p| p.attempts))
                .unwrap_or(DEFAULT_RETRY.attempts),
            delay: pick(|p| p.delay.map(|d| d.as_millis()))
                .map_or(DEFAULT_RETRY.delay, Duration::from_millis),
            max_delay: pick(|p| p.max_delay.map(|d| d.as_millis()))
                .map_or(DEFAULT_RETRY.max_delay, Duration::from_millis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_resolves_field_by_field() {
        let step = RetryPolicy {
            attempts: Some(3),
            delay: None,
            max_delay: None,
        };
        let flow = RetryPolicy {
            attempts: Some(9),
            delay: Some(FlowDuration::from_secs(2)),
            max_delay: None,
        };
        let r = Retry::resolve(Some(&step), Some(&flow));
        assert_eq!(r.attempts, 3);
        assert_eq!(r.delay, Duration::from_secs(2));
        assert_eq!(r.max_delay, Duration::from_secs(2 * 3600));
    }

    /// SPEC §4's defaults, written out here rather than read from `DEFAULT_RETRY`, so a changed
    /// constant fails this test.
    #[test]
    fn the_defaults_are_the_specs_12_attempts_10_s_2_h() {
        let spec = Retry {
            attempts: 12,
            delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(7200),
        };
        assert_eq!(Retry::resolve(None, None), spec);
        assert_eq!(Retry::resolve(Some(&RetryPolicy::default()), None), spec);
    }
}
