//! How long a failed attempt waits before the next one (SPEC §4), as a pure function in the
//! manner of windmill's `Retry::interval`: no clock and no randomness inside. The runner passes
//! the attempt number and a jitter sample it drew, so its transitions stay deterministic under
//! test.
//!
//! Backoff is `delay × 2^(attempt-1)`, spread by ±20 % jitter, then capped at `max_delay`. A
//! `Retry-After` from the target is honoured as a lower bound up to `max_delay`: the flow's
//! author wrote `max_delay` as the longest any one wait may be, and a header from the target
//! (hostile, broken, or `86400` on a 2 s policy) must not override that. With the default
//! `max_delay` of 2 h a target can still ask for up to two hours.

use std::time::Duration;

/// Relative spread of the jitter: a sample of ±1 moves the delay by ±20 %.
const JITTER_SPREAD: f64 = 0.2;

/// How long to wait after attempt number `attempt` (1-based) failed. `jitter` is a sample in
/// [-1, 1]; values outside are clamped and NaN counts as 0.
pub fn backoff(
    attempt: u32,
    delay: Duration,
    max_delay: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let computed = exponential(attempt, delay, max_delay, jitter);
    match retry_after {
        Some(after) => computed.max(after.min(max_delay)),
        None => computed,
    }
}

fn exponential(attempt: u32, delay: Duration, max_delay: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    // Float maths saturates to infinity instead of overflowing; the cap brings it back.
    let exponent = attempt.saturating_sub(1).min(1023) as i32;
    let secs = delay.as_secs_f64() * 2f64.powi(exponent) * (1.0 + JITTER_SPREAD * jitter);
    let capped = secs.min(max_delay.as_secs_f64());
    Duration::try_from_secs_f64(capped).unwrap_or(max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_without_jitter() {
        let d = |n| backoff(n, S(10), S(7200), None, 0.0);
        assert_eq!(d(0), S(10), "attempt 0 is treated as the first");
        assert_eq!(d(1), S(10));
        assert_eq!(d(2), S(20));
        assert_eq!(d(3), S(40));
        assert_eq!(d(9), S(2560));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff(10, S(10), S(7200), None, 0.0), S(5120));
        assert_eq!(backoff(11, S(10), S(7200), None, 0.0), S(7200));
        assert_eq!(backoff(u32::MAX, S(10), S(7200), None, 1.0), S(7200));
        let huge = Duration::MAX;
        assert_eq!(backoff(64, huge, S(60), None, 0.0), S(60));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(backoff(2, S(10), S(7200), None, 1.0), S(24));
        assert_eq!(backoff(2, S(10), S(7200), None, -1.0), S(16));
        assert_eq!(backoff(2, S(10), S(7200), None, 5.0), S(24), "clamped");
        assert_eq!(backoff(2, S(10), S(7200), None, f64::NAN), S(20));
        for step in 0..=20 {
            let jitter = -1.0 + f64::from(step) * 0.1;
            let d = backoff(3, S(10), S(7200), None, jitter);
            assert!(d >= S(32) && d <= S(48), "{jitter}: {d:?}");
        }
        assert_eq!(
            backoff(11, S(10), S(7200), None, 1.0),
            S(7200),
            "jitter never exceeds the cap"
        );
    }

    #[test]
    fn retry_after_is_a_lower_bound_up_to_max_delay() {
        assert_eq!(backoff(1, S(10), S(60), Some(S(30)), 0.0), S(30));
        assert_eq!(backoff(1, S(10), S(60), Some(S(1)), 0.0), S(10));
        assert_eq!(
            backoff(1, S(10), S(60), Some(S(600)), 0.0),
            S(60),
            "capped at max_delay"
        );
        // The probe's case: a day asked for, a 2 s policy.
        let two_s = Duration::from_secs(2);
        let ms = Duration::from_millis;
        assert_eq!(backoff(1, ms(100), two_s, Some(S(86_400)), 0.0), two_s);
        // The default policy (10 s, 2 h) honours up to two hours.
        assert_eq!(backoff(1, S(10), S(7200), Some(S(5400)), 0.0), S(5400));
        assert_eq!(backoff(1, S(10), S(7200), Some(S(86_400)), 0.0), S(7200));
        assert_eq!(backoff(20, S(10), S(7200), Some(S(5)), 0.0), S(7200));
    }
}
