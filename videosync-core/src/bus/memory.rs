//! [`MemoryBus`]: publish/subscribe within one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use super::{check_payload, Event, EventBus, Subscription, Topic, SUBSCRIPTION_BUFFER};
use crate::Result;

/// Publish/subscribe within one process.
#[derive(Clone, Default)]
pub struct MemoryBus {
    topics: Arc<Mutex<HashMap<Topic, broadcast::Sender<Event>>>>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryBus")
    }
}

impl fmt::Display for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InProcess")
    }
}

impl MemoryBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        MemoryBus::default()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<()> {
        check_payload(topic, &payload)?;
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = topics.get(topic) {
            if tx.receiver_count() == 0 {
                // Every subscriber is gone: forget the topic.
                topics.remove(topic);
            } else {
                // An error means the last receiver dropped just now; the event
                // has nobody to go to, which is the contract.
                let _ = tx.send(Event {
                    topic: topic.clone(),
                    payload,
                });
            }
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<Subscription> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let rx = topics
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(SUBSCRIPTION_BUFFER).0)
            .subscribe();
        Ok(Subscription::new(rx, None))
    }
}
