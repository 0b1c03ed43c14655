//! The worker's log of container ends, numbered, for the control plane to poll: an end
//! pushed while no one listens is kept until it is read (up to [`KEPT`] of them).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::EventBatch;
use crate::node::NodeEvent;

/// Ends kept for a control plane that has not read them; the oldest go first.
const KEPT: usize = 10_000;

pub(super) struct EventLog {
    /// Names this worker process: numbers start again with the next.
    epoch: String,
    kept: Mutex<Kept>,
    added: tokio::sync::Notify,
}

#[derive(Default)]
struct Kept {
    last: u64,
    events: VecDeque<(u64, NodeEvent)>,
}

impl EventLog {
    pub fn new() -> Self {
        EventLog {
            epoch: format!("{:016x}", rand::random::<u64>()),
            kept: Mutex::default(),
            added: tokio::sync::Notify::new(),
        }
    }

    pub fn push(&self, event: NodeEvent) {
        let mut kept = self.kept.lock().expect("lock");
        kept.last += 1;
        let n = kept.last;
        kept.events.push_back((n, event));
        if kept.events.len() > KEPT {
            kept.events.pop_front();
        }
        drop(kept);
        self.added.notify_waiters();
    }

    /// The ends past `after` of `epoch` (all kept, for another epoch), waiting up to `wait`
    /// for one when there are none yet.
    pub async fn after(&self, epoch: Option<&str>, after: u64, wait: Duration) -> EventBatch {
        let after = if epoch == Some(self.epoch.as_str()) {
            after
        } else {
            0
        };
        let added = self.added.notified();
        tokio::pin!(added);
        added.as_mut().enable();
        let batch = self.collect(after);
        if !batch.events.is_empty() {
            return batch;
        }
        let _ = tokio::time::timeout(wait, added).await;
        self.collect(after)
    }

    fn collect(&self, after: u64) -> EventBatch {
        let kept = self.kept.lock().expect("lock");
        let events: Vec<NodeEvent> = kept
            .events
            .iter()
            .filter(|(n, _)| *n > after)
            .map(|(_, e)| e.clone())
            .collect();
        EventBatch {
            epoch: self.epoch.clone(),
            last: if events.is_empty() { after } else { kept.last },
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ProcessState;

    fn end(id: &str) -> NodeEvent {
        NodeEvent {
            container_id: id.into(),
            state: ProcessState::Lost,
        }
    }

    #[tokio::test]
    async fn ends_are_read_once_in_order_and_again_after_a_new_epoch() {
        let log = EventLog::new();
        log.push(end("a"));
        log.push(end("b"));
        let first = log.after(None, 0, Duration::ZERO).await;
        let ids: Vec<_> = first
            .events
            .iter()
            .map(|e| e.container_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let none = log
            .after(Some(&first.epoch), first.last, Duration::from_millis(10))
            .await;
        assert!(none.events.is_empty());
        assert_eq!(none.last, first.last);
        // A poll that waits gets the end pushed meanwhile.
        let waiting = log.after(Some(&first.epoch), first.last, Duration::from_secs(5));
        let pushing = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            log.push(end("c"));
        };
        let (got, ()) = tokio::join!(waiting, pushing);
        assert_eq!(got.events, vec![end("c")]);
        // A control plane that knew another worker process reads everything kept.
        let fresh = log.after(Some("0"), 99, Duration::ZERO).await;
        assert_eq!(fresh.events.len(), 3);
    }
}
