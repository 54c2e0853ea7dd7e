//! Run and step states, stored as snake_case text (so the API and the database agree without a
//! second enum). Run: `pending` → `running` → `succeeded` | `failed` | `cancelled`, with
//! `waiting` for a delay step or a retry backoff, and `held` while its flow is paused (nothing is
//! sent until it is released). Step: `pending`, `running`, `succeeded`,
//! `failed`, `skipped`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Waiting,
    /// Its flow is paused: kept, not claimed, released (or discarded) on resume.
    Held,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Held,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Held => "held",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        match self {
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => true,
            RunStatus::Pending | RunStatus::Running | RunStatus::Waiting | RunStatus::Held => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// Why a run that is not finished is not executing (SPEC §5 `waiting_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitingReason {
    /// Its flow is paused.
    Held,
    /// Its flow's `rate_limit` put its start off.
    RateLimited,
    /// Its flow runs as many runs as its `concurrency` allows.
    Concurrency,
    /// A run with the same `order_key` goes first.
    Order,
    /// A step waits for its next attempt.
    Backoff,
    /// A `delay` step waits.
    Delay,
    /// Its workspace is over its quota.
    Quota,
}

/// What tells why a run waits, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFacts<'a> {
    pub status: RunStatus,
    /// When the claim may take it.
    pub due_at: Option<i64>,
    /// When a waiting run wakes.
    pub wake_at: Option<i64>,
    /// The kind of the step it is at, if that step has started.
    pub step_kind: Option<&'a str>,
    /// Whether its flow is paused now.
    pub flow_paused: bool,
    /// Whether an earlier run with the same order key is not finished.
    pub order_blocked: bool,
    /// Whether its flow executes as many runs as its `concurrency` allows.
    pub flow_full: bool,
}

impl WaitFacts<'_> {
    /// Why the run waits at `now`, and until when where that is known. `None` for a run that
    /// executes, is finished, or is due and about to be claimed.
    pub fn reason(&self, now: i64) -> Option<(WaitingReason, Option<i64>)> {
        match self.status {
            // A quota's hold has a wake-up time (the next window); a paused flow's has none.
            RunStatus::Held if self.wake_at.is_some() && !self.flow_paused => {
                Some((WaitingReason::Quota, self.wake_at))
            }
            RunStatus::Held => Some((WaitingReason::Held, None)),
            // A paused flow's runs are not claimed, whatever else they wait for.
            RunStatus::Pending | RunStatus::Waiting if self.flow_paused => {
                Some((WaitingReason::Held, None))
            }
            RunStatus::Waiting if self.step_kind == Some("delay") => {
                Some((WaitingReason::Delay, self.wake_at))
            }
            RunStatus::Waiting => Some((WaitingReason::Backoff, self.wake_at)),
            RunStatus::Pending if self.order_blocked => Some((WaitingReason::Order, None)),
            RunStatus::Pending => match self.due_at {
                Some(due) if due > now => Some((WaitingReason::RateLimited, Some(due))),
                _ if self.flow_full => Some((WaitingReason::Concurrency, None)),
                _ => None,
            },
            RunStatus::Running
            | RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::Cancelled => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<RunStatus, UnknownStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

impl FromStr for StepStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<StepStatus, UnknownStatus> {
        [
            StepStatus::Pending,
            StepStatus::Running,
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Skipped,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_text() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!("done".parse::<RunStatus>().is_err());
        assert_eq!("skipped".parse::<StepStatus>(), Ok(StepStatus::Skipped));
    }

    #[test]
    fn a_waiting_run_says_why_and_until_when() {
        let facts = |status, due_at, step_kind, flow_paused| WaitFacts {
            status,
            due_at,
            wake_at: Some(50),
            step_kind,
            flow_paused,
            order_blocked: false,
            flow_full: false,
        };
        use RunStatus::*;
        use WaitingReason as W;
        let cases = [
            (facts(Held, None, None, true), Some((W::Held, None))),
            (facts(Held, None, None, false), Some((W::Quota, Some(50)))),
            (
                WaitFacts {
                    wake_at: None,
                    ..facts(Held, None, None, false)
                },
                Some((W::Held, None)),
            ),
            (facts(Pending, Some(5), None, true), Some((W::Held, None))),
            (
                facts(Waiting, Some(50), Some("http"), true),
                Some((W::Held, None)),
            ),
            (
                facts(Waiting, Some(50), Some("delay"), false),
                Some((W::Delay, Some(50))),
            ),
            (
                facts(Waiting, Some(50), Some("http"), false),
                Some((W::Backoff, Some(50))),
            ),
            (
                facts(Pending, Some(20), None, false),
                Some((W::RateLimited, Some(20))),
            ),
            (facts(Pending, Some(10), None, false), None),
            (
                WaitFacts {
                    order_blocked: true,
                    ..facts(Pending, Some(10), None, false)
                },
                Some((W::Order, None)),
            ),
            (
                WaitFacts {
                    flow_full: true,
                    ..facts(Pending, Some(10), None, false)
                },
                Some((W::Concurrency, None)),
            ),
            (
                WaitFacts {
                    order_blocked: true,
                    ..facts(Pending, Some(10), None, true)
                },
                Some((W::Held, None)),
            ),
            (facts(Running, Some(10), None, false), None),
            (facts(Succeeded, None, None, false), None),
        ];
        for (facts, expected) in cases {
            assert_eq!(facts.reason(10), expected, "{facts:?}");
        }
    }

    #[test]
    fn only_final_states_are_terminal() {
        let terminal: Vec<_> = RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::Cancelled
            ]
        );
    }
}
