//! [`RedisBus`]: publish/subscribe across processes with Redis pub/sub.
//!
//! A topic `t` is the Redis channel `vs:bus:t`. Publishing goes through one
//! shared, reconnecting connection. Subscribing goes through one pub/sub
//! connection per bus handle (clones share it), whatever the number of
//! subscriptions: a task reads it and fans each message out to the local
//! subscriptions of its topic through a bounded buffer
//! ([`SUBSCRIPTION_BUFFER`]). The task never waits on a subscriber: when a
//! buffer is full the oldest events are dropped and the subscriber is told
//! with [`Delivery::Lagged`]. Redis sees one `SUBSCRIBE` when a topic gains
//! its first local subscription and one `UNSUBSCRIBE` when it loses its last.
//!
//! When the pub/sub connection drops (the server restarted, or closed it
//! for exceeding `client-output-buffer-limit pubsub`), every subscription
//! receives [`Delivery::Disconnected`]; the task reconnects with backoff
//! (100 ms doubling to 5 s) and subscribes every topic again, after which the
//! subscriptions deliver again. A connection that goes silent is pinged
//! every [`PING_EVERY`] and treated as dropped when the ping fails.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use ::redis::Client;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::{check_payload, Delivery, Event, EventBus, Subscription, Topic, SUBSCRIPTION_BUFFER};
use crate::queue::redis::{connect, convert, server_name, CONNECT_TIMEOUT};
use crate::{Error, Result};

/// How long the pub/sub connection may stay silent before it is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// How long a ping, `SUBSCRIBE` or `UNSUBSCRIBE` may wait for its answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// First and longest wait between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Publish/subscribe on a Redis server.
#[derive(Clone)]
pub struct RedisBus {
    conn: ConnectionManager,
    /// `Redis(host:port)`.
    name: Arc<str>,
    pubsub: Arc<PubSubConnection>,
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

/// The pub/sub connection and its reader task, which lives as long as the
/// bus handles and subscriptions that hold this.
struct PubSubConnection {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for PubSubConnection {
    fn drop(&mut self) {
        // Ends the reader, which drops the connection.
        self.task.abort();
    }
}

/// What the reader task and the subscribers share.
struct Shared {
    client: Client,
    name: Arc<str>,
    state: Mutex<State>,
    /// Held while sending `SUBSCRIBE`/`UNSUBSCRIBE` and while resubscribing
    /// after a reconnection, so that Redis sees them in the order the local
    /// interest changed (an `UNSUBSCRIBE` of a topic that was wanted again
    /// meanwhile is skipped).
    commands: tokio::sync::Mutex<()>,
    /// Bumped each time a new connection has subscribed every topic.
    connected: watch::Sender<u64>,
}

struct State {
    /// Channel name to its local subscribers.
    topics: HashMap<String, Local>,
    /// The connection's command side; `None` while disconnected.
    sink: Option<PubSubSink>,
}

struct Local {
    topic: Topic,
    tx: broadcast::Sender<Delivery>,
    subscribers: usize,
    /// Whether Redis confirmed the `SUBSCRIBE` on the current connection.
    live: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RedisBus {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`): the publishing
    /// connection and the pub/sub connection.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL, [`Error::Unavailable`] when the
    /// server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let (client, conn) = connect(url).await?;
        let name: Arc<str> = server_name(&client).into();
        let (sink, stream) = open_pubsub(&client, &name).await?;
        let shared = Arc::new(Shared {
            client,
            name: name.clone(),
            state: Mutex::new(State {
                topics: HashMap::new(),
                sink: Some(sink),
            }),
            commands: tokio::sync::Mutex::new(()),
            connected: watch::channel(0).0,
        });
        let task = tokio::spawn(read(shared.clone(), stream));
        Ok(RedisBus {
            conn,
            name,
            pubsub: Arc::new(PubSubConnection { shared, task }),
        })
    }
}

fn channel(topic: &Topic) -> String {
    format!("vs:bus:{topic}")
}

async fn open_pubsub(client: &Client, name: &str) -> Result<(PubSubSink, PubSubStream)> {
    let what = format!("opening a pub/sub connection to {name}");
    tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|elapsed| Error::unavailable(what.clone(), elapsed))?
        .map(::redis::aio::PubSub::split)
        .map_err(|e| convert(&what, e))
}

/// The reader task: fans messages out, and on a dropped connection tells
/// every subscription, reconnects and resubscribes.
async fn read(shared: Arc<Shared>, mut stream: PubSubStream) {
    loop {
        loop {
            match tokio::time::timeout(PING_EVERY, stream.next()).await {
                Ok(Some(msg)) => fan_out(&shared, &msg),
                Ok(None) => break,
                Err(_silent) => {
                    let sink = shared.state().sink.clone();
                    let alive = match sink {
                        Some(mut sink) => tokio::time::timeout(REPLY_TIMEOUT, sink.ping::<()>())
                            .await
                            .is_ok_and(|r| r.is_ok()),
                        None => false,
                    };
                    if !alive {
                        break;
                    }
                }
            }
        }
        {
            let mut state = shared.state();
            state.sink = None;
            for local in state.topics.values_mut() {
                local.live = false;
                // Nobody listening is fine; a full buffer counts as lag.
                let _ = local.tx.send(Delivery::Disconnected);
            }
        }
        tracing::warn!(bus = %shared.name, "Redis pub/sub connection lost; reconnecting");
        stream = reconnect(&shared).await;
        tracing::info!(bus = %shared.name, "Redis pub/sub connection back");
    }
}

fn fan_out(shared: &Shared, msg: &::redis::Msg) {
    let state = shared.state();
    if let Some(local) = state.topics.get(msg.get_channel_name()) {
        let event = Event {
            topic: local.topic.clone(),
            payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
        };
        // Sending never waits: a full buffer drops its oldest event.
        let _ = local.tx.send(Delivery::Event(event));
    }
}

/// Opens a new connection and subscribes every topic that has local
/// subscribers, retrying with backoff until it succeeds.
async fn reconnect(shared: &Shared) -> PubSubStream {
    let mut delay = BACKOFF.0;
    loop {
        match resubscribe(shared).await {
            Ok(stream) => return stream,
            Err(e) => {
                tracing::debug!(bus = %shared.name, error = %e, ?delay, "reconnection failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF.1);
            }
        }
    }
}

async fn resubscribe(shared: &Shared) -> Result<PubSubStream> {
    let (mut sink, stream) = open_pubsub(&shared.client, &shared.name).await?;
    let _commands = shared.commands.lock().await;
    let channels: Vec<String> = shared.state().topics.keys().cloned().collect();
    if !channels.is_empty() {
        let what = format!(
            "subscribing {} topics again on {}",
            channels.len(),
            shared.name
        );
        tokio::time::timeout(REPLY_TIMEOUT, sink.subscribe(&channels))
            .await
            .map_err(|elapsed| Error::unavailable(what.clone(), elapsed))?
            .map_err(|e| convert(&what, e))?;
    }
    let mut state = shared.state();
    for name in &channels {
        if let Some(local) = state.topics.get_mut(name) {
            local.live = true;
        }
    }
    state.sink = Some(sink);
    drop(state);
    shared.connected.send_modify(|n| *n += 1);
    Ok(stream)
}

/// Drops one local subscriber of a channel; the last one unsubscribes.
struct Unsubscribe {
    pubsub: Arc<PubSubConnection>,
    channel: String,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let shared = &self.pubsub.shared;
        let last = {
            let mut state = shared.state();
            match state.topics.get_mut(&self.channel) {
                Some(local) if local.subscribers <= 1 => {
                    state.topics.remove(&self.channel);
                    true
                }
                Some(local) => {
                    local.subscribers -= 1;
                    false
                }
                None => false,
            }
        };
        if !last {
            return;
        }
        // Outside a runtime there is nobody to send it; the connection goes
        // with the runtime anyway.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shared, channel) = (shared.clone(), std::mem::take(&mut self.channel));
        runtime.spawn(async move {
            let _commands = shared.commands.lock().await;
            let sink = {
                let state = shared.state();
                if state.topics.contains_key(&channel) {
                    return; // Wanted again meanwhile.
                }
                state.sink.clone()
            };
            if let Some(mut sink) = sink {
                let done = tokio::time::timeout(REPLY_TIMEOUT, sink.unsubscribe(&channel)).await;
                if !matches!(done, Ok(Ok(()))) {
                    tracing::debug!(bus = %shared.name, %channel, "UNSUBSCRIBE got no answer");
                }
            }
        });
    }
}

impl RedisBus {
    /// Sends `SUBSCRIBE` for a channel registered locally but not yet live,
    /// waiting through a reconnection if need be.
    async fn make_live(&self, name: &str, what: &str) -> Result<()> {
        let shared = &self.pubsub.shared;
        let mut connected = shared.connected.subscribe();
        loop {
            {
                let _commands = shared.commands.lock().await;
                let sink = {
                    let state = shared.state();
                    match state.topics.get(name) {
                        Some(local) if local.live => return Ok(()),
                        _ => state.sink.clone(),
                    }
                };
                if let Some(mut sink) = sink {
                    match tokio::time::timeout(REPLY_TIMEOUT, sink.subscribe(name)).await {
                        Ok(Ok(())) => {
                            if let Some(local) = shared.state().topics.get_mut(name) {
                                local.live = true;
                            }
                            return Ok(());
                        }
                        Ok(Err(e)) if !(e.is_connection_dropped() || e.is_io_error()) => {
                            return Err(convert(what, e))
                        }
                        // The connection is going: the reader reconnects and
                        // subscribes every registered topic, this one too.
                        _ => {}
                    }
                }
            }
            connected
                .changed()
                .await
                .map_err(|e| Error::unavailable(what.to_owned(), e))?;
        }
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

    async fn publish_batch(&self, events: Vec<(Topic, Bytes)>) -> Result<()> {
        for (topic, payload) in &events {
            check_payload(topic, payload)?;
        }
        if events.is_empty() {
            return Ok(());
        }
        // One pipeline: the commands go out together, in order, on one
        // connection, and Redis runs them in that order.
        let mut pipe = ::redis::pipe();
        for (topic, payload) in &events {
            pipe.cmd("PUBLISH")
                .arg(channel(topic))
                .arg(payload.as_ref())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| convert(&format!("publish {} events on {self}", events.len()), e))
    }

    async fn subscribe(&self, topic: &Topic) -> Result<Subscription> {
        let what = format!("subscribe to {topic} on {self}");
        let name = channel(topic);
        let rx = {
            let mut state = self.pubsub.shared.state();
            let local = state.topics.entry(name.clone()).or_insert_with(|| Local {
                topic: topic.clone(),
                tx: broadcast::channel(SUBSCRIPTION_BUFFER).0,
                subscribers: 0,
                live: false,
            });
            local.subscribers += 1;
            local.tx.subscribe()
        };
        // From here on the guard undoes the registration, also when the wait
        // below fails or is cancelled.
        let guard = Unsubscribe {
            pubsub: self.pubsub.clone(),
            channel: name.clone(),
        };
        // Returning only once Redis confirmed the SUBSCRIBE is what makes
        // the subscription live when this returns.
        tokio::time::timeout(CONNECT_TIMEOUT, self.make_live(&name, &what))
            .await
            .map_err(|elapsed| Error::unavailable(what.clone(), elapsed))??;
        Ok(Subscription::from_broadcast(rx, Some(Box::new(guard))))
    }
}

#[cfg(all(test, feature = "conformance"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Test code.
mod tests {
    use super::*;
    use crate::conformance::{service_url, unique_name, WAIT};

    async fn admin(url: &str) -> ConnectionManager {
        connect(url).await.unwrap().1
    }

    async fn next(sub: &mut Subscription) -> Delivery {
        tokio::time::timeout(WAIT, sub.recv())
            .await
            .expect("a delivery within the wait")
            .expect("the bus is open")
    }

    /// How many pub/sub connections the ACL user `user` has open.
    async fn pubsub_clients(admin: &mut ConnectionManager, user: &str) -> Vec<String> {
        let list: String = ::redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(admin)
            .await
            .unwrap();
        list.lines()
            .filter(|l| l.split(' ').any(|f| f == format!("user={user}")))
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    /// One pub/sub connection carries every subscription of a handle; a
    /// killed connection is reported as `Disconnected`, and the
    /// subscriptions deliver again once the bus has reconnected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_connection_and_a_reported_disconnect() {
        let Some(url) = service_url("VIDEOSYNC_TEST_REDIS_URL") else {
            return;
        };
        // The bus logs in as a user of its own, so that this test finds and
        // kills its own connection and nobody else's.
        let mut admin = admin(&url).await;
        let user = unique_name("vs_t_");
        let () = ::redis::cmd("ACL")
            .arg(&["SETUSER", &user, "on", ">pw", "~*", "&*", "+@all"][..])
            .query_async(&mut admin)
            .await
            .unwrap();
        let mut own = url::Url::parse(&url).unwrap();
        own.set_username(&user).unwrap();
        own.set_password(Some("pw")).unwrap();
        let bus = RedisBus::connect(own.as_str()).await.unwrap();
        let publisher = RedisBus::connect(&url).await.unwrap();

        let (a, b) = (
            Topic::parse(&unique_name("t.")).unwrap(),
            Topic::parse(&unique_name("t.")).unwrap(),
        );
        let mut subs = vec![
            bus.subscribe(&a).await.unwrap(),
            bus.subscribe(&a).await.unwrap(),
            bus.clone().subscribe(&b).await.unwrap(),
        ];
        let ids = pubsub_clients(&mut admin, &user).await;
        assert_eq!(
            ids.len(),
            1,
            "one pub/sub connection for three subscriptions"
        );
        publisher.publish(&a, Bytes::from("before")).await.unwrap();
        for sub in &mut subs[..2] {
            assert_eq!(
                next(sub).await,
                Delivery::Event(Event {
                    topic: a.clone(),
                    payload: Bytes::from("before")
                })
            );
        }

        let () = ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&ids[0])
            .query_async(&mut admin)
            .await
            .unwrap();
        for sub in &mut subs {
            assert_eq!(next(sub).await, Delivery::Disconnected);
        }
        // Events published before the resubscription are lost; publish
        // until one arrives, each wait bounded, all of it within WAIT.
        let back = async {
            for (i, sub) in subs.iter_mut().enumerate() {
                let topic = if i < 2 { &a } else { &b };
                loop {
                    publisher
                        .publish(topic, Bytes::from("after"))
                        .await
                        .unwrap();
                    match tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
                        Ok(Some(Delivery::Event(e))) if e.payload == "after" => break,
                        Ok(Some(other)) => panic!("expected an event, got {other:?}"),
                        Ok(None) => panic!("the subscription ended"),
                        Err(_) => {}
                    }
                }
            }
        };
        tokio::time::timeout(WAIT, back)
            .await
            .expect("deliveries again after the reconnection");
        let ids = pubsub_clients(&mut admin, &user).await;
        assert_eq!(ids.len(), 1, "reconnected once");

        // The last subscription of a topic unsubscribes it at Redis.
        subs.truncate(2);
        let count = |admin: &mut ConnectionManager, t: &Topic| {
            let mut admin = admin.clone();
            let ch = channel(t);
            async move {
                let (_, n): (String, i64) = ::redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&ch)
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                n
            }
        };
        assert_eq!(
            count(&mut admin, &a).await,
            1,
            "two local subscriptions, one SUBSCRIBE"
        );
        let gone = async {
            while count(&mut admin, &b).await != 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(WAIT, gone)
            .await
            .expect("the last subscription of b unsubscribes it");
        drop(subs);
        drop(bus);
        let () = ::redis::cmd("ACL")
            .arg(&["DELUSER", &user][..])
            .query_async(&mut admin)
            .await
            .unwrap();
    }
}
