//! [`Held`]: what this process holds of the app's tasks, for the rule that a suspect runs
//! alone. Shared by the backends with leases (Redis, PostgreSQL).
//!
//! A *suspect* is a task whose worker vanished while running it (its lease expired after it
//! started): maybe the task itself crashes its worker process. Running it beside other tasks
//! would let it take them down too, again and again, until they are dead-lettered with it.
//! So a suspect is claimed only by a process that holds no other task, and while it runs that
//! process claims nothing else, until it is acknowledged or given back, or has run for one
//! lease without crashing its process (then it is not the crasher, and the process goes on).
//!
//! The broker learns what the process holds from its own calls: a claim adds leases; an
//! acknowledgement, a requeue, or a lease reported lost by `renew` or `started` removes them;
//! `renew` and `started` are signs of life. A lease without a sign of life for a whole lease
//! duration has expired in Redis and is forgotten here too (a worker that dropped a task
//! without telling the broker does not block suspects for ever).

use std::collections::HashMap;
use std::time::Duration;

use crate::backend::{Delivery, Lease};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What this process holds of the app's tasks (its leases, and the suspect it runs), kept by a
/// backend from its own calls, so that a suspect runs alone (see the module docs).
#[derive(Debug)]
pub struct Held {
    lease: Duration,
    state: Mutex<State>,
    /// Notified whenever a lease goes.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// Each held lease with its last sign of life.
    leases: HashMap<Lease, Instant>,
    /// The suspect this process runs, and since when (its claim, then its start).
    suspect: Option<(Lease, Instant)>,
    /// When leases without a sign of life are looked for next (not on every claim).
    next_purge: Instant,
}

impl Held {
    /// Nothing held yet; `lease` is the backend's lease duration.
    pub fn new(lease: Duration) -> Self {
        Held {
            lease,
            state: Mutex::new(State {
                leases: HashMap::new(),
                suspect: None,
                next_purge: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    /// A claim handed these tasks to this process (`suspect`: the one task is a suspect).
    pub fn claimed(&self, deliveries: &[Delivery], suspect: bool) {
        let now = Instant::now();
        let mut state = self.state.lock();
        for d in deliveries {
            state.leases.insert(d.lease(), now);
        }
        if suspect {
            state.suspect = deliveries.first().map(|d| (d.lease(), now));
        }
    }

    /// [`claimed`](Self::claimed), the first `started` deliveries started by the claim itself
    /// ([`Broker::claim_starting`](crate::backend::Broker::claim_starting)).
    pub fn claimed_starting(&self, deliveries: &[Delivery], suspect: bool, started: usize) {
        self.claimed(deliveries, suspect);
        if started > 0 {
            let leases: Vec<Lease> = deliveries
                .iter()
                .take(started)
                .map(Delivery::lease)
                .collect();
            self.alive(&leases, true);
        }
    }

    /// These leases were renewed (`started`: their tasks start now).
    pub fn alive(&self, leases: &[Lease], started: bool) {
        let now = Instant::now();
        let mut state = self.state.lock();
        for lease in leases {
            if let Some(seen) = state.leases.get_mut(lease) {
                *seen = now;
            }
        }
        if started {
            if let Some((suspect, since)) = &mut state.suspect {
                if leases.contains(suspect) {
                    *since = now;
                }
            }
        }
    }

    /// The answer of a `renew` or `started` call for `leases`: those in `lost` are gone, the
    /// others are alive (`started`: their tasks start now).
    pub fn note_lost(&self, leases: &[Lease], lost: &[Lease], started: bool) {
        if lost.is_empty() {
            self.alive(leases, started);
        } else {
            let alive: Vec<Lease> = leases
                .iter()
                .filter(|l| !lost.contains(l))
                .copied()
                .collect();
            self.alive(&alive, started);
            self.gone(lost);
        }
    }

    /// These leases are no longer held (acknowledged, given back, or lost).
    pub fn gone<'a>(&self, leases: impl IntoIterator<Item = &'a Lease>) {
        let mut state = self.state.lock();
        let mut changed = false;
        for lease in leases {
            changed |= state.leases.remove(lease).is_some();
            if state.suspect.is_some_and(|(suspect, _)| suspect == *lease) {
                state.suspect = None;
                changed = true;
            }
        }
        drop(state);
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Whether the process holds no task (forgetting leases without a sign of life for a
    /// whole lease duration: they have expired).
    pub fn is_idle(&self) -> bool {
        let mut state = self.state.lock();
        if state.leases.is_empty() {
            return true;
        }
        let now = Instant::now();
        if now >= state.next_purge {
            let lease = self.lease;
            state
                .leases
                .retain(|_, seen| now.saturating_duration_since(*seen) < lease);
            state.next_purge = now + lease / 4;
        }
        state.leases.is_empty()
    }

    /// How much longer this process's suspect runs alone (`None`: no suspect, or it has run a
    /// whole lease).
    pub fn suspect_alone_for(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let (_, since) = state.suspect?;
        let left = (since + self.lease).saturating_duration_since(now);
        if left.is_zero() {
            state.suspect = None;
            return None;
        }
        Some(left)
    }

    /// Waits until a lease goes, at most `at_most`; `ready` is checked after registering for
    /// the notification, so a change in between is not missed.
    pub async fn wait_until(&self, at_most: Duration, ready: impl Fn(&Held) -> bool) {
        let deadline = Instant::now() + at_most;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::payload::Payload;
    use uuid::Uuid;

    fn delivery(token: u64) -> Delivery {
        Delivery {
            uuid: Uuid::new_v4(),
            task_name: "t".into(),
            priority: 0,
            args: Payload::default(),
            attempt: 1,
            token,
            meta: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspect_runs_alone_until_it_goes_or_has_run_a_lease() {
        let held = Held::new(Duration::from_secs(3));
        assert!(held.is_idle());
        let suspect = delivery(1);
        held.claimed(std::slice::from_ref(&suspect), true);
        assert!(!held.is_idle());
        assert_eq!(held.suspect_alone_for(), Some(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(2)).await;
        held.alive(&[suspect.lease()], true);
        assert_eq!(held.suspect_alone_for(), Some(Duration::from_secs(3)));
        held.gone(&[suspect.lease()]);
        assert_eq!(held.suspect_alone_for(), None);
        assert!(held.is_idle());

        let other = delivery(2);
        held.claimed(std::slice::from_ref(&other), true);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(held.suspect_alone_for(), None, "ran a whole lease");
    }

    #[tokio::test(start_paused = true)]
    async fn leases_without_a_sign_of_life_are_forgotten() {
        let held = Held::new(Duration::from_secs(3));
        let (a, b) = (delivery(1), delivery(2));
        held.claimed(&[a.clone(), b.clone()], false);
        tokio::time::advance(Duration::from_secs(2)).await;
        held.alive(&[a.lease()], false);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!held.is_idle(), "a was renewed");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(held.is_idle(), "a and b expired");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_end_when_a_lease_goes() {
        let held = std::sync::Arc::new(Held::new(Duration::from_secs(30)));
        let d = delivery(1);
        held.claimed(std::slice::from_ref(&d), false);
        let waiter = {
            let held = held.clone();
            tokio::spawn(async move {
                held.wait_until(Duration::from_secs(60), Held::is_idle)
                    .await;
                Instant::now()
            })
        };
        tokio::time::advance(Duration::from_secs(1)).await;
        let gone_at = Instant::now();
        held.gone(&[d.lease()]);
        assert_eq!(waiter.await.unwrap(), gone_at);
    }
}
