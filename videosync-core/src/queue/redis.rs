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
//! | `vs:q:{q}:dedupe` | hash | dedupe key to the id of the live job holding it |
//! | `vs:q:{q}:seq` | string | the enqueue counter |
//!
//! A job's rank is `<1000000 - priority>:<run_at>:<seq>:<id>` with fixed-width
//! numbers, so byte order is the SQL backend's `ORDER BY priority DESC,
//! run_at ASC, seq ASC`: `ready` (equal scores order by member) pops the next
//! job with `ZRANGE 0 0`.
//!
//! # Semantics
//! The scripts answer exactly as the SQL backend (`SqlQueue`) does, including
//! under a wall clock that steps back, because time comes from the queue's
//! [`Clock`] as an argument (never Redis `TIME`); a test below checks this by
//! running random operations on both:
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
use uuid::Uuid;

use super::{
    clip_reason, lease_conflict, validate_lease, validate_queue_name, Enqueued, Failed, Job,
    JobQueue, JobState, Lease, NewJob, QueueCounts, ReserveOptions, RetryPolicy, LEASE_EXHAUSTED,
};
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
    keys: Arc<[String; 8]>,
    /// `vs:q:{<queue>}:job:`, which a job id completes.
    job_prefix: Arc<str>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
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
}

impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and opens the queue named `queue` there.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL or queue name,
    /// [`Error::Unavailable`] when the server cannot be reached.
    pub async fn connect(
        url: &str,
        queue: &str,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Result<Self> {
        validate_queue_name(queue)?;
        let (client, conn) = connect(url).await?;
        let base = format!("vs:q:{{{queue}}}:");
        let keys = [
            "waiting", "ready", "horizon", "running", "final", "dead", "dedupe", "seq",
        ]
        .map(|k| format!("{base}{k}"));
        Ok(RedisQueue {
            conn,
            name: format!("{}/{queue}", server_name(&client)).into(),
            keys: Arc::new(keys),
            job_prefix: format!("{base}job:").into(),
            clock,
            retry,
        })
    }

    /// An invocation of `script` with the queue's keys and the arguments
    /// every script reads: the job key prefix, `now` and the reason for
    /// dead-lettering exhausted leases.
    fn invocation(&self, script: &'static Script, now: Timestamp) -> ScriptInvocation<'static> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.iter() {
            inv.key(key);
        }
        inv.arg(&*self.job_prefix)
            .arg(now.as_millis())
            .arg(LEASE_EXHAUSTED);
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
        };
        let lease_until = match fields.get("lease_until") {
            Some(_) => Some(Timestamp::from_millis(int("lease_until")?)),
            None => None,
        };
        Ok(Row {
            job,
            lease_token: optional("lease_token"),
            lease_until,
        })
    }

    /// Explains why a lease-guarded script changed nothing, from its reply:
    /// `missing`, or `conflict` followed by the job's fields.
    fn lease_error(&self, op: &str, lease: &Lease, reply: &[String], now: Timestamp) -> Error {
        let id = lease.job.id;
        match reply.split_first() {
            Some((status, _)) if status == "missing" => Error::not_found(format!(
                "{op} of job {id} in {self}: no such job (acked, or never enqueued)"
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
struct Scripts {
    enqueue: Script,
    reserve: Script,
    heartbeat: Script,
    ack: Script,
    fail: Script,
    get: Script,
    dead_letters: Script,
    requeue: Script,
    counts: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
    Scripts {
        enqueue: script(ENQUEUE),
        reserve: script(RESERVE),
        heartbeat: script(HEARTBEAT),
        ack: script(ACK),
        fail: script(FAIL),
        get: script(GET),
        dead_letters: script(DEAD_LETTERS),
        requeue: script(REQUEUE),
        counts: script(COUNTS),
    }
});

/// What every script starts with. `KEYS` are the queue's fixed keys;
/// `ARGV[1..3]` are the job key prefix, now (ms) and the reason for
/// dead-lettering an exhausted lease; each script's own arguments follow.
const PRELUDE: &str = r#"
local K_WAITING, K_READY, K_HORIZON, K_RUNNING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_FINAL, K_DEAD, K_DEDUPE, K_SEQ = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local PREFIX, NOW, EXHAUSTED = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(NOW)

local function job_key(id)
  return PREFIX .. id
end

-- A rank is "<7 digits>:<20 digits>:<20 digits>:<id>".
local function rank_id(rank)
  return string.sub(rank, 51)
end

local function make_rank(priority, run_at_sortable, seq, id)
  return string.format('%07d', 1000000 - tonumber(priority)) .. ':' .. run_at_sortable
    .. ':' .. seq .. ':' .. id
end

-- Byte order; Lua's `<` on strings follows the server's locale.
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- Moves the horizon to now: `ready` holds exactly the waiting jobs due by now.
local function rebalance()
  local h = redis.call('GET', K_HORIZON)
  if not h then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_WAITING, '-inf', NOW)) do
      redis.call('ZADD', K_READY, 0, m)
    end
  elseif now > tonumber(h) then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_WAITING, '(' .. h, NOW)) do
      redis.call('ZADD', K_READY, 0, m)
    end
  elseif now < tonumber(h) then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_WAITING, '(' .. NOW, h)) do
      redis.call('ZREM', K_READY, m)
    end
  end
  if h ~= NOW then
    redis.call('SET', K_HORIZON, NOW)
  end
end

-- Indexes a ready or scheduled job by its due time, and as ready when it is
-- due by the horizon (now).
local function add_waiting(rank, run_at)
  redis.call('ZADD', K_WAITING, run_at, rank)
  if tonumber(run_at) <= now then
    redis.call('ZADD', K_READY, 0, rank)
  end
end

local function release(id, key)
  if key and redis.call('HGET', K_DEDUPE, key) == id then
    redis.call('HDEL', K_DEDUPE, key)
  end
end

-- Makes a job that is in no index a dead letter.
local function bury(id, reason)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'seq', 'dedupe_key')
  redis.call('HSET', jk, 'state', 'dead', 'last_error', reason, 'updated_at', NOW)
  redis.call('HDEL', jk, 'lease_token', 'lease_until')
  redis.call('ZADD', K_DEAD, NOW, f[1] .. ':' .. id)
  release(id, f[2])
end

-- Dead-letters the jobs whose last lease ended without an ack.
local function bury_exhausted()
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_FINAL, '-inf', NOW)) do
    redis.call('ZREM', K_FINAL, m)
    bury(rank_id(m), EXHAUSTED)
  end
end

-- Nil when ARGV[4] is a job held under token ARGV[5]; else the reply that
-- explains why not.
local function check_lease(jk)
  local f = redis.call('HMGET', jk, 'state', 'lease_token', 'lease_until')
  if not f[1] then
    return {'missing'}
  end
  if f[1] == 'running' and f[2] == ARGV[5] and tonumber(f[3]) > now then
    return nil
  end
  local reply = redis.call('HGETALL', jk)
  table.insert(reply, 1, 'conflict')
  return reply
end

local function unindex_running(rank)
  redis.call('ZREM', K_RUNNING, rank)
  redis.call('ZREM', K_FINAL, rank)
end
"#;

/// `ARGV[4..]`: id, kind, payload, priority, dedupe key (`''` for none),
/// max attempts, run_at, run_at sortable.
const ENQUEUE: &str = r#"
local id, key = ARGV[4], ARGV[8]
if key ~= '' then
  local holder = redis.call('HGET', K_DEDUPE, key)
  if holder then
    local state = redis.call('HGET', job_key(holder), 'state')
    if state and state ~= 'dead' then
      return {'duplicate', holder}
    end
  end
end
rebalance()
local seq = string.format('%020d', redis.call('INCR', K_SEQ))
local rank = make_rank(ARGV[7], ARGV[11], seq, id)
local jk = job_key(id)
redis.call('HSET', jk, 'id', id, 'kind', ARGV[5], 'payload', ARGV[6], 'priority', ARGV[7],
  'state', 'ready', 'attempts', '0', 'max_attempts', ARGV[9], 'run_at', ARGV[10],
  'created_at', NOW, 'updated_at', NOW, 'seq', seq, 'rank', rank)
if key ~= '' then
  redis.call('HSET', jk, 'dedupe_key', key)
  redis.call('HSET', K_DEDUPE, key, id)
end
add_waiting(rank, ARGV[10])
return {'new'}
"#;

/// `ARGV[4..]`: token, lease end. The best of the due ready jobs and the
/// jobs whose lease ended with attempts left wins.
const RESERVE: &str = r#"
bury_exhausted()
rebalance()
local best, from = redis.call('ZRANGE', K_READY, 0, 0)[1], 'ready'
for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', NOW)) do
  if not best or before(m, best) then
    best, from = m, 'running'
  end
end
if not best then
  return {}
end
if from == 'ready' then
  redis.call('ZREM', K_READY, best)
  redis.call('ZREM', K_WAITING, best)
else
  redis.call('ZREM', K_RUNNING, best)
end
local jk = job_key(rank_id(best))
local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
redis.call('HSET', jk, 'state', 'running', 'lease_token', ARGV[4], 'lease_until', ARGV[5],
  'updated_at', NOW)
if attempts >= tonumber(redis.call('HGET', jk, 'max_attempts')) then
  redis.call('ZADD', K_FINAL, ARGV[5], best)
else
  redis.call('ZADD', K_RUNNING, ARGV[5], best)
end
return redis.call('HGETALL', jk)
"#;

/// `ARGV[4..]`: id, token, new lease end.
const HEARTBEAT: &str = r#"
local jk = job_key(ARGV[4])
local bad = check_lease(jk)
if bad then
  return bad
end
redis.call('HSET', jk, 'lease_until', ARGV[6], 'updated_at', NOW)
local f = redis.call('HMGET', jk, 'rank', 'attempts', 'max_attempts')
if tonumber(f[2]) >= tonumber(f[3]) then
  redis.call('ZADD', K_FINAL, ARGV[6], f[1])
else
  redis.call('ZADD', K_RUNNING, ARGV[6], f[1])
end
return {'ok'}
"#;

/// `ARGV[4..]`: id, token.
const ACK: &str = r#"
local jk = job_key(ARGV[4])
local bad = check_lease(jk)
if bad then
  return bad
end
local f = redis.call('HMGET', jk, 'rank', 'dedupe_key')
unindex_running(f[1])
release(ARGV[4], f[2])
redis.call('DEL', jk)
return {'ok'}
"#;

/// `ARGV[4..]`: id, token, reason, retry time, retry time sortable.
const FAIL: &str = r#"
local id = ARGV[4]
local jk = job_key(id)
local bad = check_lease(jk)
if bad then
  return bad
end
local f = redis.call('HMGET', jk, 'rank', 'attempts', 'max_attempts', 'priority', 'seq')
unindex_running(f[1])
if tonumber(f[2]) >= tonumber(f[3]) then
  bury(id, ARGV[6])
  return {'dead'}
end
rebalance()
local rank = make_rank(f[4], ARGV[8], f[5], id)
redis.call('HSET', jk, 'state', 'ready', 'run_at', ARGV[7], 'rank', rank,
  'last_error', ARGV[6], 'updated_at', NOW)
redis.call('HDEL', jk, 'lease_token', 'lease_until')
add_waiting(rank, ARGV[7])
return {'retry'}
"#;

/// `ARGV[4]`: id.
const GET: &str = r#"
bury_exhausted()
return redis.call('HGETALL', job_key(ARGV[4]))
"#;

/// `ARGV[4]`: the last index to list (`-1` for none).
const DEAD_LETTERS: &str = r#"
bury_exhausted()
local out = {}
if tonumber(ARGV[4]) >= 0 then
  for _, m in ipairs(redis.call('ZRANGE', K_DEAD, 0, ARGV[4])) do
    -- A dead member is "<20 digits>:<id>".
    table.insert(out, redis.call('HGETALL', job_key(string.sub(m, 22))))
  end
end
return out
"#;

/// `ARGV[4..]`: id, now sortable.
const REQUEUE: &str = r#"
local id = ARGV[4]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'state', 'dedupe_key', 'priority', 'seq')
if not f[1] then
  return {'missing'}
end
if f[1] ~= 'dead' then
  local reply = redis.call('HGETALL', jk)
  table.insert(reply, 1, 'alive')
  return reply
end
if f[2] then
  local holder = redis.call('HGET', K_DEDUPE, f[2])
  if holder and holder ~= id then
    return {'held'}
  end
  redis.call('HSET', K_DEDUPE, f[2], id)
end
rebalance()
local rank = make_rank(f[3], ARGV[5], f[4], id)
redis.call('HSET', jk, 'state', 'ready', 'attempts', '0', 'run_at', NOW, 'rank', rank,
  'updated_at', NOW)
redis.call('ZREM', K_DEAD, f[4] .. ':' .. id)
redis.call('ZADD', K_WAITING, NOW, rank)
redis.call('ZADD', K_READY, 0, rank)
return {'ok'}
"#;

/// No arguments of its own.
const COUNTS: &str = r#"
bury_exhausted()
return {
  redis.call('ZCOUNT', K_WAITING, '-inf', NOW),
  redis.call('ZCOUNT', K_WAITING, '(' .. NOW, '+inf'),
  redis.call('ZCARD', K_RUNNING) + redis.call('ZCARD', K_FINAL),
  redis.call('ZCARD', K_DEAD),
}
"#;

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
            .arg(job.max_attempts.unwrap_or(self.retry.max_attempts))
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
        validate_lease(opts.lease)?;
        let now = self.clock.now();
        let token = Uuid::new_v4().simple().to_string();
        let expires_at = now.saturating_add(opts.lease);
        let mut inv = self.invocation(&SCRIPTS.reserve, now);
        inv.arg(&token).arg(expires_at.as_millis());
        let reply: Vec<String> = self
            .invoke(&inv, || format!("reserving a job in {self}"))
            .await?;
        if reply.is_empty() {
            return Ok(None);
        }
        let row = self.row(&reply, now)?;
        Ok(Some(Lease {
            job: row.job,
            token,
            expires_at,
        }))
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Timestamp> {
        validate_lease(extend)?;
        let now = self.clock.now();
        let until = now.saturating_add(extend);
        let mut inv = self.invocation(&SCRIPTS.heartbeat, now);
        inv.arg(lease.job.id.to_string())
            .arg(&lease.token)
            .arg(until.as_millis());
        let reply: Vec<String> = self
            .invoke(&inv, || {
                format!("heartbeat of job {} in {self}", lease.job.id)
            })
            .await?;
        match reply.as_slice() {
            [status] if status == "ok" => Ok(until),
            _ => Err(self.lease_error("heartbeat", lease, &reply, now)),
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<()> {
        let now = self.clock.now();
        let mut inv = self.invocation(&SCRIPTS.ack, now);
        inv.arg(lease.job.id.to_string()).arg(&lease.token);
        let reply: Vec<String> = self
            .invoke(&inv, || format!("ack of job {} in {self}", lease.job.id))
            .await?;
        match reply.as_slice() {
            [status] if status == "ok" => Ok(()),
            _ => Err(self.lease_error("ack", lease, &reply, now)),
        }
    }

    async fn fail(&self, lease: &Lease, reason: &str) -> Result<Failed> {
        let now = self.clock.now();
        // The token pins the hand-out, so the lease's attempt count is the
        // stored one.
        let retry_at = now.saturating_add(self.retry.backoff(lease.job.attempts));
        let mut inv = self.invocation(&SCRIPTS.fail, now);
        inv.arg(lease.job.id.to_string())
            .arg(&lease.token)
            .arg(clip_reason(reason))
            .arg(retry_at.as_millis())
            .arg(sortable(retry_at));
        let reply: Vec<String> = self
            .invoke(&inv, || format!("fail of job {} in {self}", lease.job.id))
            .await?;
        match reply.as_slice() {
            [status] if status == "dead" => Ok(Failed::DeadLettered),
            [status] if status == "retry" => Ok(Failed::Retrying { at: retry_at }),
            _ => Err(self.lease_error("fail", lease, &reply, now)),
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

    async fn dead_letters(&self, limit: usize) -> Result<Vec<Job>> {
        let now = self.clock.now();
        let last = i64::try_from(limit).unwrap_or(i64::MAX) - 1;
        let mut inv = self.invocation(&SCRIPTS.dead_letters, now);
        inv.arg(last);
        let reply: Vec<Vec<String>> = self
            .invoke(&inv, || format!("listing dead letters of {self}"))
            .await?;
        reply
            .iter()
            .map(|fields| self.row(fields, now).map(|r| r.job))
            .collect()
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
            &[ready, scheduled, running, dead] => Ok(QueueCounts {
                ready,
                scheduled,
                running,
                dead,
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
            async move { RedisQueue::connect(url, "q", clock, RetryPolicy::default()).await }
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
        use crate::queue::{queue_from_url, DynJobQueue};
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
            let open = |url: String| {
                let (clock, retry, name) = (clock.clone(), retry.clone(), name.clone());
                async move { queue_from_url(&url, &name, clock, retry).await.unwrap() }
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
            for step in 0..300 {
                let at = format!("seed {seed}, step {step}");
                match rnd(12) {
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
                        let opts = ReserveOptions {
                            lease: ms(rnd(4000) + 1),
                        };
                        match (
                            sql.reserve(opts.clone()).await.unwrap(),
                            red.reserve(opts).await.unwrap(),
                        ) {
                            (None, None) => {}
                            (Some(s), Some(r)) => {
                                assert_eq!(s.job, diff.job(r.job.clone()), "{at}");
                                assert_eq!(s.expires_at, r.expires_at, "{at}");
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
                                sql.ack(&s).await.map(|()| String::new()),
                                red.ack(&r).await.map(|()| String::new()),
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
                        if rnd(2) == 0 {
                            let (a, b) = (sql.get(s).await, red.get(r).await.map(|j| diff.job(j)));
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
                    9 => {
                        let limit = rnd(4);
                        let b: Vec<Job> = red
                            .dead_letters(limit)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|j| diff.job(j))
                            .collect();
                        assert_eq!(sql.dead_letters(limit).await.unwrap(), b, "{at}");
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
