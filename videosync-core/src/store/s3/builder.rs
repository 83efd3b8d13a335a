//! [`S3StoreBuilder`]: the settings of an [`S3Store`] and their checks.

use std::fmt;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;

use super::S3Store;
use crate::{Clock, Error, ObjectKey, Result, SystemClock};

/// Region used when neither the URL, the builder nor `AWS_REGION` names one.
const DEFAULT_REGION: &str = "us-east-1";

/// Settings of an [`S3Store`], made by [`S3Store::builder`].
#[derive(Clone)]
pub struct S3StoreBuilder {
    pub(super) bucket: String,
    pub(super) prefix: Option<ObjectKey>,
    pub(super) endpoint: Option<String>,
    pub(super) public_endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) credentials: Option<Credentials>,
    pub(super) path_style: bool,
    pub(super) clock: Option<Arc<dyn Clock>>,
    pub(super) conditional_writes: ConditionalWrites,
}

/// How an [`S3Store`] carries out [`PutMode::Create`](crate::store::PutMode::Create)
/// and [`PutMode::IfMatch`](crate::store::PutMode::IfMatch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConditionalWrites {
    /// Send `If-None-Match: *` / `If-Match` and let the server decide,
    /// atomically (AWS S3, MinIO, Cloudflare R2, Ceph). A server that
    /// ignores the headers overwrites silently, so use this only on one
    /// that honours them.
    #[default]
    Server,
    /// Also `HEAD` the object first and refuse when the condition fails.
    /// Correct for one writer at a time; two writers racing between the
    /// `HEAD` and the `PUT` can both succeed (the later one wins). For
    /// servers that ignore the headers (Garage 2.x): the headers are still
    /// sent, so a server that learns them closes the window.
    Checked,
}

impl fmt::Debug for S3StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Credentials`' own Debug redacts the secret.
        f.debug_struct("S3StoreBuilder")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix.as_ref().map(ObjectKey::as_str))
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("path_style", &self.path_style)
            .field("conditional_writes", &self.conditional_writes)
            .finish_non_exhaustive()
    }
}

impl S3StoreBuilder {
    /// Puts every key under `prefix` (followed by `/`) in the bucket.
    pub fn prefix(mut self, prefix: ObjectKey) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// Talks to the server at `endpoint` (`http://127.0.0.1:3900`) instead of
    /// AWS S3.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// How create-only and compare-and-swap writes are carried out (see
    /// [`ConditionalWrites`]; [`ConditionalWrites::Server`] by default).
    pub fn conditional_writes(mut self, how: ConditionalWrites) -> Self {
        self.conditional_writes = how;
        self
    }

    /// Makes presigned URLs (see [`crate::ObjectStore::signer`]) for the server at
    /// `endpoint`: the address a browser reaches (`https://media.example`),
    /// where the store itself may talk to another one
    /// (`http://garage:3900` inside the cluster). Without it, presigned URLs
    /// name the store's own endpoint.
    pub fn public_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.public_endpoint = Some(endpoint.into());
        self
    }

    /// Signs requests for `region`; without it, `AWS_REGION`, else
    /// `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Uses this access key instead of the AWS default credential chain
    /// (environment, profile files, web identity, container and instance
    /// roles).
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "videosync",
        ));
        self
    }

    /// Uses these temporary credentials (an access key with its session
    /// token) instead of the AWS default credential chain.
    pub fn session_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials::new(
            access_key_id,
            secret_access_key,
            Some(session_token.into()),
            None,
            "videosync",
        ));
        self
    }

    /// Whether to address the bucket in the path (`ENDPOINT/bucket/key`, the
    /// default, which every S3-compatible server understands) or in the host
    /// name (`bucket.ENDPOINT/key`).
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }

    /// Stamps the metadata that writes return with `clock`, and dates
    /// presigned URLs by it (the system clock by default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Makes the store. Nothing is sent to the server yet: a wrong endpoint
    /// or credentials show up at the first request.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty or malformed bucket name, an
    /// endpoint that is not an `http` or `https` URL, or an empty region.
    pub async fn build(self) -> Result<S3Store> {
        check_bucket(&self.bucket)?;
        for endpoint in [&self.endpoint, &self.public_endpoint]
            .into_iter()
            .flatten()
        {
            check_endpoint(endpoint)?;
        }
        let region = match self.region {
            Some(r) if r.trim().is_empty() => {
                return Err(Error::invalid_input(format!(
                    "S3 store for bucket {}: the region is empty",
                    self.bucket
                )))
            }
            Some(r) => r,
            None => std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        };
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.clone()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = self.credentials {
            loader = loader.credentials_provider(credentials);
        }
        let sdk_config = loader.load().await;
        let client_for = |endpoint: Option<&String>| {
            let mut config = aws_sdk_s3::config::Builder::from(&sdk_config)
                .force_path_style(self.path_style)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            if let Some(endpoint) = endpoint {
                config = config.endpoint_url(endpoint);
            }
            Client::from_conf(config.build())
        };
        let client = client_for(self.endpoint.as_ref());
        // Presigning needs no connection; a second client only carries the
        // public endpoint into the signed host.
        let signing_client = match &self.public_endpoint {
            Some(public) => client_for(Some(public)),
            None => client.clone(),
        };
        Ok(S3Store {
            client,
            signing_client,
            bucket: self.bucket,
            prefix: self.prefix,
            endpoint: self.endpoint,
            public_endpoint: self.public_endpoint,
            conditional_writes: self.conditional_writes,
            region,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
        })
    }
}

/// Checks a bucket name enough that it cannot break a request's URL; the
/// server checks the rest.
pub(super) fn check_bucket(bucket: &str) -> Result<()> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "S3 bucket name `{}` is empty or has characters other than letters, digits, `-`, `.` and `_`",
            bucket.escape_debug()
        )))
    }
}

/// Checks that an endpoint is an `http` or `https` URL of a host.
pub(super) fn check_endpoint(endpoint: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid_input(format!(
            "S3 endpoint `{}` {why}",
            crate::redact_url(endpoint).escape_debug()
        )))
    };
    let Ok(url) = url::Url::parse(endpoint) else {
        return bad("is not a URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("is not an http or https URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("names no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("has a query or fragment");
    }
    Ok(())
}
