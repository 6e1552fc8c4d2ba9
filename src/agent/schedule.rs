//! When the agent reconciles: on start, on a trigger (webhook, resume), when a provider's watch
//! sees a change made outside tend, every fetch interval (jittered), every drift interval between
//! fetches, and after a failure with exponential, jittered backoff that a success resets.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{AgentOptions, Reconciled, Shared};
use crate::retry::jittered;

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    Start,
    Trigger,
    Interval,
    Drift,
}

/// The pause after `failures` failed reconciles in a row: 10 s, 20 s, 40 s, … up to `max`,
/// each stretched by up to a fifth so that agents that failed together do not retry together.
pub(crate) fn backoff(failures: u32, max: Duration) -> Duration {
    jittered(Duration::from_secs(5).saturating_mul(1 << failures.min(10)), 0.2).min(max)
}

/// Run the agent until stopped (or once). Returns the last reconcile's result.
pub async fn run(opts: AgentOptions, shared: std::sync::Arc<Shared>) -> Reconciled {
    let (o, s) = (&opts, &shared);
    run_loop(o, s, move |fetch, why| super::reconcile::reconcile(o, s, fetch, why)).await
}

/// The loop, with what one reconcile does given (the agent's, or a test's).
pub(crate) async fn run_loop<F, Fut>(opts: &AgentOptions, shared: &Shared, mut reconcile: F) -> Reconciled
where
    F: FnMut(bool, Why) -> Fut,
    Fut: std::future::Future<Output = Reconciled>,
{
    let mut why = Why::Start;
    let mut failures: u32 = 0;
    let mut last_fetch = Instant::now();
    loop {
        let fetch = why != Why::Drift;
        let last = reconcile(fetch, why).await;
        if fetch {
            last_fetch = Instant::now();
        }
        if opts.once || shared.cancel.load(Ordering::SeqCst) {
            return last;
        }
        let eff = shared.effective(opts);
        // A refused commit is not retried faster: the agent carries on with the last good one.
        let healthy = matches!(last, Reconciled::Success | Reconciled::Refused(_));
        let wait = if healthy {
            failures = 0;
            let next_fetch = jittered(eff.interval, eff.jitter).saturating_sub(last_fetch.elapsed());
            eff.drift_interval.map_or(next_fetch, |d| d.min(next_fetch))
        } else {
            failures += 1;
            let pause = backoff(failures, opts.max_backoff);
            tracing::info!(failures, backoff_s = pause.as_secs(), "reconcile failed; retrying after backoff");
            pause
        };
        tokio::select! {
            () = shared.stop.notified() => return last,
            () = shared.trigger.notified() => why = Why::Trigger,
            () = shared.drift.notified(), if healthy => why = Why::Drift,
            () = tokio::time::sleep(wait) => {
                why = if healthy && last_fetch.elapsed() + Duration::from_millis(50) < eff.interval { Why::Drift } else { Why::Interval };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::agent::{Mode, Origin};

    fn opts(interval: u64, drift: Option<u64>) -> AgentOptions {
        AgentOptions {
            origin: Origin::Directory("/nowhere".into()),
            load: crate::config::LoadOptions::default(),
            state: None,
            interval: Some(Duration::from_secs(interval)),
            jitter: Some(0.0),
            drift_interval: drift.map(Duration::from_secs),
            max_backoff: Duration::from_mins(1),
            mode: Some(Mode::Apply),
            once: false,
            parallelism: None,
            webhook_secret: None,
            who: "test".into(),
            #[cfg(feature = "git")]
            signers: None,
        }
    }

    /// Run the loop with reconciles that return `results` in turn (then stop the agent), and
    /// return when each ran (seconds since the start, on paused time), with its fetch and why.
    async fn schedule(opts: AgentOptions, results: Vec<Reconciled>) -> Vec<(u64, bool, Why)> {
        let shared = Shared::new(&opts);
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut left = results.into_iter();
        let (s, log) = (shared.clone(), seen.clone());
        run_loop(&opts, &shared, move |fetch, why| {
            log.lock().unwrap().push((start.elapsed().as_secs(), fetch, why));
            let next = left.next();
            if next.is_none() {
                s.shutdown();
            }
            std::future::ready(next.unwrap_or(Reconciled::Success))
        })
        .await;
        seen.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_with_jitter_and_a_success_resets_it() {
        let failed = || Reconciled::Failed("boom".into());
        let runs = schedule(opts(300, None), vec![failed(), failed(), failed(), failed(), Reconciled::Success, failed()]).await;
        let times: Vec<u64> = runs.iter().map(|r| r.0).collect();
        // 10 s, 20 s, 40 s (each up to a fifth longer), then capped at 60 s; after the success
        // the next run is one interval later; a failure after it backs off from 10 s again.
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, base) in gaps.iter().zip([10, 20, 40, 60]) {
            assert!(*gap >= base && *gap <= base * 6 / 5, "gaps {gaps:?}");
        }
        assert_eq!(gaps[4], 300, "a success waits the interval: {gaps:?}");
        assert!(gaps[5] >= 10 && gaps[5] <= 12, "reset after the success: {gaps:?}");
        assert!(runs.iter().all(|r| r.1), "failed reconciles fetch again");
    }

    #[tokio::test(start_paused = true)]
    async fn drift_runs_between_fetches_and_a_refused_commit_is_not_retried_faster() {
        let runs = schedule(opts(60, Some(20)), vec![Reconciled::Success; 4]).await;
        assert_eq!(
            runs,
            [(0, true, Why::Start), (20, false, Why::Drift), (40, false, Why::Drift), (60, true, Why::Interval), (80, false, Why::Drift)],
            "{runs:?}"
        );
        let refused = schedule(opts(60, None), vec![Reconciled::Refused("unsigned".into()), Reconciled::Success]).await;
        assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 60, 120], "{refused:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_wakes_the_loop_at_once() {
        let o = opts(3600, None);
        let shared = Shared::new(&o);
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (shared.clone(), seen.clone());
        let waker = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(7)).await;
            waker.trigger.notify_one();
        });
        run_loop(&o, &shared, move |_, why| {
            log.lock().unwrap().push((start.elapsed().as_secs(), why));
            if log.lock().unwrap().len() == 2 {
                s.shutdown();
            }
            std::future::ready(Reconciled::Success)
        })
        .await;
        assert_eq!(*seen.lock().unwrap(), [(0, Why::Start), (7, Why::Trigger)]);
    }
}
