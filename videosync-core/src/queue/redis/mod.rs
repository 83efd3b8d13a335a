//! [`RedisQueue`]: the job queue on Redis, every state change one Lua script.
//!
//! # Layout
//! All keys of a queue share the Redis Cluster hash tag `{<queue>}`, so every
//! script touches one slot. The scripts build job keys from a prefix rather
//! than declaring each in `KEYS`, which Redis and Redis Cluster allow (same
//! slot) but servers that enforce declared keys do not.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `vs:q:{q}:job:<id>` | hash | the job's fields, its lease and its `rank` |
//! | `vs:q:{q}:waiting` | sorted set | every ready or scheduled job's rank, by `run_at` |
//! | `vs:q:{q}:ready` | sorted set | the ranks of the waiting jobs that are due, all scored 0 |
//! | `vs:q:{q}:horizon` | string | the time up to which `ready` mirrors `waiting` |
//! | `vs:q:{q}:running` | sorted set | held jobs with attempts left, by lease end |
//! | `vs:q:{q}:final` | sorted set | held jobs on their last attempt, by lease end |
//! | `vs:q:{q}:dead` | sorted set | `<seq>:<id>` of dead letters, by when they died |
//! | `vs:q:{q}:dedupe` | hash | dedupe key to the id of the live or done job holding it |
//! | `vs:q:{q}:seq` | string | the enqueue counter |
//! | `vs:q:{q}:done` | sorted set | ids of acked jobs, by when they were acked |
//! | `vs:q:{q}:cancelled` | sorted set | ids of cancelled jobs, by when they were cancelled |
//! | `vs:q:{q}:kready:<kind>` | sorted set | the part of `ready` of one kind, for reserves by kind |
//!
//! A job's rank is `<1000000 - priority>:<run_at>:<seq>:<id>` with fixed-width
//! numbers, so byte order is the SQL backend's `ORDER BY priority DESC,
//! run_at ASC, seq ASC`: `ready` (equal scores order by member) pops the next
//! job with `ZRANGE 0 0`.
//!
//! The scripts live in `queue/redis/*.lua` (one file each, plus
//! `prelude.lua`, which every script starts with), each flagged with a
//! `#!lua` line. A script with that line is "flagged": Redis checks up front
//! whether it may write, refusing it whole when the server is out of memory
//! rather than failing it halfway at its first write (nothing is rolled
//! back), and in a cluster confines it to the slot of its declared keys.
//!
//! # Semantics
//! The scripts answer exactly as the SQL backend (`SqlQueue`) does, including
//! under a wall clock that steps back, because time comes from the queue's
//! [`Clock`] as an argument (never Redis `TIME`, so a test can drive it); a
//! test below checks this by running random operations on both. One clock
//! for the fleet comes from the check at connect instead: the queue reads
//! Redis `TIME` and applies [`ClockCheck`] (refuse or warn when this host is
//! off by more than [`super::MAX_CLOCK_SKEW`]).
//!
//! Done and cancelled jobs stay (indexed in `done` and `cancelled`) for
//! [`QueueOptions::retention`]; the scripts that dead-letter exhausted leases
//! (enqueue, reserve, get, counts, the dead-letter listing) vacuum the older
//! ones, releasing a done job's dedupe key with it.
//!
//! - `ready` is `waiting` up to the horizon; a script that needs it first
//!   moves the horizon to its `now`, in either direction.
//! - A lease that ended stays in `running` until a reserve takes the job (it
//!   competes with the ready jobs by rank) or, on the last attempt, until the
//!   next reserve, get, count or listing dead-letters it. So counts report
//!   it as running and a clock stepped back revives it, as in SQL. The price:
//!   a reserve reads every ended lease still held (few, unless many workers
//!   died at once).
//!
//! Nothing lives only in a client: a worker that vanishes leaves its job in
//! `running` or `final`, where its lease runs out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script, ScriptInvocation};
use async_trait::async_trait;

use super::read_dead_cursor;
use super::{
    clip_reason, judge_clock_skew, lease_conflict, vacuum_before, validate_lease,
    validate_queue_name, Acked, Cancelled, ClockCheck, Enqueued, Failed, Job, JobQueue, JobState,
    Lease, LeaseToken, NewJob, QueueCounts, QueueOptions, ReserveOptions, LEASE_EXHAUSTED,
};
use crate::page::{check_limit, Cursor, Page};
use crate::{redact_url, Clock, Error, JobId, Result, Timestamp};

/// How long opening a connection may take before it is [`Error::Unavailable`].
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command may wait for its reply. The scripts are short, so a
/// reply this late means the server or the network is in trouble.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A job queue on Redis (tested with Redis 7).
///
/// Operations go through a [`ConnectionManager`], which reconnects after a
/// dropped connection; the operation that saw the drop fails with
/// [`Error::Unavailable`] and the next one uses the new connection.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    /// `Redis(host:port)/<queue>`.
    name: Arc<str>,
    /// The fixed keys, in the order the scripts read `KEYS`.
    keys: Arc<[String; 10]>,
    /// `vs:q:{<queue>}:job:`, which a job id completes.
    job_prefix: Arc<str>,
    /// `vs:q:{<queue>}:kready:`, which a kind completes.
    kind_prefix: Arc<str>,
    clock: Arc<dyn Clock>,
    opts: QueueOptions,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisQueue({self})")
    }
}

impl fmt::Display for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A job with its lease fields, as decoded from its hash.
struct Row {
    job: Job,
    lease_token: Option<String>,
    lease_until: Option<Timestamp>,
    seq: i64,
}

impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and opens the queue named `queue` there, after the clock check that
    /// [`QueueOptions::clock_check`] asks for. `opts` is a [`QueueOptions`]
    /// or a [`super::RetryPolicy`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL or queue name,
    /// [`Error::Unavailable`] when the server cannot be reached,
    /// [`Error::Precondition`] when the clock check refuses.
    pub async fn connect(
        url: &str,
        queue: &str,
        clock: Arc<dyn Clock>,
        opts: impl Into<QueueOptions>,
    ) -> Result<Self> {
        validate_queue_name(queue)?;
        let (client, conn) = connect(url).await?;
        let base = format!("vs:q:{{{queue}}}:");
        let keys = [
            "waiting",
            "ready",
            "horizon",
            "running",
            "final",
            "dead",
            "dedupe",
            "seq",
            "done",
            "cancelled",
        ]
        .map(|k| format!("{base}{k}"));
        let q = RedisQueue {
            conn,
            name: format!("{}/{queue}", server_name(&client)).into(),
            keys: Arc::new(keys),
            job_prefix: format!("{base}job:").into(),
            kind_prefix: format!("{base}kready:").into(),
            clock,
            opts: opts.into(),
        };
        if q.opts.clock_check != ClockCheck::Off {
            q.check_clock(q.opts.clock_check).await?;
        }
        Ok(q)
    }

    /// Reads the server's clock (`TIME`) and compares it with the queue's
    /// [`Clock`], acting as `check` says.
    ///
    /// # Errors
    /// [`Error::Precondition`] for a skew over [`super::MAX_CLOCK_SKEW`]
    /// under [`ClockCheck::Refuse`], or a Redis error.
    pub async fn check_clock(&self, check: ClockCheck) -> Result<()> {
        let what = || format!("reading the clock of {self}");
        let before = self.clock.now();
        let (secs, micros): (i64, i64) = ::redis::cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| convert(&what(), e))?;
        let after = self.clock.now();
        let server = secs.saturating_mul(1000).saturating_add(micros / 1000);
        judge_clock_skew(
            &self.to_string(),
            check,
            before,
            Timestamp::from_millis(server),
            after,
        )
    }

    /// An invocation of `script` with the queue's keys and the arguments
    /// every script reads: the job key prefix, `now`, the reason for
    /// dead-lettering exhausted leases, the vacuum horizon and the prefix of
    /// the per-kind ready sets.
    fn invocation(&self, script: &'static Script, now: Timestamp) -> ScriptInvocation<'static> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.iter() {
            inv.key(key);
        }
        inv.arg(&*self.job_prefix)
            .arg(now.as_millis())
            .arg(LEASE_EXHAUSTED)
            .arg(vacuum_before(now, self.opts.retention).as_millis())
            .arg(&*self.kind_prefix);
        inv
    }

    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'static>,
        what: impl FnOnce() -> String,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| convert(&what(), e))
    }

    /// Decodes a job hash given as the field-value list of `HGETALL`. A
    /// ready job whose time has not come is reported as scheduled, as the
    /// SQL backend does.
    fn row(&self, pairs: &[String], now: Timestamp) -> Result<Row> {
        let fields: HashMap<&str, &str> = pairs
            .chunks_exact(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((k.as_str(), v.as_str())),
                _ => None,
            })
            .collect();
        let id = fields.get("id").copied().unwrap_or("?");
        let what = || format!("decoding job {id} in {self}");
        let text = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| Error::backend(what(), format!("the field `{name}` is missing")))
        };
        let int = |name: &str| -> Result<i64> {
            let v = text(name)?;
            v.parse()
                .map_err(|_| Error::backend(what(), format!("the field `{name}` is `{v}`")))
        };
        let small = |name: &str| -> Result<u32> {
            u32::try_from(int(name)?)
                .map_err(|_| Error::backend(what(), format!("the field `{name}` is out of range")))
        };
        let optional = |name: &str| fields.get(name).map(|s| (*s).to_owned());
        let state = JobState::parse(text("state")?)?;
        let run_at = Timestamp::from_millis(int("run_at")?);
        let state = match state {
            JobState::Ready if run_at > now => JobState::Scheduled,
            s => s,
        };
        let priority = i32::try_from(int("priority")?)
            .map_err(|_| Error::backend(what(), "the field `priority` is out of range"))?;
        let job = Job {
            id: text("id")?.parse()?,
            kind: text("kind")?.to_owned(),
            payload: serde_json::from_str(text("payload")?).map_err(|e| {
                Error::backend(format!("decoding payload of job {id} in {self}"), e)
            })?,
            priority,
            dedupe_key: optional("dedupe_key"),
            state,
            attempts: small("attempts")?,
            max_attempts: small("max_attempts")?,
            run_at,
            last_error: optional("last_error"),
            created_at: Timestamp::from_millis(int("created_at")?),
            updated_at: Timestamp::from_millis(int("updated_at")?),
            finished_at: match fields.get("finished_at") {
                Some(_) => Some(Timestamp::from_millis(int("finished_at")?)),
                None => None,
            },
        };
        let lease_until = match fields.get("lease_until") {
            Some(_) => Some(Timestamp::from_millis(int("lease_until")?)),
            None => None,
        };
        Ok(Row {
            job,
            lease_token: optional("lease_token"),
            lease_until,
            seq: int("seq")?,
        })
    }

    /// Explains why a lease-guarded script changed nothing, from its reply:
    /// `missing`, or `conflict` followed by the job's fields.
    fn lease_error(&self, op: &str, lease: &Lease, reply: &[String], now: Timestamp) -> Error {
        let id = lease.job().id;
        match reply.split_first() {
            Some((status, _)) if status == "missing" => Error::not_found(format!(
                "{op} of job {id} in {self}: no such job (never enqueued, or vacuumed after the retention window)"
            )),
            Some((status, fields)) if status == "conflict" => match self.row(fields, now) {
                Ok(row) => lease_conflict(
                    op,
                    &self.to_string(),
                    lease,
                    &row.job,
                    row.lease_token.as_deref(),
                    row.lease_until,
                    now,
                ),
                Err(e) => e,
            },
            _ => unexpected(&format!("{op} of job {id} in {self}"), reply),
        }
    }
}

/// A client and a reconnecting connection for `url`.
///
/// # Errors
/// [`Error::InvalidInput`] for a bad URL, [`Error::Unavailable`] when the
/// server cannot be reached.
pub(crate) async fn connect(url: &str) -> Result<(Client, ConnectionManager)> {
    let client = Client::open(url).map_err(|e| {
        // `redact_url` can only hide a password in a URL that parses.
        let shown = match url::Url::parse(url) {
            Ok(_) => redact_url(url),
            Err(_) => "(unparsable, not shown)".to_owned(),
        };
        Error::invalid_input(format!("Redis URL `{shown}` is not valid: {e}"))
    })?;
    // The driver's default backoff multiplies a 1 s delay by its `factor`
    // (100) per try, up to 60 s: a server that is down would hold the first
    // connection for minutes. Two quick retries, a second apart, ride out a
    // restart; a later operation starts a new reconnection anyway.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_number_of_retries(2)
        .set_factor(2)
        .set_max_delay(1_000);
    let conn = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|e| convert(&format!("connecting to Redis at {}", redact_url(url)), e))?;
    Ok((client, conn))
}

/// `Redis(host:port)`, naming the server without credentials.
pub(crate) fn server_name(client: &Client) -> String {
    format!("Redis({})", client.get_connection_info().addr)
}

/// Converts a driver error met while doing `what`: what may pass (the
/// connection, a timeout, a server that is loading or failing over) is
/// [`Error::Unavailable`], anything else [`Error::Backend`].
pub(crate) fn convert(what: &str, e: RedisError) -> Error {
    use ::redis::ErrorKind as K;
    let transient = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            K::BusyLoadingError | K::TryAgain | K::ClusterDown | K::MasterDown | K::ReadOnly
        );
    if transient {
        Error::unavailable(what, e)
    } else {
        Error::backend(what, e)
    }
}

fn unexpected(what: &str, reply: &[String]) -> Error {
    Error::backend(what, format!("unexpected reply from the script: {reply:?}"))
}

/// `t` as 20 digits whose byte order is the order of the times (the sign
/// bit flipped turns `i64` order into `u64` order).
fn sortable(t: Timestamp) -> String {
    #[allow(clippy::cast_sign_loss)] // The bits are kept; the flip fixes the order.
    let bits = (t.as_millis() as u64) ^ (1 << 63);
    format!("{bits:020}")
}

/// The scripts, run by hash (`EVALSHA`); on a server that does not know one
/// yet (first use, a restart, `SCRIPT FLUSH`) the driver loads it and runs it
/// again.
///
/// Each lives in its own `.lua` file beside this module and starts with a
/// `#!lua` line. A script with that line is "flagged": Redis checks up front
/// whether it may write (refusing it whole when the server is out of memory,
/// rather than failing it halfway at its first write, with nothing rolled
/// back), and in a cluster confines it to the slot of its declared keys (all
/// of a queue's keys share the `{queue}` hash tag). None declares
/// `no-writes`: every one may dead-letter or vacuum on the way.
struct Scripts {
    enqueue: Script,
    reserve: Script,
    heartbeat: Script,
    ack: Script,
    fail: Script,
    cancel: Script,
    get: Script,
    dead_letters: Script,
    requeue: Script,
    counts: Script,
}

const PRELUDE: &str = include_str!("prelude.lua");

/// The script `source` with the prelude put after its `#!lua` line (which
/// must stay the first line).
fn with_prelude(source: &str) -> String {
    let (shebang, body) = source.split_once('\n').unwrap_or((source, ""));
    debug_assert!(shebang.starts_with("#!lua"), "{shebang}");
    format!("{shebang}\n{PRELUDE}\n{body}")
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |source: &str| Script::new(&with_prelude(source));
    Scripts {
        enqueue: script(include_str!("enqueue.lua")),
        reserve: script(include_str!("reserve.lua")),
        heartbeat: script(include_str!("heartbeat.lua")),
        ack: script(include_str!("ack.lua")),
        fail: script(include_str!("fail.lua")),
        cancel: script(include_str!("cancel.lua")),
        get: script(include_str!("get.lua")),
        dead_letters: script(include_str!("dead_letters.lua")),
        requeue: script(include_str!("requeue.lua")),
        counts: script(include_str!("counts.lua")),
    }
});

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        job.validate()?;
        let now = self.clock.now();
        let id = JobId::new();
        let run_at = job.run_after.unwrap_or(now);
        let mut inv = self.invocation(&SCRIPTS.enqueue, now);
        inv.arg(id.to_string())
            .arg(&job.kind)
            .arg(job.payload.to_string())
            .arg(job.priority)
            .arg(job.dedupe_key.as_deref().unwrap_or(""))
            .arg(job.max_attempts.unwrap_or(self.opts.retry.max_attempts))
            .arg(run_at.as_millis())
            .arg(sortable(run_at));
        let what = || format!("enqueue of a {} job in {self}", job.kind);
        let reply: Vec<String> = self.invoke(&inv, what).await?;
        match reply.as_slice() {
            [status] if status == "new" => Ok(Enqueued::New(id)),
            [status, existing] if status == "duplicate" => {
                Ok(Enqueued::Duplicate(existing.parse()?))
            }
            _ => Err(unexpected(&what(), &reply)),
        }
    }

    async fn reserve(&self, opts: ReserveOptions) -> Result<Option<Lease>> {
        opts.validate()?;
        let now = self.clock.now();
        let token = LeaseToken::generate();
        let expires_at = now.saturating_add(opts.lease);
        let mut inv = self.invocation(&SCRIPTS.reserve, now);
        inv.arg(token.as_str()).arg(expires_at.as_millis());
        for kind in opts.kinds.iter().flatten() {
            inv.arg(kind.as_str());
        }
        let reply: Vec<String> = self
            .invoke(&inv, || format!("reserving a job in {self}"))
            .await?;
        if reply.is_empty() {
            return Ok(None);
        }
        let row = self.row(&reply, now)?;
        Ok(Some(Lease::new(row.job, token, expires_at)))
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Timestamp> {
        validate_lease(extend)?;
        let now = self.clock.now();
        let until = now.saturating_add(extend);
        let id = lease.job().id;
        let mut inv = self.invocation(&SCRIPTS.heartbeat, now);
        inv.arg(id.to_string())
            .arg(lease.token().as_str())
            .arg(until.as_millis());
        let reply: Vec<String> = self
            .invoke(&inv, || format!("heartbeat of job {id} in {self}"))
            .await?;
        match reply.as_slice() {
            [status] if status == "ok" => Ok(until),
            _ => Err(self.lease_error("heartbeat", lease, &reply, now)),
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<Acked> {
        let now = self.clock.now();
        let id = lease.job().id;
        let mut inv = self.invocation(&SCRIPTS.ack, now);
        inv.arg(id.to_string()).arg(lease.token().as_str());
        let reply: Vec<String> = self
            .invoke(&inv, || format!("ack of job {id} in {self}"))
            .await?;
        match reply.as_slice() {
            [status] if status == "ok" => Ok(Acked::Done),
            [status] if status == "already" => Ok(Acked::AlreadyAcked),
            _ => Err(self.lease_error("ack", lease, &reply, now)),
        }
    }

    async fn fail(&self, lease: &Lease, reason: &str) -> Result<Failed> {
        let now = self.clock.now();
        let id = lease.job().id;
        // The script decides retry or dead from the stored attempts. The
        // delay comes from the lease's count, which is the stored one: the
        // script acts only under the lease's token, and only a reserve
        // (which issues a new token) changes the count; leases are made by
        // the queue alone.
        let retry_at = now.saturating_add(self.opts.retry.backoff(lease.job().attempts));
        let mut inv = self.invocation(&SCRIPTS.fail, now);
        inv.arg(id.to_string())
            .arg(lease.token().as_str())
            .arg(clip_reason(reason))
            .arg(retry_at.as_millis())
            .arg(sortable(retry_at));
        let reply: Vec<String> = self
            .invoke(&inv, || format!("fail of job {id} in {self}"))
            .await?;
        match reply.as_slice() {
            [status] if status == "dead" => Ok(Failed::DeadLettered),
            [status] if status == "retry" => Ok(Failed::Retrying { at: retry_at }),
            _ => Err(self.lease_error("fail", lease, &reply, now)),
        }
    }

    async fn cancel(&self, id: JobId) -> Result<Cancelled> {
        let now = self.clock.now();
        let what = format!("cancel of job {id} in {self}");
        let mut inv = self.invocation(&SCRIPTS.cancel, now);
        inv.arg(id.to_string());
        let reply: Vec<String> = self.invoke(&inv, || what.clone()).await?;
        match reply.as_slice() {
            [status] if status == "removed" => Ok(Cancelled::Removed),
            [status] if status == "signalled" => Ok(Cancelled::Signalled),
            [status] if status == "already" => Ok(Cancelled::AlreadyCancelled),
            [status] if status == "done" => {
                Err(Error::conflict(format!("{what}: it is done already")))
            }
            [status] if status == "missing" => {
                Err(Error::not_found(format!("{what}: no such job")))
            }
            _ => Err(unexpected(&what, &reply)),
        }
    }

    async fn get(&self, id: JobId) -> Result<Job> {
        let now = self.clock.now();
        let mut inv = self.invocation(&SCRIPTS.get, now);
        inv.arg(id.to_string());
        let reply: Vec<String> = self
            .invoke(&inv, || format!("reading job {id} in {self}"))
            .await?;
        if reply.is_empty() {
            return Err(Error::not_found(format!("job {id} in {self}: no such job")));
        }
        Ok(self.row(&reply, now)?.job)
    }

    async fn dead_letters(&self, after: Option<&Cursor>, limit: usize) -> Result<Page<Job>> {
        let limit = check_limit(limit)?;
        let (t, s) = match after {
            Some(c) => {
                let (t, s) = read_dead_cursor(c, &self.to_string())?;
                (t.to_string(), format!("{s:020}"))
            }
            None => (String::new(), String::new()),
        };
        let now = self.clock.now();
        let mut inv = self.invocation(&SCRIPTS.dead_letters, now);
        inv.arg(t).arg(s).arg(limit + 1);
        let reply: Vec<Vec<String>> = self
            .invoke(&inv, || format!("listing dead letters of {self}"))
            .await?;
        let mut rows = reply
            .iter()
            .map(|fields| self.row(fields, now))
            .collect::<Result<Vec<Row>>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = match rows.last() {
            Some(last) if more => Some(Cursor::new(format!(
                "{}:{}",
                last.job.finished_at.map_or(i64::MIN, Timestamp::as_millis),
                last.seq
            ))),
            _ => None,
        };
        Ok(Page {
            items: rows.into_iter().map(|r| r.job).collect(),
            next,
        })
    }

    async fn requeue(&self, id: JobId) -> Result<()> {
        let now = self.clock.now();
        let what = format!("requeue of job {id} in {self}");
        let mut inv = self.invocation(&SCRIPTS.requeue, now);
        inv.arg(id.to_string()).arg(sortable(now));
        let reply: Vec<String> = self.invoke(&inv, || what.clone()).await?;
        match reply.split_first() {
            Some((status, [])) if status == "ok" => Ok(()),
            Some((status, [])) if status == "missing" => {
                Err(Error::not_found(format!("{what}: no such job")))
            }
            Some((status, [])) if status == "held" => Err(Error::conflict(format!(
                "{what}: a live job holds its dedupe key"
            ))),
            Some((status, fields)) if status == "alive" => {
                let row = self.row(fields, now)?;
                Err(Error::conflict(format!(
                    "{what}: it is {}, not dead",
                    row.job.state
                )))
            }
            _ => Err(unexpected(&what, &reply)),
        }
    }

    async fn counts(&self) -> Result<QueueCounts> {
        let now = self.clock.now();
        let inv = self.invocation(&SCRIPTS.counts, now);
        let what = || format!("counting jobs in {self}");
        let reply: Vec<u64> = self.invoke(&inv, what).await?;
        match reply.as_slice() {
            &[ready, scheduled, running, dead, done, cancelled] => Ok(QueueCounts {
                ready,
                scheduled,
                running,
                dead,
                done,
                cancelled,
            }),
            _ => Err(Error::backend(
                what(),
                format!("unexpected reply from the script: {reply:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_times_order_as_bytes() {
        let times = [i64::MIN, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<String> = times
            .iter()
            .map(|&t| sortable(Timestamp::from_millis(t)))
            .collect();
        assert!(keys.iter().all(|k| k.len() == 20), "{keys:?}");
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn ids_sit_at_fixed_offsets() {
        // The scripts cut the id out of a rank at byte 51 and out of a dead
        // member at byte 22 (Lua counts from 1).
        let id = JobId::new();
        let (lowest, highest) = (
            *super::super::PRIORITY_RANGE.start(),
            *super::super::PRIORITY_RANGE.end(),
        );
        for priority in [lowest, 0, highest] {
            let rank = format!(
                "{:07}:{}:{:020}:{id}",
                1_000_000 - priority,
                sortable(Timestamp::from_millis(-5)),
                u64::MAX,
            );
            assert_eq!(rank[50..].parse::<JobId>().ok(), Some(id), "{rank}");
        }
        let dead = format!("{:020}:{id}", u64::MAX);
        assert_eq!(dead[21..].parse::<JobId>().ok(), Some(id), "{dead}");
    }

    #[tokio::test]
    async fn bad_urls_and_dead_servers_are_told_apart() {
        let clock: Arc<dyn Clock> = Arc::new(crate::SystemClock::new());
        let open = |url: &'static str| {
            let clock = clock.clone();
            async move { RedisQueue::connect(url, "q", clock, crate::RetryPolicy::default()).await }
        };
        for url in [
            "redis://h:notaport/",
            "rediss-ish://h/",
            "redis://:secret@[::1/",
        ] {
            let err = open(url).await.unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{url}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        // Port 1 is closed on any sane host: refused, hence retryable.
        let err = open("redis://user:secret@127.0.0.1:1/").await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable, "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }

    /// The same random operations, under the same stepping clock, on this
    /// backend and on SQLite (the reference) give the same answers: jobs,
    /// lease ends, counts, dead letters and error messages alike.
    #[cfg(all(feature = "sqlite", feature = "conformance"))]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_as_the_sql_backend_does() {
        use crate::queue::{queue_from_url, DynJobQueue, RetryPolicy};
        use crate::ManualClock;

        let Some(url) = crate::conformance::service_url("VIDEOSYNC_TEST_REDIS_URL") else {
            return;
        };
        for seed in 1..=10u64 {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new(crate::conformance::START));
            let retry = RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(700),
                max_delay: Duration::from_secs(5),
            };
            let name = crate::conformance::unique_name("diff");
            let sqlite = format!("sqlite://{}", dir.path().join("q.db").display());
            let opts = QueueOptions {
                retry,
                // Short, so that the random walk crosses it.
                retention: Duration::from_secs(4),
                clock_check: ClockCheck::Off,
            };
            let open = |url: String| {
                let (clock, opts, name) = (clock.clone(), opts.clone(), name.clone());
                async move { queue_from_url(&url, &name, clock, opts).await.unwrap() }
            };
            let (sql, red): (DynJobQueue, DynJobQueue) =
                (open(sqlite).await, open(url.clone()).await);
            let mut diff = Diff {
                names: [sql.to_string(), red.to_string()],
                ids: Vec::new(),
            };
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut rnd = move |n: usize| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                usize::try_from(state % n as u64).unwrap()
            };
            let ms = |n: usize| Duration::from_millis(n as u64);
            let mut leases: Vec<(Lease, Lease)> = Vec::new();
            let mut cursors: Vec<(Option<Cursor>, Option<Cursor>)> = vec![(None, None)];
            for step in 0..300 {
                let at = format!("seed {seed}, step {step}");
                match rnd(14) {
                    0 | 1 => {
                        let mut job =
                            NewJob::new(format!("k{}", rnd(3)), serde_json::json!(rnd(9)))
                                .priority(i32::try_from(rnd(3)).unwrap() - 1);
                        if rnd(3) == 0 {
                            job = job.dedupe_key(format!("d{}", rnd(3)));
                        }
                        if rnd(3) == 0 {
                            job = job.run_after(
                                clock
                                    .now()
                                    .saturating_add(ms(rnd(5000)))
                                    .saturating_sub(ms(2000)),
                            );
                        }
                        if rnd(2) == 0 {
                            job = job.max_attempts(u32::try_from(rnd(3)).unwrap() + 1);
                        }
                        match (
                            sql.enqueue(job.clone()).await.unwrap(),
                            red.enqueue(job).await.unwrap(),
                        ) {
                            (Enqueued::New(s), Enqueued::New(r)) => diff.ids.push((r, s)),
                            (Enqueued::Duplicate(s), Enqueued::Duplicate(r)) => {
                                assert!(diff.ids.contains(&(r, s)), "{at}");
                            }
                            other => panic!("{at}: {other:?}"),
                        }
                    }
                    2 | 3 => {
                        let mut opts = ReserveOptions::lease(ms(rnd(4000) + 1));
                        if rnd(3) == 0 {
                            opts = opts.kinds((0..=rnd(2)).map(|k| format!("k{k}")));
                        }
                        match (
                            sql.reserve(opts.clone()).await.unwrap(),
                            red.reserve(opts).await.unwrap(),
                        ) {
                            (None, None) => {}
                            (Some(s), Some(r)) => {
                                assert_eq!(s.job(), &diff.job(r.job().clone()), "{at}");
                                assert_eq!(s.expires_at(), r.expires_at(), "{at}");
                                leases.push((s, r));
                            }
                            other => panic!("{at}: {other:?}"),
                        }
                    }
                    4 | 5 if !leases.is_empty() => {
                        let (s, r) = leases[rnd(leases.len())].clone();
                        let extend = ms(rnd(3000) + 1);
                        let (a, b) = match rnd(3) {
                            0 => (
                                sql.heartbeat(&s, extend).await.map(|t| t.to_string()),
                                red.heartbeat(&r, extend).await.map(|t| t.to_string()),
                            ),
                            1 => (
                                sql.ack(&s).await.map(|a| format!("{a:?}")),
                                red.ack(&r).await.map(|a| format!("{a:?}")),
                            ),
                            _ => (
                                sql.fail(&s, "bad").await.map(|f| format!("{f:?}")),
                                red.fail(&r, "bad").await.map(|f| format!("{f:?}")),
                            ),
                        };
                        assert_eq!(diff.result(a), diff.result(b), "{at}");
                    }
                    6 | 7 if !diff.ids.is_empty() => {
                        let (r, s) = diff.ids[rnd(diff.ids.len())];
                        let pick = rnd(3);
                        if pick == 0 {
                            let (a, b) = (sql.get(s).await, red.get(r).await.map(|j| diff.job(j)));
                            assert_eq!(diff.result(a), diff.result(b), "{at}");
                        } else if pick == 1 && rnd(3) == 0 {
                            let (a, b) = (sql.cancel(s).await, red.cancel(r).await);
                            assert_eq!(diff.result(a), diff.result(b), "{at}");
                        } else {
                            let (a, b) = (sql.requeue(s).await, red.requeue(r).await);
                            assert_eq!(diff.result(a), diff.result(b), "{at}");
                        }
                    }
                    8 => assert_eq!(
                        sql.counts().await.unwrap(),
                        red.counts().await.unwrap(),
                        "{at}"
                    ),
                    9 | 12 => {
                        // From the start or from a cursor of an earlier page.
                        let (cs, cr) = cursors[rnd(cursors.len())].clone();
                        let limit = rnd(4);
                        let a = sql.dead_letters(cs.as_ref(), limit).await;
                        let b = red.dead_letters(cr.as_ref(), limit).await;
                        match (a, b) {
                            (Ok(a), Ok(b)) => {
                                let items: Vec<Job> =
                                    b.items.into_iter().map(|j| diff.job(j)).collect();
                                assert_eq!(a.items, items, "{at}");
                                assert_eq!(a.next.is_some(), b.next.is_some(), "{at}");
                                if a.next.is_some() {
                                    cursors.push((a.next, b.next));
                                }
                            }
                            (a, b) => assert_eq!(
                                diff.result(a.map(|_| ())),
                                diff.result(b.map(|_| ())),
                                "{at}"
                            ),
                        }
                    }
                    10 => clock.advance(ms(rnd(3000))),
                    11 => clock.rewind(ms(rnd(2000))),
                    _ => {}
                }
            }
            drop_keys(&url, &format!("vs:q:{{{name}}}:*")).await;
        }
    }

    /// Deletes the keys matching `pattern`, so the test leaves no queues.
    #[cfg(all(feature = "sqlite", feature = "conformance"))]
    async fn drop_keys(url: &str, pattern: &str) {
        let (_, mut conn) = connect(url).await.unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let () = ::redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }

    /// Maps the Redis side's answers onto the SQL side's names and ids.
    struct Diff {
        names: [String; 2],
        /// (Redis id, SQL id) of each job.
        ids: Vec<(JobId, JobId)>,
    }

    impl Diff {
        fn job(&self, mut job: Job) -> Job {
            if let Some((_, s)) = self.ids.iter().find(|(r, _)| *r == job.id) {
                job.id = *s;
            }
            job
        }

        fn result<T>(&self, r: Result<T>) -> std::result::Result<T, (crate::ErrorKind, String)> {
            r.map_err(|e| {
                let mut msg = e.to_string();
                for name in &self.names {
                    msg = msg.replace(name.as_str(), "QUEUE");
                }
                for (r, s) in &self.ids {
                    msg = msg.replace(&r.to_string(), &s.to_string());
                }
                (e.kind(), msg)
            })
        }
    }
}
