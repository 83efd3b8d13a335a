//! The web app (`web/`): built with Vite by `build.rs` and embedded in the
//! binary, served at `/` by the router's fallback.
//!
//! - Built files (`/assets/...`, named by content hash) are sent with a
//!   year's `immutable` caching; everything else is revalidated (`no-cache`
//!   with an entity tag, so a reload costs a `304`).
//! - The app's own paths (the routes of `web/src/main.tsx`) answer its
//!   `index.html`; any other path a browser asks for (`Accept: text/html`)
//!   answers it too, with `404`, so the app shows its "nothing here" page;
//!   other clients, and everything under `/api/` and `/media/`, get the
//!   JSON `not_found`.
//! - Text files go gzip-compressed to clients that accept it (compressed at
//!   build time, once).
//! - The app's pages carry their own Content-Security-Policy: scripts and
//!   styles from this origin only (style attributes allowed: the seek-bar
//!   preview positions its sprite), media and images also from `blob:`
//!   (hls.js plays through Media Source Extensions) and the CDN, connections
//!   to this origin (the API, the room's WebSocket, uploads) and the CDN.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error;
use crate::state::AppState;

/// One embedded file of the built app.
pub(crate) struct Asset {
    /// Its path below the build folder (`index.html`, `assets/index-1a2b.js`).
    pub path: &'static str,
    pub media_type: &'static str,
    /// A strong entity tag of its bytes.
    pub etag: &'static str,
    pub body: &'static [u8],
    /// The same bytes gzip-compressed, for text files of 1 KiB or more.
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether `path` is one of the app's pages (keep in step with the routes
/// of `web/src/main.tsx`).
fn is_app_route(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let segment = |s: &&str| !s.is_empty() && s.len() <= 200;
    match parts.as_slice() {
        [] => true,
        ["login" | "signup" | "new" | "upload" | "admin" | "account"] => true,
        ["c", id] | ["c", id, "manage"] => segment(id),
        ["invite", code] => segment(code),
        _ => false,
    }
}

/// Whether the request's `name` header (`Accept`, `Accept-Encoding`) lists
/// `what`.
fn accepts(headers: &HeaderMap, name: header::HeaderName, what: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|item| item.split(';').next().is_some_and(|t| t.trim() == what))
        })
}

/// The app pages' Content-Security-Policy; `cdn` is the media CDN's base URL.
fn content_security_policy(cdn: Option<&str>) -> String {
    let cdn = cdn
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| format!(" {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:{cdn}; media-src 'self' blob:{cdn}; connect-src 'self'{cdn}; \
         worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

fn serve(
    app: &AppState,
    a: &'static Asset,
    status: StatusCode,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let immutable = a.path.starts_with("assets/");
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, a.media_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, a.etag)
        .header(header::VARY, "Accept-Encoding");
    if a.media_type.starts_with("text/html") {
        let csp = content_security_policy(app.cdn_url.as_deref());
        if let Ok(v) = HeaderValue::from_str(&csp) {
            r = r.header(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    if fresh && status == StatusCode::OK {
        return r
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::NOT_MODIFIED.into_response());
    }
    let (bytes, gzip) = match a.gzip {
        Some(gz) if accepts(headers, header::ACCEPT_ENCODING, "gzip") => (gz, true),
        _ => (a.body, false),
    };
    if gzip {
        r = r.header(header::CONTENT_ENCODING, "gzip");
    }
    r = r.header(header::CONTENT_LENGTH, bytes.len());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    r.body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The router's fallback: the app's files and pages, else the JSON
/// `not_found` of the API.
pub(crate) async fn fallback(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    let api = path == "/api" || path.starts_with("/api/") || path.starts_with("/media/");
    if api || (method != Method::GET && method != Method::HEAD) {
        return error::not_found_fallback().await.into_response();
    }
    let Some(index) = asset("index.html") else {
        return error::not_found_fallback().await.into_response();
    };
    if let Some(a) = path
        .strip_prefix('/')
        .filter(|p| !p.is_empty())
        .and_then(asset)
    {
        return serve(&app, a, StatusCode::OK, &method, &headers);
    }
    if is_app_route(path) {
        return serve(&app, index, StatusCode::OK, &method, &headers);
    }
    if accepts(&headers, header::ACCEPT, "text/html") {
        return serve(&app, index, StatusCode::NOT_FOUND, &method, &headers);
    }
    error::not_found_fallback().await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_is_embedded() {
        let index = asset("index.html").expect("index.html is embedded");
        let html = std::str::from_utf8(index.body).expect("utf-8");
        assert!(html.contains("<div id=\"app\">"), "{html}");
        assert!(ASSETS
            .iter()
            .any(|a| a.path.starts_with("assets/") && a.path.ends_with(".js")));
        for a in ASSETS {
            if let Some(gz) = a.gzip {
                assert!(gz.len() < a.body.len(), "{} compresses", a.path);
            }
        }
    }

    #[test]
    fn app_routes() {
        for p in [
            "/",
            "/login",
            "/signup/",
            "/new",
            "/upload",
            "/admin",
            "/c/abc",
            "/c/abc/manage",
            "/invite/xyz",
        ] {
            assert!(is_app_route(p), "{p}");
        }
        for p in [
            "/c", "/c/", "/c/a/b", "/nope", "/invite", "/login/x", "/api",
        ] {
            assert!(!is_app_route(p), "{p}");
        }
    }

    #[test]
    fn accept_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9"),
        );
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts(&h, header::ACCEPT, "text/html"));
        assert!(accepts(&h, header::ACCEPT_ENCODING, "gzip"));
        assert!(!accepts(&h, header::ACCEPT_ENCODING, "deflate"));
        assert!(!accepts(&h, header::ACCEPT, "gzip"));
    }

    #[test]
    fn policy_names_the_cdn_origin_only() {
        let p = content_security_policy(Some("https://cdn.example.com/videos/"));
        assert!(
            p.contains("media-src 'self' blob: https://cdn.example.com;"),
            "{p}"
        );
        assert!(!content_security_policy(None).contains("cdn"));
        assert!(!content_security_policy(Some("not a url")).contains("not"));
    }
}
