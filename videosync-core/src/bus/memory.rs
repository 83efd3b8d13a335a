//! [`MemoryBus`]: publish/subscribe within one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use super::{check_payload, Delivery, Event, EventBus, Subscription, Topic, SUBSCRIPTION_BUFFER};
use crate::Result;

type Topics = Arc<Mutex<HashMap<Topic, broadcast::Sender<Delivery>>>>;

/// Publish/subscribe within one process; clones share the topics.
///
/// A topic exists while it has subscribers: the last subscription to go
/// removes it, so one-off topics (a video's progress) leave nothing behind.
#[derive(Clone, Default)]
pub struct MemoryBus {
    topics: Topics,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryBus")
    }
}

impl fmt::Display for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memory")
    }
}

impl MemoryBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        MemoryBus::default()
    }

    /// How many topics have subscribers.
    pub fn topic_count(&self) -> usize {
        self.topics.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Forgets the topic when the subscription it guards was its last one.
struct ForgetWhenUnused {
    topics: Topics,
    topic: Topic,
}

impl Drop for ForgetWhenUnused {
    fn drop(&mut self) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        // The subscription's receiver is dropped before its guard.
        if topics
            .get(&self.topic)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            topics.remove(&self.topic);
        }
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    fn reaches_other_processes(&self) -> bool {
        false
    }

    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<()> {
        check_payload(topic, &payload)?;
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = topics.get(topic) {
            // An error means the last receiver dropped just now; the event
            // has nobody to go to, which is the contract.
            let _ = tx.send(Delivery::Event(Event {
                topic: topic.clone(),
                payload,
            }));
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<Subscription> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let rx = topics
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(SUBSCRIPTION_BUFFER).0)
            .subscribe();
        let guard = ForgetWhenUnused {
            topics: self.topics.clone(),
            topic: topic.clone(),
        };
        Ok(Subscription::from_broadcast(rx, Some(Box::new(guard))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_subscriber_takes_its_topic_along() {
        let bus = MemoryBus::new();
        let (a, b) = (Topic::parse("a").unwrap(), Topic::parse("b").unwrap());
        let first = bus.subscribe(&a).await.unwrap();
        let second = bus.subscribe(&a).await.unwrap();
        let other = bus.subscribe(&b).await.unwrap();
        assert_eq!(bus.topic_count(), 2);
        drop(first);
        assert_eq!(bus.topic_count(), 2, "`a` still has a subscriber");
        drop(second);
        assert_eq!(bus.topic_count(), 1, "`a` is forgotten without a publish");
        drop(other);
        assert_eq!(bus.topic_count(), 0);
        assert_eq!(bus.to_string(), "Memory");
    }
}
