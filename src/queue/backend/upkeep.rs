//! Lease upkeep: the one timer per worker process that renews every lease it holds,
//! hands back stages dropped without settling and sweeps expired leases of dead workers
//! (behind the sweep gate); and the hand-back of a stopping worker.

use super::LeaseTable;
use crate::queue::{After, Queue, QueueError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken as CancelToken;

/// The one timer per worker process: renews every held lease, releases abandoned
/// stages and sweeps expired leases (of dead workers) back to the ready list; each round
/// also keeps this process's view of the server clock.
///
/// While the process holds leases a round runs every `queue.renew_every`. While it holds
/// none (an idle worker) there is nothing to renew: it looks again when the earliest lease
/// anyone holds can expire (the sweep says when), at least `renew_every` and at most
/// `queue.lease` later, so an idle fleet costs Redis a few commands per lease period. A
/// claim (or a stage abandoned) starts the `renew_every` rounds again at once.
///
/// It talks to Redis fail-fast: a failing call surfaces here instead of retrying inside
/// the queue, and renewals resume at the next tick once Redis answers. A lease also
/// expires when its worker is alive but could not reach Redis — and when this process
/// could not, neither, as far as it can tell, could the others. So sweeping waits for
/// the sweep gate: a full lease period after this process has Redis back, by which time
/// every live worker has renewed what it holds.
pub async fn maintain_leases(queue: Queue, table: Arc<LeaseTable>, stop: CancelToken) {
    let upkeep = Queue {
        mode: crate::queue::RetryMode::FailFast,
        ..queue
    };
    let every = upkeep.settings.renew_every;
    let lease = upkeep.settings.lease;
    let mut gate = SweepGate::new(lease, Instant::now());
    let mut next_round = tokio::time::Instant::now();
    loop {
        let idle = table.is_empty() && !table.has_abandoned();
        tokio::select! {
            _ = tokio::time::sleep_until(next_round) => {}
            _ = table.busy.notified(), if idle => {
                next_round = next_round.min(tokio::time::Instant::now() + every);
                continue;
            }
            _ = stop.cancelled() => break,
        }
        let started = Instant::now();
        // Contact first (renewals, hand-backs, a look at the leases that keeps the clock);
        // only a round whose contact went through in time may sweep.
        let contact = async {
            renew_held(&upkeep, &table).await?;
            release_abandoned(&upkeep, &table).await?;
            Ok::<_, QueueError>(upkeep.sweep_round(false).await?.1)
        };
        next_round = tokio::time::Instant::now() + every;
        let looked = contact.await;
        if let Some(at) = table.take_lost() {
            gate.lost(at);
        }
        let res = match looked {
            Ok(next) if gate.contact(started, every, Instant::now()) => match next {
                Some(t) if t <= upkeep.now_ms() => sweep(&upkeep).await,
                _ => Ok(next),
            },
            other => other,
        };
        match res {
            Ok(next_expiry) => {
                if table.is_empty() && !table.has_abandoned() {
                    // Nothing to renew: look again when a lease can expire and the gate
                    // lets this process sweep it.
                    let now = Instant::now();
                    let expiry = next_expiry.map_or(now + lease, |t| {
                        now + Duration::from_millis(t.saturating_sub(upkeep.now_ms()))
                    });
                    let target = expiry.max(gate.from) + Duration::from_millis(10);
                    let wait = target
                        .saturating_duration_since(now)
                        .clamp(every, lease.max(every));
                    next_round = tokio::time::Instant::now() + wait;
                }
            }
            Err(e) => {
                if gate.lost(Instant::now()) {
                    tracing::warn!(error = %e,
                        "Redis unreachable for lease upkeep; expired leases are not swept until \
                         it has answered for a full lease period.");
                } else {
                    tracing::debug!(error = %e, "Lease upkeep failed again.");
                }
            }
        }
    }
}

/// When the lease timer may sweep. A sweep hands back leases nobody renewed in time;
/// that is a dead worker's only if every live worker could have renewed meanwhile. This
/// process cannot see the others, so it goes by its own contact with Redis: after any
/// round that failed or ran late — and at start, not knowing what came before — it
/// sweeps nothing until Redis has answered it for a full lease period.
#[derive(Debug)]
struct SweepGate {
    lease: Duration,
    /// Contact is lost since this instant (`None`: Redis answers).
    lost_at: Option<Instant>,
    /// Sweeping is allowed again from this instant.
    from: Instant,
}

impl SweepGate {
    /// The gate of a process that connected at `now`.
    fn new(lease: Duration, now: Instant) -> Self {
        SweepGate {
            lease,
            lost_at: None,
            from: now + lease,
        }
    }

    /// A round that began at `started` got all its answers by `now`; `every` is the
    /// renewal period. Returns whether the round may sweep.
    fn contact(&mut self, started: Instant, every: Duration, now: Instant) -> bool {
        let took = now.duration_since(started);
        if let Some(since) = self.lost_at.take() {
            tracing::info!(
                unreachable_ms = now.duration_since(since).as_millis() as u64,
                "Redis answers again; expired leases are swept after a full lease period."
            );
            self.from = now + self.lease;
        } else if took > every {
            // Calls hung or were retried: this worker's renewals were late, and so,
            // probably, were everyone's.
            tracing::warn!(
                round_ms = took.as_millis() as u64,
                "Lease upkeep ran late; expired leases are swept after a full lease period."
            );
            self.from = now + self.lease;
        }
        now >= self.from
    }

    /// A round failed at `now`. Returns true when this is the first failure in a row.
    fn lost(&mut self, now: Instant) -> bool {
        let first = self.lost_at.is_none();
        self.lost_at.get_or_insert(now);
        first
    }
}

/// Renews every held lease; a lease found taken by another worker is forgotten.
async fn renew_held(queue: &Queue, table: &LeaseTable) -> Result<(), QueueError> {
    let held = table.held();
    let lost = queue.renew(&held).await?;
    for id in &lost {
        // A stage that settled between the snapshot and the renewal cleared its own
        // token: not a loss. Only a lease still held here was taken by another worker.
        let Some((_, token)) = held.iter().find(|(h, _)| h == id) else {
            continue;
        };
        if table.holds(id, token) {
            tracing::warn!(job_id = %id, "Lease lost; another worker owns this job now.");
            table.forget(id, token);
        }
    }
    Ok(())
}

/// Sweeps expired leases back; returns the earliest lease expiry left.
async fn sweep(queue: &Queue) -> Result<Option<u64>, QueueError> {
    let (recovered, next) = queue.sweep_round(true).await?;
    if recovered > 0 {
        crate::metrics::lease_recoveries(recovered);
        tracing::info!(recovered, "Expired leases returned to the queue.");
    }
    Ok(next)
}

/// One round of lease upkeep without the sweep gate (for tests that drive the worker step
/// by step): renew, release abandoned stages, sweep.
pub async fn maintain_once(queue: &Queue, table: &LeaseTable) -> Result<(), QueueError> {
    renew_held(queue, table).await?;
    release_abandoned(queue, table).await?;
    sweep(queue).await.map(|_| ())
}

/// Hands every abandoned stage back to the ready list (state unchanged). On an error the
/// ones not handed back stay abandoned, for the next try.
pub async fn release_abandoned(queue: &Queue, table: &LeaseTable) -> Result<usize, QueueError> {
    let abandoned = table.take_abandoned();
    for (i, (id, token)) in abandoned.iter().enumerate() {
        let owner = crate::queue::Owner { job_id: id, token };
        let tx = crate::job::Transition::stay(After::Release);
        if let Err(e) = queue.apply(owner, &table.nonce(token), &tx, None).await {
            let mut left = table.abandoned.lock().expect("lease table");
            left.extend(abandoned[i..].iter().cloned());
            return Err(e);
        }
        tracing::info!(job_id = %id, "Stage abandoned; job released to the queue.");
    }
    Ok(abandoned.len())
}

/// Hands back what a stopping worker still holds, giving up at `deadline`: what is not
/// released by then (Redis unreachable) is left to lease expiry and a sweep elsewhere.
/// Returns (released, left behind).
pub async fn hand_back(
    queue: &Queue,
    table: &LeaseTable,
    deadline: tokio::time::Instant,
) -> (usize, usize) {
    let abandoned = table.take_abandoned();
    let mut released = 0;
    for (id, token) in &abandoned {
        let owner = crate::queue::Owner { job_id: id, token };
        let tx = crate::job::Transition::stay(After::Release);
        let nonce = table.nonce(token);
        match tokio::time::timeout_at(deadline, queue.apply(owner, &nonce, &tx, None)).await {
            Ok(Ok(_)) => {
                released += 1;
                tracing::info!(job_id = %id, "Stage cut off; job released to the queue.");
            }
            Ok(Err(e)) => tracing::warn!(job_id = %id, error = %e,
                "Could not hand the job back; its lease will expire."),
            Err(_) => break,
        }
    }
    (released, abandoned.len() - released)
}

#[cfg(test)]
mod tests {
    use super::SweepGate;
    use std::time::{Duration, Instant};

    const LEASE: Duration = Duration::from_secs(2);
    const EVERY: Duration = Duration::from_millis(400);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A round starting at `ms` that took 5 ms.
    fn round(g: &mut SweepGate, t0: Instant, ms: u64) -> bool {
        g.contact(at(t0, ms), EVERY, at(t0, ms + 5))
    }

    #[test]
    fn a_new_process_sweeps_only_after_a_lease_period() {
        let t0 = Instant::now();
        let mut g = SweepGate::new(LEASE, t0);
        assert!(!round(&mut g, t0, 400));
        assert!(!round(&mut g, t0, 1600));
        assert!(round(&mut g, t0, 2000));
    }

    #[test]
    fn after_an_outage_sweeping_waits_a_lease_period_from_the_reconnect() {
        let t0 = Instant::now();
        let mut g = SweepGate::new(LEASE, t0);
        assert!(round(&mut g, t0, 2400));
        assert!(g.lost(at(t0, 2800)), "the first failure is reported");
        assert!(!g.lost(at(t0, 3200)), "later ones are not");
        // Redis answers again at 8005 ms: nothing is swept before 10005 ms.
        assert!(!round(&mut g, t0, 8000));
        assert!(!round(&mut g, t0, 9600));
        assert!(round(&mut g, t0, 10_000));
    }

    #[test]
    fn a_round_that_ran_late_counts_as_an_outage() {
        let t0 = Instant::now();
        let mut g = SweepGate::new(LEASE, t0);
        assert!(round(&mut g, t0, 2400));
        // A call hung for 5 s and then answered.
        assert!(!g.contact(at(t0, 2800), EVERY, at(t0, 7800)));
        assert!(!round(&mut g, t0, 9000));
        assert!(round(&mut g, t0, 9800));
    }
}
