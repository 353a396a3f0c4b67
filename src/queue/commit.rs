//! Group commit of transitions: a worker process's transitions go to Redis through one
//! committer, which sends every transition queued while its previous call was in flight
//! as ONE call of the TRANSITION script. Nothing waits to fill a group: at low load each
//! call carries one transition, as before; under load the call, the lease removal and each
//! batch's counter read and write are shared by the group. Each transition still gets its
//! own reply (ok / lost / replay, see the script), and a group call that fails is sent
//! again one transition at a time, so one job's trouble is only that job's.
//!
//! Only the worker's own transitions are grouped (retry mode `Persistent`, not durable):
//! a durable transition needs its own connection for the wait, and fail-fast callers
//! their own error.

use super::{Queue, QueueError};
use redis::Value;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// The most transitions in one call.
const MAX_GROUP: usize = 256;

/// One script reply for one transition.
pub(super) type Reply = Vec<Value>;

struct Pending {
    segment: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Reply, QueueError>>,
}

/// The committer of a [`Queue`] and its clones, started on first use.
#[derive(Default)]
pub(super) struct Committer {
    tx: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

/// The first transition's reply of a TRANSITION call.
pub(super) fn first(replies: Vec<Reply>) -> Result<Reply, QueueError> {
    check(replies.into_iter().next().unwrap_or_default())
}

/// A transition's reply, or the error the script gave for that job (`{'err', why}`).
pub(super) fn check(reply: Reply) -> Result<Reply, QueueError> {
    let text =
        |v: Option<&Value>| v.and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
    if text(reply.first()).as_deref() == Some("err") {
        return Err(QueueError::Redis(text(reply.get(1)).unwrap_or_default()));
    }
    Ok(reply)
}

impl Queue {
    /// Runs the TRANSITION script for one transition (its `segment` of arguments).
    pub(super) async fn transition_one(&self, segment: &[Vec<u8>]) -> Result<Reply, QueueError> {
        let mut a = args![self.now_ms()];
        a.extend(segment.iter().cloned());
        first(self.eval(&self.scripts.transition, &a).await?)
    }

    /// Runs one transition through this process's committer.
    pub(super) async fn transition_grouped(
        &self,
        segment: Vec<Vec<u8>>,
    ) -> Result<Reply, QueueError> {
        let tx = self.commit.tx.get_or_init(|| self.start_committer());
        let (reply, rx) = oneshot::channel();
        if tx.send(Pending { segment, reply }).is_err() {
            return Err(QueueError::Redis("the transition committer stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(QueueError::Redis("the transition committer stopped".into())))
    }

    fn start_committer(&self) -> mpsc::UnboundedSender<Pending> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        // The task's own handle has a committer of its own (never used), so the task ends
        // when the last clone of this queue is dropped.
        let q = Queue {
            commit: Arc::new(Committer::default()),
            ..self.clone()
        };
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let mut group = vec![p];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(p) => group.push(p),
                        Err(_) => break,
                    }
                }
                q.commit_group(group).await;
            }
        });
        tx
    }

    async fn commit_group(&self, group: Vec<Pending>) {
        if group.len() == 1 {
            let p = group.into_iter().next().expect("one");
            let _ = p.reply.send(self.transition_one(&p.segment).await);
            return;
        }
        let mut a = args![self.now_ms()];
        for p in &group {
            a.extend(p.segment.iter().cloned());
        }
        match self.eval::<Vec<Reply>>(&self.scripts.transition, &a).await {
            Ok(replies) if replies.len() == group.len() => {
                for (p, r) in group.into_iter().zip(replies) {
                    let _ = p.reply.send(check(r));
                }
            }
            other => {
                if let Err(e) = other {
                    tracing::debug!(error = %e, jobs = group.len(),
                        "A group of transitions failed; sending them one at a time.");
                }
                // The script answers a job's own trouble in that job's reply, so this
                // is Redis refusing the call as a whole. One at a time, each transition
                // applied meanwhile answers by its nonce.
                for p in group {
                    let _ = p.reply.send(self.transition_one(&p.segment).await);
                }
            }
        }
    }
}
