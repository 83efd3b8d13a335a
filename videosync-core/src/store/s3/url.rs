//! `s3://bucket[/prefix]?endpoint=URL&region=NAME&public_endpoint=URL`: the
//! store's URL form.

use super::builder::{check_endpoint, ConditionalWrites, S3StoreBuilder};
use super::S3Store;
use crate::{Error, ObjectKey, Result};

/// Reads `s3://bucket[/prefix]?endpoint=URL&region=NAME` into a builder.
pub(super) fn parse_url(raw: &str) -> Result<S3StoreBuilder> {
    let shown = || crate::redact_url(raw);
    let bad = |why: String| Error::invalid_input(format!("S3 URL `{}`: {why}", shown()));
    let url = url::Url::parse(raw).map_err(|e| bad(format!("not a URL ({e})")))?;
    if url.scheme() != "s3" {
        return Err(bad(format!("the scheme is `{}`, not `s3`", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        ));
    }
    if url.port().is_some() {
        return Err(bad(
            "a bucket has no port; give the server as `?endpoint=http://host:port`".to_owned(),
        ));
    }
    let bucket = match url.host_str() {
        Some(b) if !b.is_empty() => b.to_owned(),
        _ => return Err(bad("no bucket: expected s3://bucket[/prefix]".to_owned())),
    };
    let mut builder = S3Store::builder(bucket);
    let path = url.path().trim_matches('/');
    if !path.is_empty() {
        let decoded = percent_decode(path).ok_or_else(|| {
            bad(format!(
                "the prefix `{path}` is not valid percent-encoded UTF-8"
            ))
        })?;
        let prefix = ObjectKey::parse(&decoded)
            .map_err(|e| bad(format!("the prefix is not a valid key: {e}")))?;
        builder = builder.prefix(prefix);
    }
    let (mut endpoint, mut region, mut public, mut conditional) = (None, None, None, None);
    for (name, value) in url.query_pairs() {
        let slot = match name.as_ref() {
            "endpoint" => &mut endpoint,
            "region" => &mut region,
            "public_endpoint" => &mut public,
            "conditional_writes" => &mut conditional,
            other => {
                return Err(bad(format!(
                    "unknown parameter `{}`; expected endpoint, region, public_endpoint or conditional_writes",
                    other.escape_debug()
                )))
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(bad(format!("parameter `{name}` is given twice")));
        }
    }
    if let Some(endpoint) = endpoint {
        check_endpoint(&endpoint).map_err(|e| bad(e.to_string()))?;
        builder = builder.endpoint(endpoint);
    }
    if let Some(public) = public {
        check_endpoint(&public).map_err(|e| bad(e.to_string()))?;
        builder = builder.public_endpoint(public);
    }
    match conditional.as_deref() {
        None | Some("server") => {}
        Some("checked") => builder = builder.conditional_writes(ConditionalWrites::Checked),
        Some(other) => {
            return Err(bad(format!(
                "conditional_writes is `{}`; expected server or checked",
                other.escape_debug()
            )))
        }
    }
    if let Some(region) = region {
        if region.trim().is_empty() {
            return Err(bad("the region is empty".to_owned()));
        }
        builder = builder.region(region);
    }
    Ok(builder)
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn parsed(url: &str) -> S3StoreBuilder {
        parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> String {
        match parse_url(url) {
            Ok(b) => panic!("{url} was accepted: {b:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn urls_are_read() {
        let b = parsed("s3://videosync-test?endpoint=http://127.0.0.1:3900&region=garage");
        assert_eq!(b.bucket, "videosync-test");
        assert_eq!(b.prefix, None);
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(b.region.as_deref(), Some("garage"));
        assert_eq!(b.public_endpoint, None);
        assert!(b.path_style);
        let b = parsed("s3://b?conditional_writes=checked");
        assert_eq!(b.conditional_writes, ConditionalWrites::Checked);
        let b = parsed("s3://b?public_endpoint=https://media.example");
        assert_eq!(b.public_endpoint.as_deref(), Some("https://media.example"));

        let b = parsed("s3://media/prod/v%C3%A9/x/");
        assert_eq!(b.bucket, "media");
        assert_eq!(b.prefix.as_ref().map(ObjectKey::as_str), Some("prod/vé/x"));
        assert_eq!(b.endpoint, None);
        assert_eq!(b.region, None);
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        let cases = [
            ("s3://", "no bucket"),
            ("s3:///prefix", "no bucket"),
            ("s3://b?endpoint=ftp://x", "not an http or https URL"),
            ("s3://b?endpoint=nonsense", "is not a URL"),
            ("s3://b?bogus=1", "unknown parameter `bogus`"),
            ("s3://b?region=a&region=b", "given twice"),
            ("s3://b?region=", "region is empty"),
            ("s3://b/a%5Cb", "not a valid key"),
            ("s3://b:9000", "no port"),
            ("s3://b/%ZZ", "percent-encoded"),
        ];
        for (url, why) in cases {
            let err = refused(url);
            assert!(err.contains(why), "{url}: {err}");
        }
        let err = refused("s3://key:hunter2@b");
        assert!(!err.contains("hunter2"), "the secret is redacted: {err}");
        assert!(err.contains("credentials"), "{err}");
    }
}
