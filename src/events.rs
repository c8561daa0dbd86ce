//! In-process event bus: job progress, app changes and plan changes, fanned out to
//! SSE subscribers and services. Lossy for slow subscribers (they see `Lagged` and
//! resynchronise from storage), never blocking publishers.

use serde::Serialize;
use tokio::sync::broadcast;

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Kind, e.g. `job.step`, `job.log`, `app.status`.
    pub kind: String,
    /// Subject id (job id, app id).
    pub subject: String,
    /// Payload.
    pub data: serde_json::Value,
}

/// Cheap-to-clone publisher/subscriber handle.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with room for 4096 undelivered events per subscriber.
    pub fn new() -> Self {
        EventBus {
            tx: broadcast::channel(4096).0,
        }
    }
    /// Publish (never blocks; dropped when nobody listens).
    pub fn publish(&self, kind: &str, subject: &str, data: serde_json::Value) {
        let _ = self.tx.send(Event {
            kind: kind.into(),
            subject: subject.into(),
            data,
        });
    }
    /// Subscribe to every later event.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
    /// Current number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
