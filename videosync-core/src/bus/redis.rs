//! [`RedisBus`]: publish/subscribe across processes with Redis pub/sub.
//!
//! A topic `t` is the Redis channel `vs:bus:t`. Publishing goes through one
//! shared, reconnecting connection; every subscription opens a pub/sub
//! connection of its own and a task that forwards its messages into the
//! subscription's bounded buffer ([`SUBSCRIPTION_BUFFER`]). The forwarder
//! never waits on the subscriber: when the buffer is full the oldest events
//! are dropped and the subscriber is told with [`super::Delivery::Lagged`],
//! so the server never has to hold messages back for a slow reader.
//!
//! Redis pub/sub is at most once, like the contract: a subscription whose
//! connection drops ends ([`Subscription::recv`] answers `None`), and the
//! caller subscribes again.

use std::fmt;
use std::sync::Arc;

use ::redis::aio::ConnectionManager;
use ::redis::Client;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{check_payload, Event, EventBus, Subscription, Topic, SUBSCRIPTION_BUFFER};
use crate::queue::redis::{connect, convert, server_name, CONNECT_TIMEOUT};
use crate::{Error, Result};

/// Publish/subscribe on a Redis server.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    conn: ConnectionManager,
    /// `Redis(host:port)`.
    name: Arc<str>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisBus({self})")
    }
}

impl fmt::Display for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl RedisBus {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL, [`Error::Unavailable`] when the
    /// server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let (client, conn) = connect(url).await?;
        Ok(RedisBus {
            name: server_name(&client).into(),
            client,
            conn,
        })
    }
}

fn channel(topic: &Topic) -> String {
    format!("vs:bus:{topic}")
}

/// Aborts the forwarding task, and so closes its connection, when the
/// subscription is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<()> {
        check_payload(topic, &payload)?;
        // The reply counts the receivers; nobody listening is fine.
        let _receivers: i64 = ::redis::cmd("PUBLISH")
            .arg(channel(topic))
            .arg(payload.as_ref())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| convert(&format!("publish to {topic} on {self}"), e))?;
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<Subscription> {
        let what = format!("subscribe to {topic} on {self}");
        // Returning only after the server confirmed the SUBSCRIBE is what
        // makes the subscription live when this returns.
        let open = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(channel(topic)).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|elapsed| Error::unavailable(what.clone(), elapsed))?
            .map_err(|e| convert(&what, e))?;
        let (tx, rx) = broadcast::channel(SUBSCRIPTION_BUFFER);
        let topic = topic.clone();
        let mut messages = pubsub.into_on_message();
        let forward = tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                let event = Event {
                    topic: topic.clone(),
                    payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
                };
                // Sending never waits: a full buffer drops its oldest event.
                // An error means the subscription is gone.
                if tx.send(event).is_err() {
                    break;
                }
            }
            // Dropping `tx` here ends the subscription: `recv` answers None.
            tracing::debug!(%topic, "Redis subscription ended");
        });
        Ok(Subscription::new(rx, Some(Box::new(AbortOnDrop(forward)))))
    }
}
