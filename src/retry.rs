//! Backoff with jitter, shared by the apply (transient provider errors) and the agent (failed
//! reconciles).

use std::time::{Duration, SystemTime};

/// `d` stretched by a random fraction of `jitter` (0 … 1) of itself.
pub fn jittered(d: Duration, jitter: f64) -> Duration {
    // No RNG dependency: the sub-second clock is random enough to spread retries apart.
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let frac = f64::from(nanos % 1_000_000) / 1_000_000.0;
    d + d.mul_f64(jitter.clamp(0.0, 1.0) * frac)
}

/// How often a step whose provider error is transient (or waiting) is tried in one apply.
pub const APPLY_ATTEMPTS: u32 = 4;

/// The pause before retry `attempt` (1-based) of a step: 1 s, 2 s, 4 s, … up to 8 s, or what
/// the provider asked for when it is longer, each stretched by up to half.
pub fn apply_delay(attempt: u32, asked: Option<Duration>) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(3));
    jittered(asked.map_or(base, |a| a.max(base)), 0.5)
}

/// The pause before readiness probe `attempt` (0-based) of an applied instance: 250 ms,
/// 500 ms, 1 s, 2 s, then 5 s, each stretched by up to a fifth, never past `left`.
pub fn ready_delay(attempt: u32, left: Duration) -> Duration {
    let base = Duration::from_millis(250u64 << attempt.min(3)).min(Duration::from_secs(5));
    let base = if attempt >= 4 { Duration::from_secs(5) } else { base };
    jittered(base, 0.2).min(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_probes_start_fast_and_settle_at_five_seconds_never_past_the_deadline() {
        for (attempt, ms) in [(0, 250), (1, 500), (2, 1000), (3, 2000), (4, 5000), (40, 5000)] {
            let d = ready_delay(attempt, Duration::from_mins(1));
            assert!(d >= Duration::from_millis(ms) && d <= Duration::from_millis(ms) * 6 / 5, "attempt {attempt}: {d:?}");
        }
        assert_eq!(ready_delay(9, Duration::from_millis(30)), Duration::from_millis(30));
    }

    #[test]
    fn apply_delays_double_up_to_eight_seconds_and_honour_what_the_provider_asks() {
        for (attempt, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)] {
            let d = apply_delay(attempt, None);
            assert!(d >= Duration::from_secs(base) && d <= Duration::from_secs(base) * 3 / 2, "attempt {attempt}: {d:?}");
        }
        let asked = apply_delay(1, Some(Duration::from_secs(20)));
        assert!(asked >= Duration::from_secs(20) && asked <= Duration::from_secs(30), "{asked:?}");
    }
}
