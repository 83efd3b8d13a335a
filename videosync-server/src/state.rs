//! [`App`]: what every handler shares (the backends and the settings taken
//! from the configuration), and how it is made from a [`Config`].

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use videosync_core::store::s3::S3Store;
use videosync_core::store::DynObjectStore;
use videosync_core::uploads::{DynUploadSessions, StoreUploads, UploadOptions};

use crate::auth::password::Passwords;
use crate::auth::tokens::TokenKeys;
use crate::backends::{open_store, BackendUrls, Backends};
use crate::config::{
    Config, LimitsConfig, ProcessingConfig, Registration, Secret, StoreConfig, UploadsConfig,
};
use crate::delivery::MediaSigner;
use crate::ops::Metrics;

/// Account and token settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Signs and checks access tokens.
    pub keys: TokenKeys,
    /// Hashes and checks passwords.
    pub passwords: Passwords,
    /// Access token lifetime, seconds.
    pub access_ttl_s: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl_s: u64,
    /// Guest token lifetime, seconds.
    pub guest_ttl_s: u64,
    /// Whether people may sign up.
    pub registration: Registration,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    /// The backends.
    pub backends: Backends,
    /// Accounts and tokens.
    pub auth: AuthSettings,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Where people reach the server.
    pub public_url: Option<String>,
    /// Browser origins allowed to call the API.
    pub cors_origins: Vec<String>,
    /// The Prometheus registry `/metrics` renders.
    pub metrics: Metrics,
    /// Resumable upload sessions (state in the database, bytes in the store).
    pub uploads: DynUploadSessions,
    /// Upload limits.
    pub upload_limits: UploadsConfig,
    /// What uploads are transcoded into.
    pub processing: ProcessingConfig,
    /// Signs and checks private media URLs.
    pub media_signer: MediaSigner,
    /// A CDN in front of `/media` (playlists then name it).
    pub cdn_url: Option<String>,
    /// `max-age` of playlists, seconds.
    pub playlist_max_age_s: u64,
    /// Ready videos and small ladder files in memory, for delivery.
    pub media_cache: crate::delivery::cache::MediaCache,
    /// The watch-together rooms on this instance.
    pub realtime: crate::realtime::Hub,
}

/// The state handlers receive.
pub type AppState = Arc<App>;

impl App {
    /// A key-value key in this deployment's namespace.
    ///
    /// # Errors
    /// 422 when `name` is not a valid key.
    pub fn kv_key(&self, name: &str) -> crate::error::ApiResult<videosync_core::kv::Key> {
        Ok(videosync_core::kv::Key::parse(&crate::backends::scoped(
            &self.backends.namespace,
            name,
        ))?)
    }

    /// The app over opened `backends`, with the settings of `config`; the
    /// token key is `secret` (see [`resolve_jwt_secret`]).
    ///
    /// # Errors
    /// When a setting is out of range.
    pub fn new(backends: Backends, config: &Config, secret: &Secret) -> anyhow::Result<App> {
        anyhow::ensure!(
            secret.expose().len() >= 32,
            "the token signing secret must be at least 32 characters"
        );
        let a = &config.auth;
        let passwords = Passwords::new(
            a.argon2_memory_kib,
            a.argon2_iterations,
            a.max_concurrent_hashes,
        )
        .map_err(anyhow::Error::msg)?;
        let uploads = StoreUploads::new(
            backends.db.clone(),
            backends.uploads.clone(),
            backends.clock.clone(),
            UploadOptions {
                max_size: Some(config.uploads.max_size_bytes),
                default_ttl: std::time::Duration::from_secs(config.uploads.expiry_seconds),
                lease: std::time::Duration::from_secs(config.uploads.lease_seconds),
                ..UploadOptions::default()
            },
        )?;
        let d = &config.delivery;
        let media_secret = if d.signing_secret.is_empty() {
            MediaSigner::derived_secret(secret.expose())
        } else {
            d.signing_secret.expose().to_owned()
        };
        // The protocol's server clock starts at the core clock's time.
        let epoch_ms = backends.clock.now().as_millis() as f64;
        let bus = backends.bus.clone();
        let namespace = backends.namespace.clone();
        Ok(App {
            backends,
            auth: AuthSettings {
                keys: TokenKeys::new(secret.expose().as_bytes()),
                passwords,
                access_ttl_s: a.access_ttl_seconds,
                refresh_ttl_s: a.refresh_ttl_seconds,
                guest_ttl_s: a.guest_ttl_seconds,
                registration: a.registration,
            },
            limits: config.limits.clone(),
            public_url: config.public_url.clone(),
            cors_origins: config.cors_origins.clone(),
            metrics: Metrics::get(),
            uploads: Arc::new(uploads),
            upload_limits: config.uploads.clone(),
            processing: config.processing.clone(),
            media_signer: MediaSigner::new(
                &media_secret,
                std::time::Duration::from_secs(d.signed_url_ttl_seconds),
            ),
            cdn_url: config.cdn_url.clone(),
            playlist_max_age_s: d.playlist_max_age_seconds,
            media_cache: crate::delivery::cache::MediaCache::new(d.memory_cache_bytes),
            realtime: crate::realtime::Hub::new(config.realtime.clone(), epoch_ms, bus, &namespace),
        })
    }

    /// Opens the backends `config` names and makes the app.
    ///
    /// # Errors
    /// A backend that does not open, or a missing secret, saying which.
    pub async fn from_config(config: &Config) -> anyhow::Result<App> {
        // The secret first: a missing one is a mistake to report before
        // anything slow is tried.
        let secret = resolve_jwt_secret(config)?;
        let backends = open_backends(config).await?;
        App::new(backends, config, &secret)
    }
}

/// The backend URLs a configuration names.
pub fn backend_urls(config: &Config) -> BackendUrls {
    BackendUrls {
        store: config.store_url(),
        uploads: config.uploads_store_url(),
        queue: config.queue_url(),
        bus: config.bus_url(),
        database: config.database_url(),
        log: config.log_url(),
        kv: config.kv_url(),
        namespace: config.namespace.clone().unwrap_or_default(),
    }
}

/// Opens the backends `config` names (an S3 store with the configured
/// endpoint, region, credentials and path style).
///
/// # Errors
/// The first backend that fails to open, saying which.
pub async fn open_backends(config: &Config) -> anyhow::Result<Backends> {
    let urls = backend_urls(config);
    let store = build_store(&urls.store, &config.store).await?;
    let uploads = match &urls.uploads {
        Some(url) => Some(
            build_store(url, &config.store)
                .await
                .context("opening the uploads store (uploads.store_url)")?,
        ),
        None => None,
    };
    let backends = Backends::open_with(
        &urls,
        Arc::new(videosync_core::SystemClock::new()),
        Some(store),
        uploads,
    )
    .await
    .context("opening the backends")?;
    tracing::info!(
        database = %backends.db,
        store = %backends.store,
        uploads = %backends.uploads,
        queue = %backends.queue,
        bus = %backends.bus,
        log = %backends.log,
        kv = %backends.kv,
        "backends open"
    );
    Ok(backends)
}

/// Opens the store at `url`; an S3 one with the endpoint, region,
/// credentials and path style of `s`.
async fn build_store(url: &str, s: &StoreConfig) -> anyhow::Result<DynObjectStore> {
    if !url.starts_with("s3://") {
        return Ok(open_store(url).await?);
    }
    let mut b = S3Store::builder_from_url(url)?.path_style(s.path_style);
    if let Some(endpoint) = &s.endpoint {
        b = b.endpoint(endpoint.clone());
    }
    if let Some(region) = &s.region {
        b = b.region(region.clone());
    }
    if let Some(public) = &s.public_endpoint {
        b = b.public_endpoint(public.clone());
    }
    if let Some(key_id) = &s.access_key_id {
        b = b.credentials(key_id.clone(), s.secret_access_key.expose().to_owned());
    }
    Ok(Arc::new(b.build().await?))
}

/// The file under the data directory that keeps a generated secret.
const SECRET_FILE: &str = "secrets/jwt.key";

/// The token signing secret: the configured one; on an embedded database,
/// one generated at the first start and kept in the data directory (mode
/// 0600); on a shared database it must be configured, since every instance
/// must sign with the same key.
///
/// # Errors
/// When the secret is missing on a shared database, or the file cannot be
/// read or written.
pub fn resolve_jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    if !config.auth.jwt_secret.is_empty() {
        return Ok(config.auth.jwt_secret.clone());
    }
    anyhow::ensure!(
        config.embedded_database(),
        "auth.jwt_secret (VIDEOSYNC_JWT_SECRET) must be set when the database is shared: \
         every instance signs tokens with it"
    );
    generated_secret(&config.data_dir.join(SECRET_FILE))
}

fn generated_secret(path: &Path) -> anyhow::Result<Secret> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(Secret::new(s.trim())),
        Ok(_) => anyhow::bail!(
            "{} holds no usable secret (under 32 characters)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let dir = path.parent().context("the secret file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes: [u8; 32] = rand::random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, secret.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(file = %path.display(), "generated the token signing secret");
            Ok(Secret::new(secret))
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => generated_secret(path),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_secret_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let a = resolve_jwt_secret(&config).unwrap();
        let b = resolve_jwt_secret(&config).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        config.database.url = Some("postgres://db/v".into());
        let err = resolve_jwt_secret(&config).unwrap_err().to_string();
        assert!(err.contains("VIDEOSYNC_JWT_SECRET"), "{err}");
    }
}
