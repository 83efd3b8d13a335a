//! Fixed-window rate limits in the shared key-value store, so a limit holds
//! across every instance behind a load balancer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::error::{ApiError, ApiResult};
use crate::state::App;

/// Counts one attempt at `name` (`login-ip:1.2.3.4`, say) and refuses with
/// 429 once more than `max` came within `window`.
///
/// # Errors
/// 429 over the limit; 503 when the store does not answer.
pub async fn check(app: &App, name: &str, max: u32, window: Duration) -> ApiResult<()> {
    if max == 0 {
        return Ok(());
    }
    // Names carry user input (a login); hash them into a valid key.
    let digest = crate::auth::tokens::refresh_token_hash(name);
    let key = app.kv_key(&format!("ratelimit:{}", &digest[..32]))?;
    let count = app.backends.kv.incr(&key, 1, Some(window)).await?;
    if count > i64::from(max) {
        return Err(ApiError::rate_limited(window.as_secs()));
    }
    Ok(())
}

/// The client's address: the peer, or the first `X-Forwarded-For` hop when
/// the proxy in front is trusted. `None` when neither is known (in-process
/// requests in tests).
pub fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client address as an extractor (never fails).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl axum::extract::FromRequestParts<crate::state::AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &crate::state::AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, app.limits.trust_forwarded_for)))
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}
