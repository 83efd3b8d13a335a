//! Publish/subscribe: the [`EventBus`] contract and its backends.
//!
//! | backend | module | feature |
//! |---|---|---|
//! | in-process (default) | [`memory`] | always |
//! | Redis pub/sub | `redis` | `redis` |
//!
//! Delivery is at most once and live only: a subscriber sees what is
//! published after its [`EventBus::subscribe`] returned, in publish order per
//! publisher. Durable work goes through a [`crate::JobQueue`] instead.
//!
//! A subscription says when it may have missed events: [`Delivery::Lagged`]
//! when it fell behind, [`Delivery::Disconnected`] when the backend lost its
//! connection (the subscription then comes back by itself). `recv` answering
//! `None` means only that the bus behind it has closed.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{Error, Result};

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// How many events a subscription buffers. When a subscriber falls this far
/// behind, the oldest events are dropped and the subscriber is told how many
/// with [`Delivery::Lagged`]; publishers are never slowed by a slow reader.
pub const SUBSCRIPTION_BUFFER: usize = 1024;

/// Largest event payload (1 MiB).
pub const MAX_EVENT_LEN: usize = 1024 * 1024;

/// The name of a stream of events: 1 to 200 characters of `[A-Za-z0-9_.:-]`,
/// such as `video.7f3a.progress` or `channel:42`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// Checks `name` and makes it a topic.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule.
    pub fn parse(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 200
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok {
            Ok(Topic(name.to_owned()))
        } else {
            Err(Error::invalid_input(format!(
                "topic `{}` must be 1 to 200 characters of A-Z, a-z, 0-9, `_`, `-`, `.` and `:`",
                name.escape_debug()
            )))
        }
    }

    /// The topic's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Topic::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Where it was published.
    pub topic: Topic,
    /// What was published.
    pub payload: Bytes,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event.
    Event(Event),
    /// This many events were dropped because the subscriber fell behind.
    Lagged(u64),
    /// The backend lost its connection: events published until it is back
    /// are lost, uncounted. The subscription stays open and delivers again
    /// once the backend has reconnected and subscribed anew, which it does by
    /// itself. A reader that must not miss anything resynchronises from a
    /// durable source (a snapshot, an event log) on this signal.
    Disconnected,
}

/// A live subscription to one topic; dropping it unsubscribes.
pub struct Subscription {
    // Declared before the guard, so it is dropped first: a guard that looks
    // at who still listens (the memory bus's) sees this one gone.
    stream: BoxStream<'static, Delivery>,
    // Keeps the backend's forwarding machinery (a Redis connection, say)
    // alive exactly as long as the subscription, and unsubscribes on drop.
    _guard: Option<Box<dyn Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription yielding `stream`, keeping `guard` alive while it
    /// lives (and dropping it after the stream). The stream ends when the
    /// bus has closed.
    ///
    /// For `recv` to stay cancel safe, the stream must not lose an item when
    /// a poll of it is abandoned (streams built with
    /// [`futures::stream::unfold`] keep their pending future, for instance).
    pub fn new(stream: BoxStream<'static, Delivery>, guard: Option<Box<dyn Send + Sync>>) -> Self {
        Subscription {
            stream,
            _guard: guard,
        }
    }

    /// A subscription reading a broadcast channel of events and
    /// [`Delivery::Disconnected`] signals; the channel's lag becomes
    /// [`Delivery::Lagged`] and its closing the end.
    pub(crate) fn from_broadcast(
        rx: broadcast::Receiver<Delivery>,
        guard: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            let delivery = match rx.recv().await {
                Ok(d) => d,
                Err(broadcast::error::RecvError::Lagged(n)) => Delivery::Lagged(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((delivery, rx))
        });
        Subscription::new(stream.boxed(), guard)
    }

    /// The next delivery, or `None` once the bus behind it has closed.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is consumed only when this returns it.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.stream.next().await
    }
}

/// Publish/subscribe by topic.
///
/// # Contract
/// - Every subscription to a topic that exists when `publish` is called
///   receives the event once, in publish order per publisher.
/// - `subscribe` returns once the subscription is live: an event published
///   after it returns is delivered. (One published just before may be
///   delivered too: a backend that shares one connection among
///   subscriptions may still have been subscribed to the topic.)
/// - A slow subscriber loses the oldest events past [`SUBSCRIPTION_BUFFER`]
///   and is told with [`Delivery::Lagged`]; it never slows publishers.
/// - A backend that loses its connection tells every subscription with
///   [`Delivery::Disconnected`], reconnects and resubscribes by itself; it
///   never ends a subscription for it.
/// - A payload over [`MAX_EVENT_LEN`] is [`Error::InvalidInput`].
///
/// # Implementing
/// Run `videosync_core::conformance::bus` against the backend.
#[async_trait]
pub trait EventBus: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Sends `payload` to every current subscriber of `topic`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an oversized payload, or a backend error.
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<()>;

    /// Publishes `events` in order, as that many [`EventBus::publish`]
    /// calls would (a subscription sees them in this order), in as few
    /// round trips as the backend allows: a publisher with a backlog sends
    /// it at once rather than waiting for each reply in turn. A batch with
    /// an oversized payload is refused whole: nothing is published.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an oversized payload; a backend error,
    /// after which some of the events may have been published.
    async fn publish_batch(&self, events: Vec<(Topic, Bytes)>) -> Result<()> {
        for (topic, payload) in &events {
            check_payload(topic, payload)?;
        }
        for (topic, payload) in events {
            self.publish(&topic, payload).await?;
        }
        Ok(())
    }

    /// Subscribes to `topic`.
    ///
    /// # Errors
    /// A backend error.
    async fn subscribe(&self, topic: &Topic) -> Result<Subscription>;

    /// Whether subscribers in other processes see what is published here.
    /// An in-process bus answers false: whoever uses it is alone, and need
    /// not coordinate with other instances through it.
    fn reaches_other_processes(&self) -> bool {
        true
    }
}

/// Conveniences over [`EventBus`].
#[async_trait]
pub trait EventBusExt: EventBus {
    /// Publishes `value` as JSON.
    ///
    /// # Errors
    /// As [`EventBus::publish`], or [`Error::InvalidInput`] when `value` does
    /// not serialize.
    async fn publish_json<T: Serialize + Sync>(&self, topic: &Topic, value: &T) -> Result<()> {
        let payload = serde_json::to_vec(value).map_err(|e| {
            Error::invalid_input(format!("event for {topic} does not serialize: {e}"))
        })?;
        self.publish(topic, Bytes::from(payload)).await
    }
}

impl<T: EventBus + ?Sized> EventBusExt for T {}

/// A bus shared between tasks.
pub type DynEventBus = Arc<dyn EventBus>;

pub(crate) fn check_payload(topic: &Topic, payload: &Bytes) -> Result<()> {
    if payload.len() > MAX_EVENT_LEN {
        return Err(Error::invalid_input(format!(
            "event for {topic} is {} bytes; the limit is {MAX_EVENT_LEN}",
            payload.len()
        )));
    }
    Ok(())
}

/// The bus behind a URL: `memory://` or `redis://...`.
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme, and what the backend fails
/// with when connecting.
pub async fn bus_from_url(url: &str) -> Result<DynEventBus> {
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryBus::new())),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(redis::RedisBus::connect(url).await?)),
        other => Err(Error::invalid_input(format!(
            "unknown event bus URL scheme `{}` in `{}`; expected memory{}",
            other.escape_debug(),
            crate::redact_url(url),
            if cfg!(feature = "redis") {
                " or redis"
            } else {
                ""
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_checked() {
        assert!(Topic::parse("video.7f3a:progress").is_ok());
        for bad in ["", "a b", "a*", "ä", &"t".repeat(201)] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }
}
