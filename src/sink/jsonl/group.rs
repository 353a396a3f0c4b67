//! One process's appends to a batch's results file, committed in groups.
//!
//! The stages of a batch that finish together share one writer task. It takes the file's
//! lock once (the sink's bounded wait, which is then a wait for other processes only),
//! gives every waiting stage its [`Turn`] at once, so each makes its fence (the
//! outcome-number transition under its lease) while the lock is held, appends every line
//! offered with one fsync, answers each stage, and lets go. Stages that arrive meanwhile
//! form the next group. Before, each stage took the lock on its own in a sleep-and-retry
//! loop and held it across its fence's round trip and its fsync, one at a time: a burst
//! of a few dozen outlasted the lock wait, and those stages parked and downloaded their
//! outputs again.
//!
//! Every wait is bounded: the lock by the sink's lock wait, the group's fences by
//! [`FENCE_WAIT`], a stage's wait for its turn and for its answer by those plus
//! [`SLACK`]. A stage that gets no answer treats its line as not written (it parks and
//! finishes again; if the line was written after all, the next outcome supersedes it).

use super::JsonlSink;
use crate::sink::ResultLine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long the writer holds the file's lock for the fences of its group.
pub const FENCE_WAIT: Duration = Duration::from_secs(10);

/// What a stage allows beyond the writer's own bounds before it gives up waiting.
pub const SLACK: Duration = Duration::from_secs(5);

/// A stage's answer: whether its line was written (false: the file had that outcome of
/// its job or a newer one), or why nothing could be.
type Answer = Result<bool, String>;

/// What a stage gives back in its turn: its line and where to answer, or nothing.
type Offer = Option<(ResultLine, oneshot::Sender<Answer>)>;

/// A stage waiting for its turn: granted a channel for its offer, or told why not.
type Waiter = oneshot::Sender<Result<oneshot::Sender<Offer>, String>>;

/// The stages waiting for each batch's writer in this process.
#[derive(Debug, Default)]
pub(super) struct Backlogs {
    map: Mutex<HashMap<String, Vec<Waiter>>>,
}

/// A stage's turn at a batch's results file: the writer holds the file's lock until every
/// stage of its group has offered its line or passed (dropping the turn passes).
#[derive(Debug)]
pub struct Turn {
    offer: oneshot::Sender<Offer>,
}

impl Turn {
    /// Offers the line for this group's append; the answer says whether it was written.
    pub async fn write(self, line: ResultLine) -> Result<bool, String> {
        let (tx, rx) = oneshot::channel();
        if self.offer.send(Some((line, tx))).is_err() {
            return Err(format!(
                "the results writer stopped waiting for this line after {}",
                humantime::format_duration(FENCE_WAIT)
            ));
        }
        let wait = FENCE_WAIT + SLACK;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the results writer stopped before answering".into()),
            Err(_) => Err(format!(
                "the results writer did not answer in {}",
                humantime::format_duration(wait)
            )),
        }
    }

    /// Writes nothing in this group (the stage's fence did not go through).
    pub fn pass(self) {
        let _ = self.offer.send(None);
    }
}

impl JsonlSink {
    /// Waits for this process's next turn at the batch's file (bounded; see the module doc).
    pub async fn turn(self: &Arc<Self>, batch_id: &str) -> Result<Turn, String> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut map = self.backlogs.map.lock().expect("results backlog");
            match map.get_mut(batch_id) {
                Some(waiting) => {
                    waiting.push(tx);
                    false
                }
                None => {
                    map.insert(batch_id.to_string(), vec![tx]);
                    true
                }
            }
        };
        if first {
            tokio::spawn(self.clone().write_groups(batch_id.to_string()));
        }
        let wait = self.lock_wait + FENCE_WAIT + SLACK;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(offer))) => Ok(Turn { offer }),
            Ok(Ok(Err(why))) => Err(why),
            Ok(Err(_)) => Err("the results writer stopped".into()),
            Err(_) => Err(format!(
                "no turn at the results file in {}",
                humantime::format_duration(wait)
            )),
        }
    }

    /// Appends one line in the next group (a line no fence guards: another owner's outcome).
    pub async fn append_in_turn(self: &Arc<Self>, line: ResultLine) -> Result<bool, String> {
        self.turn(&line.batch_id).await?.write(line).await
    }

    /// The batch's writer: a group at a time until no stage waits. A batch's entry in the
    /// backlog exists exactly while its writer runs.
    async fn write_groups(self: Arc<Self>, batch_id: String) {
        let mut gone = Gone {
            sink: self.clone(),
            batch_id: batch_id.clone(),
            armed: true,
        };
        loop {
            let group = {
                let mut map = self.backlogs.map.lock().expect("results backlog");
                let Some(waiting) = map.get_mut(&batch_id) else {
                    gone.armed = false;
                    return;
                };
                if waiting.is_empty() {
                    map.remove(&batch_id);
                    gone.armed = false;
                    return;
                }
                std::mem::take(waiting)
            };
            self.write_group(&batch_id, group).await;
        }
    }

    async fn write_group(self: &Arc<Self>, batch_id: &str, group: Vec<Waiter>) {
        let (sink, id) = (self.clone(), batch_id.to_string());
        let locked = match tokio::task::spawn_blocking(move || sink.lock(&id)).await {
            Ok(Ok(locked)) => locked,
            Ok(Err(e)) => return refuse(group, &e.to_string()),
            Err(e) => return refuse(group, &format!("result writer panicked: {e}")),
        };
        let offers: Vec<_> = group
            .into_iter()
            .filter_map(|waiter| {
                let (tx, rx) = oneshot::channel();
                waiter.send(Ok(tx)).ok().map(|()| rx)
            })
            .collect();
        let deadline = Instant::now() + FENCE_WAIT;
        let (mut lines, mut answers) = (Vec::new(), Vec::new());
        for rx in offers {
            if let Ok(Ok(Some((line, answer)))) = tokio::time::timeout_at(deadline, rx).await {
                lines.push(line);
                answers.push(answer);
            }
        }
        if lines.is_empty() {
            return;
        }
        let written = tokio::task::spawn_blocking(move || {
            let mut locked = locked;
            locked.append_each(&lines)
        })
        .await;
        match written {
            Ok(Ok(written)) => {
                for (answer, w) in answers.into_iter().zip(written) {
                    let _ = answer.send(Ok(w));
                }
            }
            Ok(Err(e)) => refuse(answers, &e.to_string()),
            Err(e) => refuse(answers, &format!("result writer panicked: {e}")),
        }
    }
}

/// Tells every stage in `to` why nothing could be done for it.
fn refuse<T>(to: Vec<oneshot::Sender<Result<T, String>>>, why: &str) {
    for tx in to {
        let _ = tx.send(Err(why.to_string()));
    }
}

/// Removes the batch's backlog when its writer ends other than by finding it empty (a
/// panic, or its task dropped with the runtime): the waiters' channels close, so they give
/// up at once instead of at their bound, and the next stage starts a new writer. Disarmed
/// on a normal end, whose removal was made under the map's lock (a new writer may own the
/// entry by the time this drops).
struct Gone {
    sink: Arc<JsonlSink>,
    batch_id: String,
    armed: bool,
}

impl Drop for Gone {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut map) = self.sink.backlogs.map.lock() {
            map.remove(&self.batch_id);
        }
    }
}
