//! The server's configuration: defaults, then a TOML file, then `VIDEOSYNC_*`
//! environment variables (which win), then command-line flags.
//!
//! Every setting has one name in the file (`[database] url`) and one in the
//! environment (`VIDEOSYNC_DATABASE_URL`); [`ENV_VARS`] is the whole list.
//! Secrets are [`Secret`]s: they print as `[redacted]` everywhere (debug
//! output, logs, `--print-config`), and URLs with passwords are shown with
//! the password cut out.
//!
//! ```
//! use videosync_server::config::Config;
//! let config = Config::load(None, [("VIDEOSYNC_LISTEN".to_owned(), "0.0.0.0:9000".to_owned())])?;
//! assert_eq!(config.listen.port(), 9000);
//! assert_eq!(config.database_url(), "sqlite://./data/videosync.db");
//! # Ok::<(), videosync_server::config::ConfigError>(())
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

/// What went wrong reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or a variable does not parse, or a value is out of range.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, ConfigError>;

/// A secret: compared and used as a string, never shown.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() {
            "[unset]"
        } else {
            "[redacted]"
        })
    }
}

/// A URL that may hold a password: shown with the password cut out.
fn redacted_url<S: Serializer>(url: &Option<String>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_str(&videosync_core::redact_url(u)),
        None => s.serialize_none(),
    }
}

/// Whether new people may sign up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may register.
    #[default]
    Open,
    /// Only an instance administrator makes accounts (`videosync admin
    /// create-user`); the first account on an empty instance may still
    /// register, so a new instance can be set up over HTTP.
    Closed,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL people reach the server at (links in invites, redirects).
    pub public_url: Option<String>,
    /// A CDN in front of the media (delivery uses it when set).
    pub cdn_url: Option<String>,
    /// Directory of the embedded backends and generated secrets.
    pub data_dir: PathBuf,
    /// Log line format.
    pub log_format: LogFormat,
    /// Prefix of queue and log names and of keys, so several deployments
    /// can share one Redis or database (1 to 32 of `A-Z a-z 0-9 _ -`).
    pub namespace: Option<String>,
    /// Origins allowed to call the API from a browser (`*` for any; empty:
    /// same origin only).
    pub cors_origins: Vec<String>,
    /// The database.
    pub database: DatabaseConfig,
    /// The object store.
    pub store: StoreConfig,
    /// The job queue.
    pub queue: BackendConfig,
    /// The event bus.
    pub bus: BackendConfig,
    /// The event log.
    pub log: BackendConfig,
    /// The key-value store (rate limits, presence).
    pub kv: BackendConfig,
    /// Accounts and tokens.
    pub auth: AuthConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Embedded transcode workers.
    pub workers: WorkersConfig,
    /// Uploads: size and container limits, quotas, expiry, originals.
    pub uploads: UploadsConfig,
    /// What a finished upload is transcoded into.
    pub processing: ProcessingConfig,
    /// Media delivery: signed URLs for private channels, caching.
    pub delivery: DeliveryConfig,
    /// Watch-together rooms over WebSocket.
    pub realtime: RealtimeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            cdn_url: None,
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            namespace: None,
            cors_origins: Vec::new(),
            database: DatabaseConfig::default(),
            store: StoreConfig::default(),
            queue: BackendConfig::default(),
            bus: BackendConfig::default(),
            log: BackendConfig::default(),
            kv: BackendConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            workers: WorkersConfig::default(),
            uploads: UploadsConfig::default(),
            processing: ProcessingConfig::default(),
            delivery: DeliveryConfig::default(),
            realtime: RealtimeConfig::default(),
        }
    }
}

/// The database (`sqlite://` or `postgres://`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Its URL (default: SQLite in the data directory).
    #[serde(serialize_with = "redacted_url")]
    pub url: Option<String>,
}

/// A backend that is embedded by default (`embedded`, or a URL).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `embedded` (the default: the database, or in-process for the bus)
    /// or a URL (`redis://`, `postgres://`, `sqlite://`, `memory://`).
    #[serde(serialize_with = "redacted_url")]
    pub url: Option<String>,
}

/// Debug output of a URL setting, with any password cut out.
fn debug_url(name: &str, url: &Option<String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct(name)
        .field("url", &url.as_deref().map(videosync_core::redact_url))
        .finish()
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_url("DatabaseConfig", &self.url, f)
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_url("BackendConfig", &self.url, f)
    }
}

/// The object store (`file://` or `s3://`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `file:///path`, `memory://` or `s3://bucket[/prefix]` (default:
    /// files in the data directory).
    pub url: Option<String>,
    /// S3 endpoint the server talks to (default: AWS).
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// S3 access key id (default: the AWS credential chain).
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    pub secret_access_key: Secret,
    /// Address buckets in the path (true, every S3-compatible server) or
    /// the host name.
    pub path_style: bool,
    /// Endpoint browsers reach, for presigned URLs.
    pub public_endpoint: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: Secret::default(),
            path_style: true,
            public_endpoint: None,
        }
    }
}

/// Accounts and tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Key that signs access tokens (HS256). Unset on an embedded database:
    /// generated once and kept in the data directory. Every instance of a
    /// fleet must share it.
    pub jwt_secret: Secret,
    /// Lifetime of an access token, in seconds.
    pub access_ttl_seconds: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_ttl_seconds: u64,
    /// Whether people may sign up.
    pub registration: Registration,
    /// Argon2id memory, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Password hashes computed at once (each takes tens of ms of one core);
    /// 0: the number of cores.
    pub max_concurrent_hashes: usize,
    /// Lifetime of a guest token, in seconds.
    pub guest_ttl_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: Secret::default(),
            access_ttl_seconds: 15 * 60,
            refresh_ttl_seconds: 30 * 24 * 3600,
            registration: Registration::Open,
            // OWASP's first Argon2id choice: 19 MiB, 2 passes, 1 lane.
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            max_concurrent_hashes: 0,
            guest_ttl_seconds: 24 * 3600,
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Login attempts per client address per minute.
    pub login_per_ip_per_minute: u32,
    /// Login attempts per account per minute (from all addresses).
    pub login_per_account_per_minute: u32,
    /// Registrations per client address per hour.
    pub register_per_ip_per_hour: u32,
    /// Trust `X-Forwarded-For` from the proxy in front (only behind one).
    pub trust_forwarded_for: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 64 * 1024,
            login_per_ip_per_minute: 30,
            login_per_account_per_minute: 10,
            register_per_ip_per_hour: 20,
            trust_forwarded_for: false,
        }
    }
}

/// Embedded transcode workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Workers inside `serve` (0: run `videosync worker` processes instead).
    pub count: usize,
    /// Lease on a job, in seconds; heartbeats renew it every third.
    pub lease_seconds: u64,
    /// Where sources are downloaded while they are transcoded (default: the
    /// system's temporary directory).
    pub scratch_dir: Option<PathBuf>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            count: 1,
            lease_seconds: 60,
            scratch_dir: None,
        }
    }
}

/// Uploads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Largest upload, in bytes.
    pub max_size_bytes: u64,
    /// Bytes of originals and open uploads one user may hold (0: no quota).
    pub quota_bytes_per_user: u64,
    /// Containers accepted, by the name the first bytes reveal (`mp4`,
    /// `mov`, `matroska`, `webm`, `avi`, `mpegts`, `flv`, `ogg`, `mp3`,
    /// `wav`, `flac`, `aac`).
    pub allowed_containers: Vec<String>,
    /// How long an upload may sit idle before it expires, in seconds.
    pub expiry_seconds: u64,
    /// Keep the original once its ladder is ready.
    pub keep_originals: bool,
    /// How long an upload stays taken by a connection that stopped sending
    /// before another may continue it (a client whose connection broke
    /// resumes after at most this), in seconds.
    pub lease_seconds: u64,
    /// Direct uploads (presigned, S3) up to this size are one `PUT`; larger
    /// ones are multipart.
    pub direct_single_put_max_bytes: u64,
    /// The interim store where originals wait for their ladder: `file:///path`,
    /// `memory://` or `s3://bucket[/prefix]` (an S3 one with `[store]`'s
    /// endpoint, region and credentials). Default: the object store, under
    /// `uploads/`.
    pub store_url: Option<String>,
}

/// Every container the first bytes can reveal.
pub const KNOWN_CONTAINERS: &[&str] = &[
    "mp4", "mov", "matroska", "webm", "avi", "mpegts", "flv", "ogg", "mp3", "wav", "flac", "aac",
];

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            max_size_bytes: 20 * 1024 * 1024 * 1024,
            quota_bytes_per_user: 0,
            allowed_containers: KNOWN_CONTAINERS.iter().map(|&c| c.to_owned()).collect(),
            expiry_seconds: 24 * 3600,
            keep_originals: false,
            lease_seconds: 30,
            direct_single_put_max_bytes: 64 * 1024 * 1024,
            store_url: None,
        }
    }
}

/// The ladder a finished upload is transcoded into.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// Rung heights, largest first (no upscaling: rungs above the source
    /// are dropped).
    pub rungs: Vec<u32>,
    /// Segment length, seconds.
    pub segment_seconds: u32,
    /// x264 preset.
    pub preset: String,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        let ladder = videosync_hls::ladder::LadderOptions::default();
        ProcessingConfig {
            rungs: ladder.rungs,
            segment_seconds: ladder.segment_seconds,
            preset: videosync_transcode::TranscodeOptions::default().preset,
        }
    }
}

/// Media delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Key of the signed media URLs of private channels (nginx
    /// `secure_link` compatible; see docs/operations.md). Unset: derived
    /// from the token signing secret. Set it when an edge checks the
    /// signatures, and on every instance alike.
    pub signing_secret: Secret,
    /// How long a signed media URL works beyond the video's own length,
    /// in seconds.
    pub signed_url_ttl_seconds: u64,
    /// `max-age` of playlists, in seconds (segments are immutable).
    pub playlist_max_age_seconds: u64,
    /// Bytes of small ladder files (up to 2 MiB each: playlists, init
    /// segments, images, segments of the lower rungs) each instance keeps
    /// in memory once served; 0 reads every request from the store.
    pub memory_cache_bytes: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            signing_secret: Secret::default(),
            signed_url_ttl_seconds: 3600,
            playlist_max_age_seconds: 10,
            memory_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Watch-together rooms over WebSocket (see docs/realtime.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// Frames queued for one connection; past that a slow client loses
    /// typing, presence and reactions, then its connection (close code
    /// 4008), so it never slows its room.
    pub send_queue_frames: usize,
    /// Seconds without a frame from a client (clients ping every second)
    /// before its connection is closed.
    pub idle_timeout_seconds: u64,
    /// Frames a client may send per second on average, twice that in a
    /// burst; past it the frame is refused with `rate_limited`, and a
    /// client that keeps flooding is disconnected.
    pub frames_per_second: u32,
    /// Chat messages (and reactions) a member may send in a burst.
    pub chat_burst: u32,
    /// Chat messages (and reactions) a member may send per minute after
    /// the burst.
    pub chat_per_minute: u32,
    /// Seconds a room nobody is in stays in memory, so members that
    /// reconnect resume it.
    pub linger_seconds: u64,
    /// Seconds a connection ticket (`POST /channels/{id}/live/tickets`)
    /// may wait before it is used.
    pub ticket_ttl_seconds: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            send_queue_frames: 256,
            idle_timeout_seconds: 30,
            frames_per_second: 50,
            chat_burst: 5,
            chat_per_minute: 30,
            linger_seconds: 60,
            ticket_ttl_seconds: 60,
        }
    }
}

/// How an environment variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// Taken as it is.
    Text,
    /// A whole number.
    Integer,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Bool,
    /// Comma-separated text.
    List,
    /// Comma-separated whole numbers.
    Integers,
}

/// Every environment variable the configuration reads: its name, the
/// setting it sets (a dotted path in the file) and its kind.
pub const ENV_VARS: &[(&str, &str, EnvKind)] = &[
    ("VIDEOSYNC_LISTEN", "listen", EnvKind::Text),
    ("VIDEOSYNC_PUBLIC_URL", "public_url", EnvKind::Text),
    ("VIDEOSYNC_CDN_URL", "cdn_url", EnvKind::Text),
    ("VIDEOSYNC_DATA_DIR", "data_dir", EnvKind::Text),
    ("VIDEOSYNC_LOG_FORMAT", "log_format", EnvKind::Text),
    ("VIDEOSYNC_NAMESPACE", "namespace", EnvKind::Text),
    ("VIDEOSYNC_CORS_ORIGINS", "cors_origins", EnvKind::List),
    ("VIDEOSYNC_DATABASE_URL", "database.url", EnvKind::Text),
    ("VIDEOSYNC_STORE_URL", "store.url", EnvKind::Text),
    ("VIDEOSYNC_STORE_ENDPOINT", "store.endpoint", EnvKind::Text),
    ("VIDEOSYNC_STORE_REGION", "store.region", EnvKind::Text),
    (
        "VIDEOSYNC_STORE_ACCESS_KEY_ID",
        "store.access_key_id",
        EnvKind::Text,
    ),
    (
        "VIDEOSYNC_STORE_SECRET_ACCESS_KEY",
        "store.secret_access_key",
        EnvKind::Text,
    ),
    (
        "VIDEOSYNC_STORE_PATH_STYLE",
        "store.path_style",
        EnvKind::Bool,
    ),
    (
        "VIDEOSYNC_STORE_PUBLIC_ENDPOINT",
        "store.public_endpoint",
        EnvKind::Text,
    ),
    ("VIDEOSYNC_QUEUE_URL", "queue.url", EnvKind::Text),
    ("VIDEOSYNC_BUS_URL", "bus.url", EnvKind::Text),
    ("VIDEOSYNC_LOG_URL", "log.url", EnvKind::Text),
    ("VIDEOSYNC_KV_URL", "kv.url", EnvKind::Text),
    ("VIDEOSYNC_JWT_SECRET", "auth.jwt_secret", EnvKind::Text),
    (
        "VIDEOSYNC_ACCESS_TTL_SECONDS",
        "auth.access_ttl_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_REFRESH_TTL_SECONDS",
        "auth.refresh_ttl_seconds",
        EnvKind::Integer,
    ),
    ("VIDEOSYNC_REGISTRATION", "auth.registration", EnvKind::Text),
    (
        "VIDEOSYNC_ARGON2_MEMORY_KIB",
        "auth.argon2_memory_kib",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_ARGON2_ITERATIONS",
        "auth.argon2_iterations",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_MAX_BODY_BYTES",
        "limits.max_body_bytes",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_LOGIN_PER_IP_PER_MINUTE",
        "limits.login_per_ip_per_minute",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_LOGIN_PER_ACCOUNT_PER_MINUTE",
        "limits.login_per_account_per_minute",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_REGISTER_PER_IP_PER_HOUR",
        "limits.register_per_ip_per_hour",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_TRUST_FORWARDED_FOR",
        "limits.trust_forwarded_for",
        EnvKind::Bool,
    ),
    ("VIDEOSYNC_WORKERS", "workers.count", EnvKind::Integer),
    (
        "VIDEOSYNC_LEASE_SECONDS",
        "workers.lease_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_SCRATCH_DIR",
        "workers.scratch_dir",
        EnvKind::Text,
    ),
    (
        "VIDEOSYNC_UPLOAD_MAX_SIZE_BYTES",
        "uploads.max_size_bytes",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_UPLOAD_QUOTA_BYTES_PER_USER",
        "uploads.quota_bytes_per_user",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_UPLOAD_CONTAINERS",
        "uploads.allowed_containers",
        EnvKind::List,
    ),
    (
        "VIDEOSYNC_UPLOAD_EXPIRY_SECONDS",
        "uploads.expiry_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_UPLOAD_LEASE_SECONDS",
        "uploads.lease_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_KEEP_ORIGINALS",
        "uploads.keep_originals",
        EnvKind::Bool,
    ),
    (
        "VIDEOSYNC_UPLOAD_STORE_URL",
        "uploads.store_url",
        EnvKind::Text,
    ),
    ("VIDEOSYNC_RUNGS", "processing.rungs", EnvKind::Integers),
    (
        "VIDEOSYNC_SEGMENT_SECONDS",
        "processing.segment_seconds",
        EnvKind::Integer,
    ),
    ("VIDEOSYNC_PRESET", "processing.preset", EnvKind::Text),
    (
        "VIDEOSYNC_MEDIA_SIGNING_SECRET",
        "delivery.signing_secret",
        EnvKind::Text,
    ),
    (
        "VIDEOSYNC_SIGNED_URL_TTL_SECONDS",
        "delivery.signed_url_ttl_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_PLAYLIST_MAX_AGE_SECONDS",
        "delivery.playlist_max_age_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_MEDIA_CACHE_BYTES",
        "delivery.memory_cache_bytes",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_WS_SEND_QUEUE_FRAMES",
        "realtime.send_queue_frames",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_WS_IDLE_TIMEOUT_SECONDS",
        "realtime.idle_timeout_seconds",
        EnvKind::Integer,
    ),
    (
        "VIDEOSYNC_CHAT_PER_MINUTE",
        "realtime.chat_per_minute",
        EnvKind::Integer,
    ),
];

/// What `embedded` means for a backend URL.
const EMBEDDED: &str = "embedded";

impl Config {
    /// Reads the configuration: defaults, then the TOML file at `file`
    /// (when given), then the `VIDEOSYNC_*` variables among `env`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read;
    /// [`ConfigError::Invalid`] for a setting that does not parse or is out
    /// of range, naming it (an unknown `VIDEOSYNC_*` variable is refused
    /// too, so a typo does not silently change nothing).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "the configuration file {} is not valid TOML: {}",
                        path.display(),
                        // toml's messages span lines; the error is one line.
                        e.message().trim().replace('\n', "; ")
                    ))
                })?
            }
            None => toml::Table::new(),
        };
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("VIDEOSYNC_"))
            .collect();
        env.sort();
        for (name, value) in env {
            let Some(&(_, path, kind)) = ENV_VARS.iter().find(|(n, _, _)| *n == name) else {
                if IGNORED_ENV.contains(&name.as_str()) {
                    continue;
                }
                return Err(ConfigError::Invalid(format!(
                    "unknown environment variable {name}; `videosync serve --help` lists the settings"
                )));
            };
            set_path(&mut table, path, env_value(&name, &value, kind)?);
        }
        let config: Config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(format!("invalid configuration: {}", e.message())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that the types do not.
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.auth.access_ttl_seconds == 0 || self.auth.access_ttl_seconds > 24 * 3600 {
            return bad("auth.access_ttl_seconds must be 1 to 86400".to_owned());
        }
        if self.auth.refresh_ttl_seconds < self.auth.access_ttl_seconds {
            return bad(
                "auth.refresh_ttl_seconds must not be below auth.access_ttl_seconds".into(),
            );
        }
        if !(8..=4 * 1024 * 1024).contains(&self.auth.argon2_memory_kib) {
            return bad("auth.argon2_memory_kib must be 8 to 4194304".to_owned());
        }
        if !(1..=64).contains(&self.auth.argon2_iterations) {
            return bad("auth.argon2_iterations must be 1 to 64".to_owned());
        }
        if let Some(c) = self
            .uploads
            .allowed_containers
            .iter()
            .find(|c| !KNOWN_CONTAINERS.contains(&c.as_str()))
        {
            return bad(format!(
                "uploads.allowed_containers: `{}` is not one of {}",
                c.escape_debug(),
                KNOWN_CONTAINERS.join(", ")
            ));
        }
        if self.uploads.direct_single_put_max_bytes < 5 * 1024 * 1024 {
            return bad("uploads.direct_single_put_max_bytes must be at least 5 MiB".to_owned());
        }
        if self.uploads.max_size_bytes == 0
            || self.uploads.expiry_seconds == 0
            || self.uploads.lease_seconds == 0
        {
            return bad(
                "uploads.max_size_bytes, expiry_seconds and lease_seconds must be above 0".into(),
            );
        }
        let p = &self.processing;
        if p.rungs.is_empty() || p.rungs.iter().any(|&h| !(64..=4320).contains(&h)) {
            return bad("processing.rungs must list 1 or more heights of 64 to 4320".to_owned());
        }
        if !(1..=20).contains(&p.segment_seconds) {
            return bad("processing.segment_seconds must be 1 to 20".to_owned());
        }
        const PRESETS: &[&str] = &[
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        ];
        if !PRESETS.contains(&p.preset.as_str()) {
            return bad(format!(
                "processing.preset must be one of {}",
                PRESETS.join(", ")
            ));
        }
        let d = &self.delivery;
        if !d.signing_secret.is_empty() && d.signing_secret.expose().len() < 32 {
            return bad("delivery.signing_secret must be at least 32 characters".to_owned());
        }
        if d.signed_url_ttl_seconds == 0 {
            return bad("delivery.signed_url_ttl_seconds must be above 0".to_owned());
        }
        let r = &self.realtime;
        if !(8..=65_536).contains(&r.send_queue_frames) {
            return bad("realtime.send_queue_frames must be 8 to 65536".to_owned());
        }
        if !(5..=3600).contains(&r.idle_timeout_seconds) {
            return bad("realtime.idle_timeout_seconds must be 5 to 3600".to_owned());
        }
        if r.frames_per_second < 5 || r.chat_burst == 0 || r.chat_per_minute == 0 {
            return bad(
                "realtime.frames_per_second must be at least 5, chat_burst and chat_per_minute above 0"
                    .to_owned(),
            );
        }
        if r.ticket_ttl_seconds == 0 || r.ticket_ttl_seconds > 3600 {
            return bad("realtime.ticket_ttl_seconds must be 1 to 3600".to_owned());
        }
        if self.limits.max_body_bytes < 1024 {
            return bad("limits.max_body_bytes must be at least 1024".to_owned());
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.expose().len() < 32 {
            return bad("auth.jwt_secret must be at least 32 characters".to_owned());
        }
        if let Some(url) = &self.database.url {
            if !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|p| url.starts_with(p))
            {
                return bad(format!(
                    "the database URL `{}` is not sqlite:// or postgres://",
                    videosync_core::redact_url(url)
                ));
            }
        }
        if let Some(ns) = &self.namespace {
            let ok = (1..=32).contains(&ns.len())
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
            if !ok {
                return bad(format!(
                    "namespace `{}` must be 1 to 32 characters of A-Z, a-z, 0-9, `_` and `-`",
                    ns.escape_debug()
                ));
            }
        }
        for (name, url) in [("public_url", &self.public_url), ("cdn_url", &self.cdn_url)] {
            if let Some(u) = url {
                match url::Url::parse(u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                    _ => return bad(format!("{name} `{u}` is not an http(s) URL")),
                }
            }
        }
        Ok(())
    }

    /// The database URL.
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("videosync.db").display()))
    }

    /// Whether the database is the embedded SQLite one (a single box).
    pub fn embedded_database(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// The object store URL.
    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .unwrap_or_else(|| format!("file://{}", self.data_dir.join("store").display()))
    }

    /// The interim store's URL for originals, when it is not the object
    /// store.
    pub fn uploads_store_url(&self) -> Option<String> {
        self.uploads
            .store_url
            .clone()
            .filter(|u| *u != self.store_url())
    }

    fn backend_url(&self, b: &BackendConfig, embedded: impl FnOnce() -> String) -> String {
        match b.url.as_deref() {
            None | Some(EMBEDDED) => embedded(),
            Some(url) => url.to_owned(),
        }
    }

    /// The job queue URL (embedded: the database).
    pub fn queue_url(&self) -> String {
        self.backend_url(&self.queue, || self.database_url())
    }

    /// The event bus URL (embedded: in-process).
    pub fn bus_url(&self) -> String {
        self.backend_url(&self.bus, || "memory://".to_owned())
    }

    /// The event log URL (embedded: the database).
    pub fn log_url(&self) -> String {
        self.backend_url(&self.log, || self.database_url())
    }

    /// The key-value store URL (embedded: the database).
    pub fn kv_url(&self) -> String {
        self.backend_url(&self.kv, || self.database_url())
    }

    /// The configuration as TOML with secrets redacted, for
    /// `--print-config`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"))
    }
}

/// `VIDEOSYNC_*` variables that are not settings (read elsewhere).
const IGNORED_ENV: &[&str] = &[
    "VIDEOSYNC_CONFIG",
    "VIDEOSYNC_CACHE",
    "VIDEOSYNC_REQUIRE_SERVICES",
    "VIDEOSYNC_TEST_POSTGRES_URL",
    "VIDEOSYNC_TEST_REDIS_URL",
    "VIDEOSYNC_TEST_S3_URL",
    "VIDEOSYNC_CRASH_SEED",
    "VIDEOSYNC_BENCH_ONLY",
    "VIDEOSYNC_BENCH_QUICK",
    "VIDEOSYNC_BENCH_SEARCH_ONLY",
    "VIDEOSYNC_BENCH_KEEP_SCHEMA",
    "VIDEOSYNC_BENCH_PG_SCHEMA",
    "VIDEOSYNC_BENCH_SEARCH_QUERIES",
    "VIDEOSYNC_BENCH_UPLOAD_MIB",
    "VIDEOSYNC_LADDER_RUNS",
];

fn env_value(name: &str, value: &str, kind: EnvKind) -> Result<toml::Value> {
    let bad = |what: &str| {
        ConfigError::Invalid(format!("{name}=`{}` is not {what}", value.escape_debug()))
    };
    Ok(match kind {
        EnvKind::Text => toml::Value::String(value.to_owned()),
        EnvKind::Integer => {
            toml::Value::Integer(value.trim().parse().map_err(|_| bad("a whole number"))?)
        }
        EnvKind::Bool => toml::Value::Boolean(match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(bad("true or false")),
        }),
        EnvKind::Integers => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map(toml::Value::Integer))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad("a list of whole numbers"))?,
        ),
        EnvKind::List => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

/// Sets `a.b.c` in `table`, making the tables on the way.
fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut parts = path.split('.').peekable();
    let mut here = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            here.insert(part.to_owned(), value);
            return;
        }
        let entry = here
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        here = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("videosync.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\n[database]\nurl = \"postgres://u:pw@db/v\"\n[auth]\naccess_ttl_seconds = 60\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("VIDEOSYNC_LISTEN", "0.0.0.0:9000"),
                ("VIDEOSYNC_STORE_PATH_STYLE", "no"),
                (
                    "VIDEOSYNC_CORS_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.database_url(), "postgres://u:pw@db/v");
        assert_eq!(c.queue_url(), "postgres://u:pw@db/v");
        assert_eq!(c.bus_url(), "memory://");
        assert_eq!(c.auth.access_ttl_seconds, 60);
        assert!(!c.store.path_style);
        assert_eq!(c.cors_origins, ["https://a.example", "https://b.example"]);
        assert!(!c.embedded_database());
    }

    #[test]
    fn secrets_and_passwords_never_print() {
        let c = Config::load(
            None,
            env(&[
                ("VIDEOSYNC_JWT_SECRET", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"),
                ("VIDEOSYNC_STORE_SECRET_ACCESS_KEY", "AKIAsecretkey"),
                ("VIDEOSYNC_DATABASE_URL", "postgres://u:hunter2@db/v"),
                ("VIDEOSYNC_QUEUE_URL", "redis://:hunter3@cache:6379"),
            ]),
        )
        .unwrap();
        let shown = format!("{}\n{:?}", c.to_redacted_toml(), c);
        for secret in ["s3cr3t", "AKIAsecretkey", "hunter2", "hunter3"] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        assert!(c.to_redacted_toml().contains("[redacted]"));
        assert_eq!(c.auth.jwt_secret.expose().len(), 34);
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("VIDEOSYNC_LISTN", "x")],
                "unknown environment variable VIDEOSYNC_LISTN",
            ),
            (
                &[("VIDEOSYNC_WORKERS", "two")],
                "VIDEOSYNC_WORKERS=`two` is not a whole number",
            ),
            (&[("VIDEOSYNC_LISTEN", "nowhere")], "invalid configuration"),
            (
                &[("VIDEOSYNC_REGISTRATION", "maybe")],
                "invalid configuration",
            ),
            (
                &[("VIDEOSYNC_JWT_SECRET", "short")],
                "at least 32 characters",
            ),
            (&[("VIDEOSYNC_PUBLIC_URL", "ftp://x")], "not an http(s) URL"),
            (
                &[("VIDEOSYNC_ACCESS_TTL_SECONDS", "0")],
                "access_ttl_seconds",
            ),
        ];
        for (vars, expected) in cases {
            let err = Config::load(None, env(vars)).unwrap_err().to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[databse]\nurl = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown field `databse`"), "{err}");
        std::fs::write(&file, "listen = [").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn every_variable_names_a_setting() {
        // Each variable, set to a plausible value, loads (so no entry of the
        // table points at a setting that does not exist).
        for (name, _, kind) in ENV_VARS {
            let value = match (name, kind) {
                (&"VIDEOSYNC_MAX_BODY_BYTES" | &"VIDEOSYNC_REFRESH_TTL_SECONDS", _) => "4096",
                (&"VIDEOSYNC_SEGMENT_SECONDS", _) => "4",
                (_, EnvKind::Integer) => "10",
                (_, EnvKind::Integers) => "720, 360",
                (_, EnvKind::Bool) => "true",
                (&"VIDEOSYNC_UPLOAD_CONTAINERS", _) => "mp4, webm",
                (_, EnvKind::List) => "https://a.example",
                (&"VIDEOSYNC_PRESET", _) => "ultrafast",
                (&"VIDEOSYNC_MEDIA_SIGNING_SECRET", _) => "0123456789abcdef0123456789abcdef",
                (&"VIDEOSYNC_LISTEN", _) => "127.0.0.1:1",
                (&"VIDEOSYNC_PUBLIC_URL" | &"VIDEOSYNC_CDN_URL", _) => "https://x.example",
                (&"VIDEOSYNC_LOG_FORMAT", _) => "json",
                (&"VIDEOSYNC_REGISTRATION", _) => "closed",
                (&"VIDEOSYNC_JWT_SECRET", _) => "0123456789abcdef0123456789abcdef",
                (&"VIDEOSYNC_DATABASE_URL", _) => "sqlite://x.db",
                _ => "x",
            };
            Config::load(None, env(&[(name, value)]))
                .unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        }
    }
}
