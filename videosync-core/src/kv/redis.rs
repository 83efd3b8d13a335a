//! [`RedisKv`]: the key-value store on Redis, every write one Lua script.
//!
//! # Layout
//! | key | type | holds |
//! |---|---|---|
//! | `vs:kv:{v}:<key>` | hash | `v` (a value) or `n` (a count), and `ver` (its version) |
//! | `vs:kv:{v}:version` | string | the last version handed out, for every key |
//! | `vs:kv:s:<key>` | sorted set | a set's members, scored by expiry (ms, server clock) |
//!
//! Values share the hash tag `{v}` with the version counter, so a script can
//! touch both on Redis Cluster too (all values then live on one shard; sets
//! spread freely). The scripts are in `redis/*.lua`, each declaring every
//! key it touches in `KEYS` and its flags in its first line: `#!lua` alone
//! for the writers (so Redis refuses them when it is out of memory or a
//! stale replica, rather than half-apply them), `#!lua flags=no-writes` for
//! the readers (which replicas may then serve). Reading a value is one
//! `HMGET`, atomic without a script.
//!
//! # Versions
//! Every write takes `INCR vs:kv:{v}:version`, which nothing deletes, so a
//! key's versions only grow, across deletes and expiry. Should the counter
//! vanish all the same (a restart without persistence, an eviction), the
//! next write starts it again from the server's time in microseconds, which
//! is above every version handed out before unless the server's clock went
//! back or it sustained a million writes a second.
//!
//! # Operations
//! Run Redis with persistence (AOF) if values must survive a restart, and
//! with `maxmemory-policy noeviction` (or a `volatile-*` policy): an evicted
//! key is data lost, not a cache miss.
//!
//! # Time
//! Expiry follows the Redis server's clock, not the caller's [`crate::Clock`]:
//! values expire by `PEXPIRE`, and a set's scripts read `TIME` and compare it
//! with the members' scores. Redis never returns an expired key, so expiry is
//! exact as the server sees it. A set's key expires with its last member;
//! expired members of a live set are trimmed whenever a member is added.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Script, ScriptInvocation};
use async_trait::async_trait;
use bytes::Bytes;

use super::{
    check_member, check_value, opt_ttl_millis, ttl_millis, Key, KeyValue, Member, PutMode,
    PutOptions, Version, Versioned,
};
use crate::queue::redis::{connect, convert, server_name};
use crate::{Error, Result, Timestamp};

/// The key-value store on a Redis server (7.0 or later, for `#!lua` flags).
///
/// Operations go through a reconnecting connection; the operation that saw
/// a dropped connection fails with [`Error::Unavailable`].
#[derive(Clone)]
pub struct RedisKv {
    conn: ConnectionManager,
    /// `Redis(host:port)/kv`.
    name: Arc<str>,
}

impl fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisKv({self})")
    }
}

impl fmt::Display for RedisKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

const VERSION_KEY: &str = "vs:kv:{v}:version";

fn value_key(key: &Key) -> String {
    format!("vs:kv:{{v}}:{key}")
}

fn set_key(key: &Key) -> String {
    format!("vs:kv:s:{key}")
}

/// The scripts, run by hash (`EVALSHA`); the driver loads one the server
/// does not know yet and runs it again.
struct Scripts {
    put: Script,
    delete: Script,
    incr: Script,
    set_add: Script,
    set_remove: Script,
    set_members: Script,
    set_len: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    put: Script::new(include_str!("redis/put.lua")),
    delete: Script::new(include_str!("redis/delete.lua")),
    incr: Script::new(include_str!("redis/incr.lua")),
    set_add: Script::new(include_str!("redis/set_add.lua")),
    set_remove: Script::new(include_str!("redis/set_remove.lua")),
    set_members: Script::new(include_str!("redis/set_members.lua")),
    set_len: Script::new(include_str!("redis/set_len.lua")),
});

impl RedisKv {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL, [`Error::Unavailable`] when the
    /// server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let (client, conn) = connect(url).await?;
        Ok(RedisKv {
            name: format!("{}/kv", server_name(&client)).into(),
            conn,
        })
    }

    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
        what: impl FnOnce() -> String,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| convert(&what(), e))
    }

    fn unexpected(&self, what: &str, reply: &[String]) -> Error {
        Error::backend(
            what.to_owned(),
            format!("unexpected reply from the script on {self}: {reply:?}"),
        )
    }
}

fn parse_version(what: &str, text: &str) -> Result<Version> {
    text.parse()
        .map(Version)
        .map_err(|_| Error::backend(what.to_owned(), format!("version `{text}` is not a number")))
}

/// "the version is v7" or "there is no value", from a script's `cur or ''`.
fn current(text: &str) -> String {
    if text.is_empty() {
        "there is no value".to_owned()
    } else {
        format!("the version is v{text}")
    }
}

#[async_trait]
impl KeyValue for RedisKv {
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        let what = || format!("get of {key} from {self}");
        // One command reads the whole hash atomically; no script needed.
        let (value, count, ver): (Option<Vec<u8>>, Option<String>, Option<String>) =
            ::redis::cmd("HMGET")
                .arg(value_key(key))
                .arg("v")
                .arg("n")
                .arg("ver")
                .query_async(&mut self.conn.clone())
                .await
                .map_err(|e| convert(&what(), e))?;
        let Some(ver) = ver else {
            return Ok(None);
        };
        let value = match (value, count) {
            (Some(v), _) => Bytes::from(v),
            (None, Some(n)) => Bytes::from(n),
            (None, None) => {
                return Err(Error::backend(
                    what(),
                    "the hash has neither a value nor a count",
                ))
            }
        };
        Ok(Some(Versioned {
            value,
            version: parse_version(&what(), &ver)?,
        }))
    }

    async fn put(&self, key: &Key, value: Bytes, opts: PutOptions) -> Result<Version> {
        check_value("put", key, &value)?;
        let ttl = opt_ttl_millis("put", key, opts.ttl)?;
        let (mode, want) = match opts.mode {
            PutMode::Overwrite => ("o", String::new()),
            PutMode::Create => ("c", String::new()),
            PutMode::IfVersion(v) => ("i", v.get().to_string()),
        };
        let mut inv = SCRIPTS.put.prepare_invoke();
        inv.key(value_key(key))
            .key(VERSION_KEY)
            .arg(mode)
            .arg(&want)
            .arg(ttl.unwrap_or(0))
            .arg(value.as_ref());
        let what = || format!("put of {key} in {self}");
        let reply: Vec<String> = self.invoke(&inv, what).await?;
        match reply.as_slice() {
            [status, ver] if status == "ok" => parse_version(&what(), ver),
            [status, ver] if status == "exists" => Err(Error::already_exists(format!(
                "create of {key} in {self}: it exists ({})",
                current(ver)
            ))),
            [status, ver] if status == "precondition" => Err(Error::precondition(format!(
                "put of {key} in {self} if version v{want}: {}",
                current(ver)
            ))),
            _ => Err(self.unexpected(&what(), &reply)),
        }
    }

    async fn delete(&self, key: &Key, if_version: Option<Version>) -> Result<bool> {
        let want = if_version.map(|v| v.get().to_string()).unwrap_or_default();
        let mut inv = SCRIPTS.delete.prepare_invoke();
        inv.key(value_key(key)).arg(&want);
        let what = || format!("delete of {key} from {self}");
        let reply: Vec<String> = self.invoke(&inv, what).await?;
        match reply.as_slice() {
            [status] if status == "deleted" => Ok(true),
            [status] if status == "absent" => Ok(false),
            [status, ver] if status == "precondition" => Err(Error::precondition(format!(
                "delete of {key} from {self} if version v{want}: {}",
                current(ver)
            ))),
            _ => Err(self.unexpected(&what(), &reply)),
        }
    }

    async fn incr(&self, key: &Key, by: i64, ttl: Option<Duration>) -> Result<i64> {
        let ttl = opt_ttl_millis("incr", key, ttl)?;
        let mut inv = SCRIPTS.incr.prepare_invoke();
        inv.key(value_key(key))
            .key(VERSION_KEY)
            .arg(by.to_string())
            .arg(ttl.unwrap_or(0));
        let what = || format!("incr of {key} by {by} in {self}");
        let reply: Vec<String> = self.invoke(&inv, what).await?;
        match reply.as_slice() {
            [status, n] if status == "ok" => n
                .parse()
                .map_err(|_| Error::backend(what(), format!("the count `{n}` is not a number"))),
            [status] if status == "not_counter" => Err(Error::conflict(format!(
                "incr of {key} in {self}: it holds a value written by put, not a counter"
            ))),
            [status, n] if status == "overflow" => Err(Error::conflict(format!(
                "incr of {key} by {by} in {self}: the count {n} would overflow"
            ))),
            _ => Err(self.unexpected(&what(), &reply)),
        }
    }

    async fn set_add(&self, key: &Key, member: &str, ttl: Duration) -> Result<bool> {
        check_member("set_add", key, member)?;
        let ttl = ttl_millis("set_add", key, ttl)?;
        let mut inv = SCRIPTS.set_add.prepare_invoke();
        inv.key(set_key(key)).arg(member).arg(ttl);
        let added: i64 = self
            .invoke(&inv, || format!("set_add of {member:?} to {key} in {self}"))
            .await?;
        Ok(added == 1)
    }

    async fn set_remove(&self, key: &Key, member: &str) -> Result<bool> {
        check_member("set_remove", key, member)?;
        let mut inv = SCRIPTS.set_remove.prepare_invoke();
        inv.key(set_key(key)).arg(member);
        let removed: i64 = self
            .invoke(&inv, || {
                format!("set_remove of {member:?} from {key} in {self}")
            })
            .await?;
        Ok(removed == 1)
    }

    async fn set_members(&self, key: &Key) -> Result<Vec<Member>> {
        let mut inv = SCRIPTS.set_members.prepare_invoke();
        inv.key(set_key(key));
        let what = || format!("set_members of {key} in {self}");
        let reply: Vec<(String, String)> = self.invoke(&inv, what).await?;
        let mut members = reply
            .into_iter()
            .map(|(name, score)| {
                // Scores are whole milliseconds, well within f64's exact
                // integers.
                #[allow(clippy::cast_possible_truncation)]
                let at = score.parse::<f64>().map(|s| s as i64).map_err(|_| {
                    Error::backend(what(), format!("the score `{score}` is not a number"))
                })?;
                Ok(Member {
                    name,
                    expires_at: Timestamp::from_millis(at),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    async fn set_len(&self, key: &Key) -> Result<u64> {
        let mut inv = SCRIPTS.set_len.prepare_invoke();
        inv.key(set_key(key));
        self.invoke(&inv, || format!("set_len of {key} in {self}"))
            .await
    }

    async fn sweep(&self) -> Result<u64> {
        // Redis expires keys itself; see the module docs.
        Ok(0)
    }
}

#[cfg(all(test, feature = "conformance"))]
#[allow(clippy::unwrap_used)] // Test code.
mod tests {
    use super::*;

    /// A lost version counter (a restart without persistence, an eviction)
    /// starts again above every version handed out before.
    #[tokio::test]
    async fn a_lost_version_counter_never_goes_back() {
        let Some(url) = crate::conformance::service_url("VIDEOSYNC_TEST_REDIS_URL") else {
            return;
        };
        let kv = RedisKv::connect(&url).await.unwrap();
        let key = Key::parse(&crate::conformance::unique_name("test:counter-lost:")).unwrap();
        let v1 = kv
            .put(
                &key,
                Bytes::from("a"),
                PutOptions::default().ttl(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        let _: i64 = ::redis::cmd("DEL")
            .arg(VERSION_KEY)
            .query_async(&mut kv.conn.clone())
            .await
            .unwrap();
        let v2 = kv
            .put(&key, Bytes::from("b"), PutOptions::if_version(v1))
            .await
            .unwrap();
        assert!(v2 > v1, "{v2} must be above {v1}");
        kv.delete(&key, None).await.unwrap();
        let _: i64 = ::redis::cmd("DEL")
            .arg(VERSION_KEY)
            .query_async(&mut kv.conn.clone())
            .await
            .unwrap();
        assert_eq!(kv.incr(&key, 1, None).await.unwrap(), 1);
        let v3 = kv.get(&key).await.unwrap().unwrap().version;
        assert!(v3 > v2, "{v3} must be above {v2}");
        kv.delete(&key, None).await.unwrap();
    }
}
