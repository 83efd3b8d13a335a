//! [`RedisLog`]: the event log on Redis Streams.
//!
//! # Layout
//! Each topic of the log named `n` has two keys sharing the Redis Cluster
//! hash tag `{<topic>}`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `vs:log:n:{t}:s` | stream | the entries, id `<seq>-0`, fields `a` (append time, ms) and `p` (payload) |
//! | `vs:log:n:{t}:m` | hash | `e` the epoch, `s` the head, `t` the last append time |
//!
//! As in Centrifugo, the meta hash is the source of truth: one Lua script
//! ([`eventlog.lua`](https://github.com/videosync/videosync/blob/main/videosync-core/src/eventlog/redis/eventlog.lua))
//! bumps the head, adds the entry under that id and trims by retention
//! (`XADD MAXLEN =` exactly, then `XTRIM MINID` past expired entries), all
//! at once; reads run in the same script, so they check the reader's
//! position against the head and epoch they read entries under. A missing
//! meta key (evicted, deleted, a Redis restarted without persistence) starts
//! a new epoch and drops the stream left from the old one. The meta key never
//! expires; with `max_age` the stream gets that TTL at every append, so an
//! idle topic's entries go even if nobody appends again.
//!
//! # Tail
//! A tail reads through the script and, once caught up, waits with
//! `XREAD BLOCK` on a connection of its own (one per tail) for an id after
//! its position; whatever wakes it, it reads through the script again, so a
//! reset or trim in between is reported, never skipped. The block times out
//! after [`TAIL_BLOCK`] so that an epoch change (whose new ids may be lower
//! than the position) is noticed within that time. A dropped connection
//! makes the stream yield an error; it then reconnects and reads again from
//! its last entry.
//!
//! Production Redis needs persistence (`appendonly yes`) and
//! `maxmemory-policy noeviction`; otherwise a restart or eviction loses
//! history, which readers see as a new epoch.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, Script, Value};
use async_trait::async_trait;
use bytes::Bytes;

use super::{
    check_limit, check_payload, validate_log_name, Appended, Epoch, EventLog, Follow, LogEntry,
    LogOptions, LogStream, ReadResult, Recovery, StreamPosition,
};
use crate::bus::Topic;
use crate::clock::duration_millis;
use crate::queue::redis::{connect, convert, server_name, CONNECT_TIMEOUT};
use crate::{Clock, Error, Result, Timestamp};

/// How long a caught-up tail blocks in `XREAD` before it checks the topic's
/// epoch again.
pub const TAIL_BLOCK: Duration = Duration::from_secs(2);

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/eventlog.lua")));

/// An event log on a Redis server (Redis 7 or later: the script declares
/// its flags with `#!lua`).
#[derive(Clone)]
pub struct RedisLog {
    client: Client,
    conn: ConnectionManager,
    /// `Redis(host:port)/eventlog/<name>`.
    shown: Arc<str>,
    /// `vs:log:<name>:`, which `{<topic>}:s` or `:m` completes.
    prefix: Arc<str>,
    clock: Arc<dyn Clock>,
    options: LogOptions,
}

impl fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisLog({self}, {:?})", self.options)
    }
}

impl fmt::Display for RedisLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl RedisLog {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`) and opens the log named
    /// `name` there, with `options` as retention and entries timed by
    /// `clock`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL, name or options,
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(
        url: &str,
        name: &str,
        clock: Arc<dyn Clock>,
        options: LogOptions,
    ) -> Result<Self> {
        validate_log_name(name)?;
        options.validate()?;
        let (client, conn) = connect(url).await?;
        Ok(RedisLog {
            shown: format!("{}/eventlog/{name}", server_name(&client)).into(),
            prefix: format!("vs:log:{name}:").into(),
            client,
            conn,
            clock,
            options,
        })
    }

    /// The stream and meta keys of `topic`.
    fn keys(&self, topic: &Topic) -> (String, String) {
        (
            format!("{}{{{topic}}}:s", self.prefix),
            format!("{}{{{topic}}}:m", self.prefix),
        )
    }

    async fn run(
        &self,
        topic: &Topic,
        args: &[&[u8]],
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Value> {
        let (stream, meta) = self.keys(topic);
        let now = self.clock.now();
        let cutoff = self
            .options
            .cutoff(now)
            .map(|c| c.as_millis().to_string())
            .unwrap_or_default();
        let mut inv = SCRIPT.prepare_invoke();
        inv.key(stream)
            .key(meta)
            .arg(args[0])
            .arg(Epoch::random().as_str())
            .arg(now.as_millis())
            .arg(cutoff);
        for arg in &args[1..] {
            inv.arg(*arg);
        }
        inv.invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| convert(&what(), e))
    }

    async fn read_topic(
        &self,
        topic: &Topic,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<ReadResult> {
        let what = || format!("read of {topic} in {self}");
        let (seq, epoch) = match since {
            Some(p) => (p.seq.to_string(), p.epoch.as_str().to_owned()),
            None => (String::new(), String::new()),
        };
        let limit = limit.to_string();
        let reply = self
            .run(
                topic,
                &[b"read", seq.as_bytes(), epoch.as_bytes(), limit.as_bytes()],
                &what,
            )
            .await?;
        let bad = |why: &str| Error::backend(what(), format!("{why} in the reply {reply:?}"));
        let Value::Array(parts) = &reply else {
            return Err(bad("not an array"));
        };
        let [epoch, head, recovered, entries] = parts.as_slice() else {
            return Err(bad("not 4 parts"));
        };
        let epoch = parse_epoch(epoch).ok_or_else(|| bad("no epoch"))?;
        let head = int(head).ok_or_else(|| bad("no head"))?;
        let recovery = match int(recovered) {
            Some(1) => Recovery::Recovered,
            Some(0) => Recovery::Lost,
            _ => return Err(bad("no recovery flag")),
        };
        let Value::Array(entries) = entries else {
            return Err(bad("entries not an array"));
        };
        let entries = entries
            .iter()
            .map(|e| parse_entry(e).ok_or_else(|| bad("a malformed entry")))
            .collect::<Result<Vec<_>>>()?;
        Ok(ReadResult {
            entries,
            position: StreamPosition { seq: head, epoch },
            recovery,
        })
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn parse_epoch(v: &Value) -> Option<Epoch> {
    match v {
        Value::BulkString(b) => Epoch::parse(std::str::from_utf8(b).ok()?).ok(),
        Value::SimpleString(s) => Epoch::parse(s).ok(),
        _ => None,
    }
}

/// An entry as `XRANGE` gives it: `[id, [a, at, p, payload]]`.
fn parse_entry(v: &Value) -> Option<LogEntry> {
    let Value::Array(pair) = v else { return None };
    let [Value::BulkString(id), Value::Array(fields)] = pair.as_slice() else {
        return None;
    };
    let seq = std::str::from_utf8(id)
        .ok()?
        .strip_suffix("-0")?
        .parse()
        .ok()?;
    let mut at = None;
    let mut payload = None;
    for field in fields.chunks(2) {
        match field {
            [Value::BulkString(k), Value::BulkString(v)] if k == b"a" => {
                at = std::str::from_utf8(v).ok()?.parse::<i64>().ok();
            }
            [Value::BulkString(k), Value::BulkString(v)] if k == b"p" => {
                payload = Some(Bytes::copy_from_slice(v));
            }
            _ => {}
        }
    }
    Some(LogEntry {
        seq,
        at: Timestamp::from_millis(at?),
        payload: payload?,
    })
}

#[async_trait]
impl EventLog for RedisLog {
    async fn append(&self, topic: &Topic, payload: Bytes) -> Result<Appended> {
        check_payload(self, topic, &payload)?;
        let what = || format!("append to {topic} in {self}");
        let max_len = self
            .options
            .max_len
            .map(|n| n.to_string())
            .unwrap_or_default();
        let ttl = self
            .options
            .max_age
            .map(|a| duration_millis(a).to_string())
            .unwrap_or_default();
        let reply = self
            .run(
                topic,
                &[b"append", &payload, max_len.as_bytes(), ttl.as_bytes()],
                &what,
            )
            .await?;
        let bad = || Error::backend(what(), format!("unexpected reply {reply:?}"));
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        match parts.as_slice() {
            [seq, epoch, Value::Int(at)] => Ok(Appended {
                seq: int(seq).ok_or_else(bad)?,
                epoch: parse_epoch(epoch).ok_or_else(bad)?,
                at: Timestamp::from_millis(*at),
            }),
            _ => Err(bad()),
        }
    }

    async fn read(
        &self,
        topic: &Topic,
        since: Option<&StreamPosition>,
        limit: usize,
    ) -> Result<ReadResult> {
        let limit = check_limit(self, topic, limit)?;
        self.read_topic(topic, since, limit).await
    }

    async fn tail(&self, topic: &Topic, since: Option<&StreamPosition>) -> Result<LogStream> {
        let mut source = RedisFollow {
            log: self.clone(),
            topic: topic.clone(),
            blocking: None,
        };
        // Opened now so that a server that cannot be reached fails the call.
        source.blocking().await?;
        Ok(LogStream::follow(source, since.cloned()))
    }

    async fn position(&self, topic: &Topic) -> Result<StreamPosition> {
        let what = || format!("position of {topic} in {self}");
        let reply = self.run(topic, &[b"position"], &what).await?;
        let bad = || Error::backend(what(), format!("unexpected reply {reply:?}"));
        match &reply {
            Value::Array(parts) => match parts.as_slice() {
                [epoch, head] => Ok(StreamPosition {
                    seq: int(head).ok_or_else(bad)?,
                    epoch: parse_epoch(epoch).ok_or_else(bad)?,
                }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

struct RedisFollow {
    log: RedisLog,
    topic: Topic,
    /// The tail's own connection for `XREAD BLOCK`; `None` after an error,
    /// until the next wait opens a new one.
    blocking: Option<MultiplexedConnection>,
}

impl RedisFollow {
    async fn blocking(&mut self) -> Result<&mut MultiplexedConnection> {
        if self.blocking.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(TAIL_BLOCK + CONNECT_TIMEOUT);
            let conn = self
                .log
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| {
                    convert(
                        &format!("opening a tail of {} in {}", self.topic, self.log),
                        e,
                    )
                })?;
            self.blocking = Some(conn);
        }
        self.blocking.as_mut().ok_or_else(|| {
            Error::backend(
                format!("tail of {} in {}", self.topic, self.log),
                "no connection",
            )
        })
    }
}

#[async_trait]
impl Follow for RedisFollow {
    async fn read(&mut self, since: Option<&StreamPosition>, limit: usize) -> Result<ReadResult> {
        self.log.read_topic(&self.topic, since, limit).await
    }

    async fn wait(&mut self, pos: &StreamPosition) -> Result<()> {
        let (stream, _) = self.log.keys(&self.topic);
        let block = duration_millis(TAIL_BLOCK);
        let what = format!("waiting on a tail of {} in {}", self.topic, self.log);
        let conn = self.blocking().await?;
        // Only the wake-up matters; the entries are read through the script.
        let woke: Result<Value> = ::redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(block)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(stream)
            .arg(format!("{}-0", pos.seq))
            .query_async(conn)
            .await
            .map_err(|e| convert(&what, e));
        if woke.is_err() {
            self.blocking = None;
        }
        woke.map(|_| ())
    }
}
