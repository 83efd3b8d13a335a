//! Playlist rewriting for delivery: absolute or CDN URLs, signed segments.
//!
//! Playlists are written with relative URIs so a ladder can move between
//! stores. At delivery the server may need them absolute (a CDN host in
//! front, a presigned bucket) and, for private channels, each segment URL
//! signed for one request. [`Rewriter`] does both and changes nothing else:
//! tags, durations and attributes come out as they went in.
//!
//! A [`BaseUrl`] is the URL the playlist is served from (or its folder, with
//! a trailing slash); references resolve against it as a browser resolves
//! them (RFC 3986 section 5.2): `seg_1.m4s`, `../audio/index.m3u8`,
//! `/v/abc/init.mp4` and `//cdn.example/x.ts` all work, and URIs that are
//! already absolute are left alone before signing.

use std::fmt;

use m3u8_rs::{MasterPlaylist, MediaPlaylist};

use crate::Error;

/// Signs one URL for one request.
///
/// # Contract
///
/// `sign` returns the URL a player should fetch, usually the input with a
/// signature and expiry appended. It is called once per segment,
/// initialisation segment and key URI (and, when asked, per media playlist
/// URI of a master), after the URI is made absolute. It must not fail:
/// a signer that cannot sign should return the URL unchanged and let the
/// origin refuse it.
///
/// # Implementing
///
/// Any `Fn(&str) -> String` is a signer; implement the trait on a struct
/// when the signer holds keys. The expiry time comes in with the signer
/// (this crate reads no clock).
pub trait UrlSigner {
    /// The signed form of `url`.
    fn sign(&self, url: &str) -> String;
}

impl<F: Fn(&str) -> String> UrlSigner for F {
    fn sign(&self, url: &str) -> String {
        self(url)
    }
}

/// An absolute `scheme://authority/path` URL that relative URIs resolve
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https://cdn.example.com`
    origin: String,
    /// `/videos/abc/720p/index.m3u8`, always starting with `/`.
    path: String,
}

fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Splits `path?query#fragment` at the first `?` or `#`.
fn split_suffix(s: &str) -> (&str, &str) {
    let at = s.find(['?', '#']).unwrap_or(s.len());
    s.split_at(at)
}

/// RFC 3986 section 5.2.4, on a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

impl BaseUrl {
    /// Checks and keeps a base URL.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `url` is not `scheme://host...`.
    pub fn parse(url: &str) -> Result<BaseUrl, Error> {
        let bad = || {
            Error::InvalidInput(format!(
                "base URL {url:?} must be absolute, like https://cdn.example.com/path/"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if !has_scheme(&format!("{scheme}:"))
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return Err(bad());
        }
        let (path, _) = split_suffix(tail);
        let path = if path.is_empty() { "/" } else { path };
        Ok(BaseUrl {
            origin: format!("{scheme}://{authority}"),
            path: path.to_owned(),
        })
    }

    /// Resolves `reference` against this base.
    pub fn resolve(&self, reference: &str) -> String {
        if has_scheme(reference) {
            return reference.to_owned();
        }
        if let Some(rest) = reference.strip_prefix("//") {
            let scheme = self.origin.split("://").next().unwrap_or("https");
            return format!("{scheme}://{rest}");
        }
        let (path, suffix) = split_suffix(reference);
        if path.is_empty() {
            return format!("{}{}{}", self.origin, self.path, suffix);
        }
        let merged = if path.starts_with('/') {
            path.to_owned()
        } else {
            let dir = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{path}")
        };
        format!("{}{}{}", self.origin, remove_dot_segments(&merged), suffix)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin, self.path)
    }
}

/// Rewrites the URIs of playlists; built once per request.
///
/// # Examples
///
/// ```
/// use videosync_hls::rewrite::{BaseUrl, Rewriter};
///
/// let base = BaseUrl::parse("https://cdn.example.com/v/abc/720p/index.m3u8")?;
/// let sign = |url: &str| format!("{url}?sig=k1");
/// let rewriter = Rewriter::new().base(&base).signer(&sign);
/// assert_eq!(rewriter.segment_uri("seg_00001.m4s"), "https://cdn.example.com/v/abc/720p/seg_00001.m4s?sig=k1");
/// # Ok::<(), videosync_hls::Error>(())
/// ```
#[derive(Clone, Copy, Default)]
pub struct Rewriter<'a> {
    base: Option<&'a BaseUrl>,
    signer: Option<&'a dyn UrlSigner>,
    sign_playlists: bool,
}

impl fmt::Debug for Rewriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewriter")
            .field("base", &self.base)
            .field("signer", &self.signer.is_some())
            .field("sign_playlists", &self.sign_playlists)
            .finish()
    }
}

impl<'a> Rewriter<'a> {
    /// A rewriter that changes nothing until given a base or a signer.
    pub fn new() -> Self {
        Rewriter::default()
    }

    /// Makes URIs absolute against `base`.
    pub fn base(mut self, base: &'a BaseUrl) -> Self {
        self.base = Some(base);
        self
    }

    /// Signs segment, initialisation segment and key URIs with `signer`.
    pub fn signer(mut self, signer: &'a dyn UrlSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Also signs the media playlist URIs of a master (off by default:
    /// playlists are usually fetched through the server, which checks the
    /// viewer itself).
    pub fn sign_playlists(mut self, yes: bool) -> Self {
        self.sign_playlists = yes;
        self
    }

    fn absolute(&self, uri: &str) -> String {
        self.base.map_or_else(|| uri.to_owned(), |b| b.resolve(uri))
    }

    /// The delivered form of a segment (or init, or key) URI.
    pub fn segment_uri(&self, uri: &str) -> String {
        let abs = self.absolute(uri);
        self.signer.map_or(abs.clone(), |s| s.sign(&abs))
    }

    /// The delivered form of a media playlist URI in a master.
    pub fn playlist_uri(&self, uri: &str) -> String {
        if self.sign_playlists {
            self.segment_uri(uri)
        } else {
            self.absolute(uri)
        }
    }

    /// A copy of `playlist` with variant and rendition URIs rewritten.
    pub fn master(&self, playlist: &MasterPlaylist) -> MasterPlaylist {
        let mut out = playlist.clone();
        for v in &mut out.variants {
            v.uri = self.playlist_uri(&v.uri);
        }
        for a in &mut out.alternatives {
            if let Some(uri) = &a.uri {
                a.uri = Some(self.playlist_uri(uri));
            }
        }
        out
    }

    /// A copy of `playlist` with segment, `EXT-X-MAP` and `EXT-X-KEY` URIs
    /// rewritten.
    pub fn media(&self, playlist: &MediaPlaylist) -> MediaPlaylist {
        let mut out = playlist.clone();
        for s in &mut out.segments {
            s.uri = self.segment_uri(&s.uri);
            if let Some(map) = &mut s.map {
                map.uri = self.segment_uri(&map.uri);
            }
            if let Some(key) = &mut s.key {
                if let Some(uri) = &key.uri {
                    key.uri = Some(self.segment_uri(uri));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::SegmentFormat;
    use crate::playlist::tests::{fixture_master, video_720};
    use crate::playlist::{master_to_string, media_playlist, media_to_string, parse_media};

    #[test]
    fn resolves_like_a_browser() {
        let b = BaseUrl::parse("https://cdn.example.com/v/abc/720p/index.m3u8?token=1").unwrap();
        assert_eq!(
            b.resolve("seg_1.m4s"),
            "https://cdn.example.com/v/abc/720p/seg_1.m4s"
        );
        assert_eq!(
            b.resolve("./seg_1.m4s?x=2"),
            "https://cdn.example.com/v/abc/720p/seg_1.m4s?x=2"
        );
        assert_eq!(
            b.resolve("../audio/index.m3u8"),
            "https://cdn.example.com/v/abc/audio/index.m3u8"
        );
        assert_eq!(
            b.resolve("../../../../x.ts"),
            "https://cdn.example.com/x.ts"
        );
        assert_eq!(
            b.resolve("/other/init.mp4"),
            "https://cdn.example.com/other/init.mp4"
        );
        assert_eq!(
            b.resolve("//edge.example.net/a.ts"),
            "https://edge.example.net/a.ts"
        );
        assert_eq!(b.resolve("http://elsewhere/a.ts"), "http://elsewhere/a.ts");
        let dir = BaseUrl::parse("https://cdn.example.com/v/abc/").unwrap();
        assert_eq!(
            dir.resolve("720p/index.m3u8"),
            "https://cdn.example.com/v/abc/720p/index.m3u8"
        );
        let host = BaseUrl::parse("https://cdn.example.com").unwrap();
        assert_eq!(
            host.resolve("master.m3u8"),
            "https://cdn.example.com/master.m3u8"
        );
        assert_eq!(host.to_string(), "https://cdn.example.com/");
    }

    #[test]
    fn bad_bases_are_errors() {
        for bad in [
            "cdn.example.com/v",
            "https:///v",
            "/v/abc",
            "",
            "ht tp://x/",
            "https://a b/",
        ] {
            assert!(
                matches!(BaseUrl::parse(bad), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn master_variants_become_absolute_and_nothing_else_changes() {
        let base = BaseUrl::parse("https://cdn.example.com/v/abc/master.m3u8").unwrap();
        let master = fixture_master();
        let text = master_to_string(&Rewriter::new().base(&base).master(&master));
        let expected = master_to_string(&master)
            .replace("URI=\"audio/", "URI=\"https://cdn.example.com/v/abc/audio/")
            .replace("\n720p/", "\nhttps://cdn.example.com/v/abc/720p/")
            .replace("\n360p/", "\nhttps://cdn.example.com/v/abc/360p/");
        assert_eq!(text, expected);
        assert!(text.contains("\nhttps://cdn.example.com/v/abc/360p/index.m3u8\n"));
        // Playlist URIs are signed only when asked.
        let sign = |u: &str| format!("{u}?sig=1");
        let signed = Rewriter::new().base(&base).signer(&sign).master(&master);
        assert_eq!(
            signed.variants[0].uri,
            "https://cdn.example.com/v/abc/360p/index.m3u8"
        );
        let signed = Rewriter::new()
            .base(&base)
            .signer(&sign)
            .sign_playlists(true)
            .master(&master);
        assert_eq!(
            signed.variants[0].uri,
            "https://cdn.example.com/v/abc/360p/index.m3u8?sig=1"
        );
        assert_eq!(
            signed.alternatives[0].uri.as_deref(),
            Some("https://cdn.example.com/v/abc/audio/index.m3u8?sig=1")
        );
    }

    struct CountingSigner(std::cell::Cell<u32>);
    impl UrlSigner for CountingSigner {
        fn sign(&self, url: &str) -> String {
            self.0.set(self.0.get() + 1);
            format!("{url}?n={}", self.0.get())
        }
    }

    #[test]
    fn media_segments_and_init_are_signed_per_uri() {
        let base = BaseUrl::parse("https://cdn.example.com/v/abc/720p/index.m3u8").unwrap();
        let pl = media_playlist(SegmentFormat::Fmp4, &video_720()).unwrap();
        let signer = CountingSigner(std::cell::Cell::new(0));
        let out = Rewriter::new().base(&base).signer(&signer).media(&pl);
        assert_eq!(
            media_to_string(&out),
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:4
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"https://cdn.example.com/v/abc/720p/init.mp4?n=2\"
#EXTINF:4,
https://cdn.example.com/v/abc/720p/seg_00000.m4s?n=1
#EXTINF:4,
https://cdn.example.com/v/abc/720p/seg_00001.m4s?n=3
#EXTINF:2,
https://cdn.example.com/v/abc/720p/seg_00002.m4s?n=4
#EXT-X-ENDLIST
"
        );
        // Still a playlist m3u8-rs reads back, with the same shape.
        let parsed = parse_media(&media_to_string(&out)).unwrap();
        assert_eq!(parsed, out);
        // Without a base, only signing.
        let sign = |u: &str| format!("{u}?sig=abc");
        let out = Rewriter::new().signer(&sign).media(&pl);
        assert_eq!(out.segments[2].uri, "seg_00002.m4s?sig=abc");
        // The identity rewriter changes nothing.
        assert_eq!(Rewriter::new().media(&pl), pl);
    }
}
