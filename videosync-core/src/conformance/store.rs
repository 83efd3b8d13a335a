//! The [`crate::ObjectStore`] conformance suite.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::StoreFixture;
use crate::store::sign::{SignMethod, SignRequest};
use crate::store::{GetOptions, GetRange, PartId, PutOptions, PutPayload, MIN_PART_SIZE};
use crate::{Clock, Error, ErrorKind, ManualClock, ObjectKey, ObjectStoreExt, Timestamp};

/// Bigger than the S3 backend's streaming part size (8 MiB) by a margin, so
/// a streamed put of it goes through a multipart upload there.
const ABOVE_STREAM_PART: usize = 2 * 8 * 1024 * 1024 + 1;

fn kind<T>(r: crate::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

pub async fn put_get_round_trip(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("video/master.m3u8");
    let meta = s.put(&key, "#EXTM3U\n".into()).await.unwrap();
    assert_eq!(meta.key, key);
    assert_eq!(meta.size, 8);
    assert_eq!(s.get_bytes(&key).await.unwrap(), "#EXTM3U\n");
    let head = s.head(&key).await.unwrap();
    assert_eq!(head.size, 8);
    let got = s.get(&key).await.unwrap();
    assert_eq!(got.meta.size, 8);
    assert_eq!(got.range, 0..8);
    // Replacing changes the content, the size and the etag.
    let meta2 = s
        .put(&key, "#EXTM3U\n#EXT-X-VERSION:7\n".into())
        .await
        .unwrap();
    assert_eq!(meta2.size, 25);
    if meta.etag.is_some() && meta2.etag.is_some() {
        assert_ne!(meta.etag, meta2.etag);
    }
    assert_eq!(
        s.get_bytes(&key).await.unwrap(),
        "#EXTM3U\n#EXT-X-VERSION:7\n"
    );
    // An empty object is an object.
    let empty = fx.key("empty");
    s.put(&empty, Bytes::new().into()).await.unwrap();
    assert_eq!(s.head(&empty).await.unwrap().size, 0);
    assert!(s.get_bytes(&empty).await.unwrap().is_empty());
    assert!(s.exists(&empty).await.unwrap());
}

pub async fn missing_objects_are_not_found(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("nope/missing.ts");
    assert_eq!(kind(s.get(&key).await), Some(ErrorKind::NotFound));
    assert_eq!(kind(s.head(&key).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(s.copy(&key, &fx.key("nope/to")).await),
        Some(ErrorKind::NotFound)
    );
    assert!(!s.exists(&key).await.unwrap());
    let err = s.get(&key).await.unwrap_err().to_string();
    assert!(
        err.contains("missing.ts"),
        "the message names the key: {err}"
    );
    // A prefix of existing objects is not itself an object.
    s.put(&fx.key("dir/file"), "x".into()).await.unwrap();
    assert_eq!(
        kind(s.head(&fx.key("dir")).await),
        Some(ErrorKind::NotFound)
    );
}

pub async fn ranges(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("range.bin");
    let data = pattern(1000, 7);
    s.put(&key, data.clone().into()).await.unwrap();
    let cases = [
        (GetRange::Bounded(0..10), 0..10),
        (GetRange::Bounded(990..2000), 990..1000),
        (GetRange::Bounded(500..501), 500..501),
        (GetRange::From(900), 900..1000),
        (GetRange::Suffix(10), 990..1000),
        (GetRange::Suffix(5000), 0..1000),
    ];
    for (range, expect) in cases {
        let got = s
            .get_opts(&key, GetOptions::range(range.clone()))
            .await
            .unwrap();
        assert_eq!(got.range, expect, "{range}");
        assert_eq!(got.meta.size, 1000, "{range}: meta is the whole object's");
        let body = got.bytes().await.unwrap();
        assert_eq!(
            body,
            data.slice(expect.start as usize..expect.end as usize),
            "{range}"
        );
    }
    for bad in [
        GetRange::From(1000),
        GetRange::Bounded(1000..1010),
        GetRange::Bounded(5..5),
    ] {
        assert_eq!(
            kind(s.get_range(&key, bad.clone()).await),
            Some(ErrorKind::InvalidInput),
            "{bad}"
        );
    }
}

pub async fn streaming_put_and_get(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("stream/large.bin");
    // Larger than a streaming part, so backends that stream through
    // multipart uploads exercise that path.
    let total = ABOVE_STREAM_PART + 17;
    let data = pattern(total, 3);
    let chunks: Vec<crate::Result<Bytes>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let meta = s
        .put(
            &key,
            PutPayload::Stream(futures::stream::iter(chunks).boxed()),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, total as u64);
    let got = s.get(&key).await.unwrap();
    let mut body = got.body;
    let mut read = Vec::with_capacity(total);
    let (mut pieces, mut largest) = (0, 0);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        largest = largest.max(chunk.len());
        read.extend_from_slice(&chunk);
        pieces += 1;
    }
    assert_eq!(read.len(), total);
    assert!(read == data, "streamed content differs");
    // A body handed out whole is not a stream: no piece may hold more than
    // a quarter of a 16 MiB object.
    assert!(
        pieces > 1 && largest <= total / 4,
        "the body came in {pieces} pieces, the largest {largest} bytes of {total}"
    );
}

pub async fn failed_stream_keeps_the_old_object(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("keep/me");
    s.put(&key, "old".into()).await.unwrap();
    // More than a streaming part before the failure, so that on S3 a
    // multipart upload has started and has to be aborted.
    let failing = futures::stream::iter(vec![
        Ok(pattern(1024, 1)),
        Ok(pattern(ABOVE_STREAM_PART, 2)),
        Err(Error::unavailable("client went away", "connection reset")),
    ])
    .boxed();
    let err = s.put(&key, PutPayload::Stream(failing)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(s.get_bytes(&key).await.unwrap(), "old");
    let prefix = fx.key("keep");
    let listed = s.list(Some(&prefix)).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    // A failing first write leaves no object at all.
    let fresh = fx.key("keep/never");
    let failing = futures::stream::iter(vec![
        Ok(pattern(10, 1)),
        Err(Error::unavailable("client went away", "connection reset")),
    ])
    .boxed();
    assert!(s.put(&fresh, PutPayload::Stream(failing)).await.is_err());
    assert_eq!(kind(s.head(&fresh).await), Some(ErrorKind::NotFound));
}

pub async fn readers_never_see_partial_writes(fx: StoreFixture) {
    let store = fx.store.clone();
    let key = fx.key("atomic/segment.m4s");
    let a = Bytes::from(vec![b'a'; 512 * 1024]);
    let b = Bytes::from(vec![b'b'; 256 * 1024]);
    store.put(&key, a.clone().into()).await.unwrap();
    let writer = {
        let (store, key, a, b) = (store.clone(), key.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            for i in 0..20 {
                let body = if i % 2 == 0 { b.clone() } else { a.clone() };
                store.put(&key, body.into()).await.unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, key) = (store.clone(), key.clone());
        readers.push(tokio::spawn(async move {
            for _ in 0..20 {
                let got = store.get_bytes(&key).await.unwrap();
                let all_a = got.len() == 512 * 1024 && got.iter().all(|&c| c == b'a');
                let all_b = got.len() == 256 * 1024 && got.iter().all(|&c| c == b'b');
                assert!(all_a || all_b, "a reader saw a mix of {} bytes", got.len());
            }
        }));
    }
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
}

pub async fn list_by_prefix_in_key_order(fx: StoreFixture) {
    let s = &fx.store;
    for rel in ["l/b/2", "l/a", "l/b/1", "l/c", "lx/d", "l/b/10"] {
        s.put(&fx.key(rel), rel.as_bytes().to_vec().into())
            .await
            .unwrap();
    }
    let names = |metas: Vec<crate::store::ObjectMeta>| -> Vec<String> {
        metas.into_iter().map(|m| m.key.to_string()).collect()
    };
    let expect =
        |rels: &[&str]| -> Vec<String> { rels.iter().map(|r| fx.key(r).to_string()).collect() };
    assert_eq!(
        names(s.list(Some(&fx.key("l"))).await.unwrap()),
        expect(&["l/a", "l/b/1", "l/b/10", "l/b/2", "l/c"])
    );
    assert_eq!(
        names(s.list(Some(&fx.key("l/b"))).await.unwrap()),
        expect(&["l/b/1", "l/b/10", "l/b/2"])
    );
    assert_eq!(
        names(s.list(Some(&fx.key("lx"))).await.unwrap()),
        expect(&["lx/d"])
    );
    assert!(s.list(Some(&fx.key("none"))).await.unwrap().is_empty());
    let sizes: Vec<u64> = s
        .list(Some(&fx.key("l/b")))
        .await
        .unwrap()
        .iter()
        .map(|m| m.size)
        .collect();
    assert_eq!(sizes, [5, 6, 5]);
    let all = match &fx.prefix {
        Some(p) => s.list(Some(p)).await.unwrap(),
        None => s.list(None).await.unwrap(),
    };
    assert_eq!(all.len(), 6);
    assert_eq!(s.delete_prefix(&fx.key("l/b")).await.unwrap(), 3);
    assert_eq!(
        names(s.list(Some(&fx.key("l"))).await.unwrap()),
        expect(&["l/a", "l/c"])
    );
}

pub async fn delete_is_idempotent(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("del/x");
    s.put(&key, "x".into()).await.unwrap();
    s.delete(&key).await.unwrap();
    assert_eq!(kind(s.head(&key).await), Some(ErrorKind::NotFound));
    s.delete(&key).await.unwrap();
    s.delete(&fx.key("del/never")).await.unwrap();
    // The emptied prefix can hold a new object.
    s.put(&key, "again".into()).await.unwrap();
    assert_eq!(s.get_bytes(&key).await.unwrap(), "again");
}

pub async fn copy_replaces_the_target(fx: StoreFixture) {
    let s = &fx.store;
    let (from, to) = (fx.key("cp/from"), fx.key("cp/sub/to"));
    s.put(&from, "source".into()).await.unwrap();
    s.copy(&from, &to).await.unwrap();
    assert_eq!(s.get_bytes(&to).await.unwrap(), "source");
    s.put(&from, "changed".into()).await.unwrap();
    assert_eq!(
        s.get_bytes(&to).await.unwrap(),
        "source",
        "a copy is independent"
    );
    s.copy(&from, &to).await.unwrap();
    assert_eq!(s.get_bytes(&to).await.unwrap(), "changed");
    assert_eq!(s.get_bytes(&from).await.unwrap(), "changed");
}

pub async fn multipart_upload(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("mp/original.mp4");
    let p1 = pattern(MIN_PART_SIZE, 1);
    let p2 = pattern(MIN_PART_SIZE + 11, 2);
    let p3 = pattern(1234, 3);
    let up = s.create_multipart(&key).await.unwrap();
    // Parts may arrive in any order and be re-sent.
    let id3 = s.put_part(&key, &up, 3, p3.clone()).await.unwrap();
    let _stale = s
        .put_part(&key, &up, 1, pattern(MIN_PART_SIZE, 9))
        .await
        .unwrap();
    let id1 = s.put_part(&key, &up, 1, p1.clone()).await.unwrap();
    let id2 = s.put_part(&key, &up, 2, p2.clone()).await.unwrap();
    assert_eq!(
        kind(s.head(&key).await),
        Some(ErrorKind::NotFound),
        "nothing is visible before completion"
    );
    // A resuming client learns what is stored: the latest of each part.
    let listed = s.list_parts(&key, &up).await.unwrap();
    let summary: Vec<(u32, u64)> = listed.iter().map(|p| (p.id.number, p.size)).collect();
    assert_eq!(
        summary,
        vec![
            (1, p1.len() as u64),
            (2, p2.len() as u64),
            (3, p3.len() as u64)
        ]
    );
    assert_eq!(listed[0].id, id1, "the re-sent part's tag");
    let other = fx.key("mp/other.mp4");
    assert_eq!(
        kind(s.list_parts(&other, &up).await),
        Some(ErrorKind::NotFound),
        "an upload to another key"
    );
    let meta = s
        .complete_multipart(&key, &up, vec![id1, id2, id3])
        .await
        .unwrap();
    assert_eq!(
        kind(s.list_parts(&key, &up).await),
        Some(ErrorKind::NotFound),
        "a completed upload has no parts to list"
    );
    let total = p1.len() + p2.len() + p3.len();
    assert_eq!(meta.size, total as u64);
    let got = s.get_bytes(&key).await.unwrap();
    assert_eq!(got.len(), total);
    assert!(got[..p1.len()] == p1[..]);
    assert!(got[p1.len()..p1.len() + p2.len()] == p2[..]);
    assert!(got[p1.len() + p2.len()..] == p3[..]);
    // A range across the part boundary.
    let across = s
        .get_range(
            &key,
            GetRange::Bounded(p1.len() as u64 - 2..p1.len() as u64 + 2),
        )
        .await
        .unwrap();
    assert_eq!(&across[..2], &p1[p1.len() - 2..]);
    assert_eq!(&across[2..], &p2[..2]);
    // Only the completed object remains under the prefix.
    assert_eq!(s.list(Some(&fx.key("mp"))).await.unwrap().len(), 1);
}

pub async fn multipart_rejects_bad_parts(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("mpbad/x");
    let up = s.create_multipart(&key).await.unwrap();
    for number in [0, 10_001] {
        assert_eq!(
            kind(s.put_part(&key, &up, number, pattern(10, 0)).await),
            Some(ErrorKind::InvalidInput),
            "part number {number}"
        );
    }
    let small = s.put_part(&key, &up, 1, pattern(100, 1)).await.unwrap();
    let last = s.put_part(&key, &up, 2, pattern(100, 2)).await.unwrap();
    let err = s
        .complete_multipart(&key, &up, vec![small.clone(), last.clone()])
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "undersized part: {err}"
    );
    assert_eq!(
        kind(s.complete_multipart(&key, &up, vec![]).await),
        Some(ErrorKind::InvalidInput),
        "no parts"
    );
    assert_eq!(kind(s.head(&key).await), Some(ErrorKind::NotFound));
    // A single small part is fine: it is the last.
    let meta = s.complete_multipart(&key, &up, vec![small]).await.unwrap();
    assert_eq!(meta.size, 100);
    // An unknown upload.
    let other = fx.key("mpbad/y");
    let up2 = s.create_multipart(&other).await.unwrap();
    s.abort_multipart(&other, &up2).await.unwrap();
    let err = s
        .put_part(&other, &up2, 1, pattern(10, 0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "aborted upload: {err}");
}

pub async fn multipart_abort_leaves_nothing(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("mpabort/x");
    let up = s.create_multipart(&key).await.unwrap();
    s.put_part(&key, &up, 1, pattern(MIN_PART_SIZE, 1))
        .await
        .unwrap();
    s.abort_multipart(&key, &up).await.unwrap();
    assert_eq!(kind(s.head(&key).await), Some(ErrorKind::NotFound));
    assert!(s.list(Some(&fx.key("mpabort"))).await.unwrap().is_empty());
}

pub async fn keys_with_awkward_characters(fx: StoreFixture) {
    let s = &fx.store;
    let rels = [
        "odd/with space+plus&amp=eq%25.txt",
        "odd/unicodé ファイル.m3u8",
        "odd/.hidden",
        "odd/a..b",
        "odd/semi;colon,comma'quote\"(paren)",
    ];
    for rel in rels {
        let key = fx.key(rel);
        s.put(&key, rel.as_bytes().to_vec().into()).await.unwrap();
        assert_eq!(s.get_bytes(&key).await.unwrap(), rel.as_bytes(), "{rel}");
    }
    let listed = s.list(Some(&fx.key("odd"))).await.unwrap();
    let mut expect: Vec<String> = rels.iter().map(|r| fx.key(r).to_string()).collect();
    expect.sort();
    let got: Vec<String> = listed.into_iter().map(|m| m.key.to_string()).collect();
    assert_eq!(got, expect);
}

pub async fn create_only_and_compare_and_swap(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("cas/state.json");
    let first = s
        .put_opts(&key, "v1".into(), PutOptions::create())
        .await
        .unwrap();
    let again = s.put_opts(&key, "other".into(), PutOptions::create()).await;
    assert_eq!(kind(again), Some(ErrorKind::AlreadyExists));
    assert_eq!(s.get_bytes(&key).await.unwrap(), "v1");
    // The etag a put returns is the one head reports and IfMatch takes.
    let etag = s.head(&key).await.unwrap().etag.expect("an etag");
    assert_eq!(
        first.etag.as_deref().map(|e| e.trim_matches('"')),
        Some(etag.trim_matches('"'))
    );
    let second = s
        .put_opts(&key, "v2".into(), PutOptions::if_match(etag.clone()))
        .await
        .unwrap();
    assert_ne!(second.etag, first.etag);
    let stale = s
        .put_opts(&key, "v3".into(), PutOptions::if_match(etag))
        .await;
    assert_eq!(kind(stale), Some(ErrorKind::Precondition), "a stale etag");
    assert_eq!(s.get_bytes(&key).await.unwrap(), "v2");
    let missing = s
        .put_opts(
            &fx.key("cas/missing"),
            "x".into(),
            PutOptions::if_match("\"nope\""),
        )
        .await;
    assert_eq!(
        kind(missing),
        Some(ErrorKind::Precondition),
        "no object to match"
    );
    assert_eq!(
        kind(s.head(&fx.key("cas/missing")).await),
        Some(ErrorKind::NotFound)
    );
    // A streamed create of a taken key is refused too, and changes nothing.
    let stream = futures::stream::iter(vec![Ok(pattern(1000, 1)), Ok(pattern(1000, 2))]).boxed();
    let streamed = s
        .put_opts(&key, PutPayload::Stream(stream), PutOptions::create())
        .await;
    assert_eq!(kind(streamed), Some(ErrorKind::AlreadyExists));
    assert_eq!(s.get_bytes(&key).await.unwrap(), "v2");
}

pub async fn concurrent_creates_have_one_winner(fx: StoreFixture) {
    let key = fx.key("race/create");
    race_conditional_puts(&fx, &key, PutOptions::create(), ErrorKind::AlreadyExists).await;
}

pub async fn concurrent_compare_and_swaps_have_one_winner(fx: StoreFixture) {
    let key = fx.key("race/cas");
    let etag = fx.store.put(&key, "base".into()).await.unwrap();
    let etag = etag.etag.expect("an etag");
    race_conditional_puts(
        &fx,
        &key,
        PutOptions::if_match(etag),
        ErrorKind::Precondition,
    )
    .await;
}

/// Eight writers put to `key` at once under the same condition: on a backend
/// with atomic conditions exactly one wins, every loser fails with
/// `loser`, and the object is a winner's bytes.
async fn race_conditional_puts(
    fx: &StoreFixture,
    key: &ObjectKey,
    opts: PutOptions,
    loser: ErrorKind,
) {
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (s, key, opts) = (fx.store.clone(), key.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            let r = s.put_opts(&key, vec![i; 100].into(), opts).await;
            (i, r.map(|_| ()).map_err(|e| e.kind()))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(())) => winners.push(i),
            (_, Err(kind)) => assert_eq!(kind, loser),
        }
    }
    if fx.atomic_conditions {
        assert_eq!(
            winners.len(),
            1,
            "exactly one conditional put wins: {winners:?}"
        );
    }
    let got = fx.store.get_bytes(key).await.unwrap();
    assert!(
        winners.iter().any(|&i| got == vec![i; 100]),
        "the object is a winner's: {winners:?}"
    );
}

pub async fn content_type_and_cache_control_round_trip(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("attrs/master.m3u8");
    let opts = PutOptions {
        content_type: Some("application/vnd.apple.mpegurl".into()),
        cache_control: Some("public, max-age=2".into()),
        ..PutOptions::default()
    };
    let put = s
        .put_opts(&key, "#EXTM3U\n".into(), opts.clone())
        .await
        .unwrap();
    assert_eq!(put.content_type, opts.content_type);
    let head = s.head(&key).await.unwrap();
    assert_eq!(head.content_type, opts.content_type);
    assert_eq!(head.cache_control, opts.cache_control);
    let got = s.get(&key).await.unwrap();
    assert_eq!(got.meta.content_type, opts.content_type);
    assert_eq!(got.meta.cache_control, opts.cache_control);
    // A copy keeps them.
    let copy = fx.key("attrs/copy.m3u8");
    s.copy(&key, &copy).await.unwrap();
    assert_eq!(s.head(&copy).await.unwrap().content_type, opts.content_type);
    // A streamed put stores them too.
    let seg = fx.key("attrs/seg.m4s");
    let segment = PutOptions {
        content_type: Some("video/iso.segment".into()),
        cache_control: Some("public, max-age=31536000, immutable".into()),
        ..PutOptions::default()
    };
    let stream = futures::stream::iter(vec![Ok(pattern(100, 1)), Ok(pattern(100, 2))]).boxed();
    s.put_opts(&seg, PutPayload::Stream(stream), segment.clone())
        .await
        .unwrap();
    let head = s.head(&seg).await.unwrap();
    assert_eq!(
        (head.content_type, head.cache_control),
        (segment.content_type, segment.cache_control)
    );
    // A replacement without attributes has none: they belong to a version.
    s.put(&key, "#EXTM3U\n#2\n".into()).await.unwrap();
    let head = s.head(&key).await.unwrap();
    assert!(head
        .content_type
        .is_none_or(|t| t != "application/vnd.apple.mpegurl"));
    assert_eq!(head.cache_control, None);
    // Attributes travel as HTTP headers: no line breaks.
    let bad = PutOptions {
        content_type: Some("text/plain\r\nX-Evil: 1".into()),
        ..PutOptions::default()
    };
    assert_eq!(
        kind(s.put_opts(&key, "x".into(), bad).await),
        Some(ErrorKind::InvalidInput)
    );
}

pub async fn if_none_match_is_not_modified(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("cond/seg.ts");
    let meta = s.put(&key, pattern(1000, 4).into()).await.unwrap();
    let etag = s.head(&key).await.unwrap().etag.expect("an etag");
    let conditional = |tag: &str, range: Option<GetRange>| GetOptions {
        range,
        if_none_match: Some(tag.to_owned()),
    };
    let err = s
        .get_opts(&key, conditional(&etag, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotModified, "{err}");
    assert!(err.to_string().contains("seg.ts"), "{err}");
    assert_eq!(
        kind(
            s.get_opts(&key, conditional(&etag, Some(GetRange::Bounded(0..10))))
                .await
        ),
        Some(ErrorKind::NotModified),
        "with a range"
    );
    let other = s
        .get_opts(&key, conditional("\"something-else\"", None))
        .await
        .unwrap();
    assert_eq!(other.bytes().await.unwrap(), pattern(1000, 4));
    // After a change the old etag no longer matches.
    s.put(&key, pattern(1000, 5).into()).await.unwrap();
    let fresh = s.get_opts(&key, conditional(&etag, None)).await.unwrap();
    assert_ne!(fresh.meta.etag, meta.etag);
    assert_eq!(fresh.bytes().await.unwrap(), pattern(1000, 5));
    assert_eq!(
        kind(
            s.get_opts(&fx.key("cond/missing"), conditional(&etag, None))
                .await
        ),
        Some(ErrorKind::NotFound)
    );
}

pub async fn list_stream_starts_after_a_cursor(fx: StoreFixture) {
    let s = &fx.store;
    // `-` sorts before `/`: a key `o/a-c` comes before everything under
    // `o/a/`, also on a filesystem that holds `o/a` as a directory.
    let rels = ["o/a-c", "o/a/b", "o/a/c/d", "o/a0", "o/b", "o/c/x"];
    for rel in rels.iter().rev() {
        s.put(&fx.key(rel), "x".into()).await.unwrap();
    }
    s.put(&fx.key("o-sibling"), "x".into()).await.unwrap();
    let names = |metas: Vec<crate::store::ObjectMeta>| -> Vec<String> {
        metas.into_iter().map(|m| m.key.to_string()).collect()
    };
    let expect =
        |rels: &[&str]| -> Vec<String> { rels.iter().map(|r| fx.key(r).to_string()).collect() };
    let prefix = fx.key("o");
    let all: Vec<_> = s
        .list_stream(Some(&prefix), None)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(names(all), expect(&rels));
    for (after, rest) in [
        ("o/a-c", &rels[1..]),
        ("o/a/b", &rels[2..]),
        ("o/a/bz", &rels[2..]),
        ("o/a", &rels[..]),
        ("o/a0", &rels[4..]),
        ("o/c/x", &[][..]),
        ("o/zzz", &[][..]),
        ("a", &rels[..]),
    ] {
        let cursor = fx.key(after);
        let got: Vec<_> = s
            .list_stream(Some(&prefix), Some(&cursor))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(names(got), expect(rest), "after {after}");
    }
    // Resuming page by page from the last key seen gives every key once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page: Vec<_> = s
            .list_stream(Some(&prefix), cursor.as_ref())
            .take(2)
            .try_collect()
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.key.clone());
        seen.extend(names(page));
    }
    assert_eq!(seen, expect(&rels));
}

pub async fn list_of_a_prefix_that_is_an_object(fx: StoreFixture) {
    let s = &fx.store;
    s.put(&fx.key("po/x"), "object".into()).await.unwrap();
    s.put(&fx.key("po/xy"), "sibling".into()).await.unwrap();
    // `po/x` is an object, not a directory of objects: nothing is under it,
    // and neither it nor `po/xy` is listed.
    assert!(s.list(Some(&fx.key("po/x"))).await.unwrap().is_empty());
    assert_eq!(s.list(Some(&fx.key("po"))).await.unwrap().len(), 2);
}

pub async fn a_key_beside_its_own_prefix(fx: StoreFixture) {
    let s = &fx.store;
    let (a, ab) = (fx.key("nest/a"), fx.key("nest/a/b"));
    s.put(&a, "a".into()).await.unwrap();
    match s.put(&ab, "ab".into()).await {
        Ok(_) => {
            // Object stores proper hold both.
            assert_eq!(s.get_bytes(&ab).await.unwrap(), "ab");
            assert_eq!(s.list(Some(&fx.key("nest"))).await.unwrap().len(), 2);
        }
        Err(e) => {
            // The filesystem cannot, and says so.
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert_eq!(kind(s.head(&ab).await), Some(ErrorKind::NotFound));
        }
    }
    assert_eq!(s.get_bytes(&a).await.unwrap(), "a");
    // And the other way round: a key that is a prefix of an object.
    let (c, cd) = (fx.key("nest2/c"), fx.key("nest2/c/d"));
    s.put(&cd, "cd".into()).await.unwrap();
    match s.put(&c, "c".into()).await {
        Ok(_) => assert_eq!(s.get_bytes(&c).await.unwrap(), "c"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
    }
    assert_eq!(s.get_bytes(&cd).await.unwrap(), "cd");
}

pub async fn delete_many_and_delete_prefix(fx: StoreFixture) {
    let s = &fx.store;
    let keys: Vec<_> = (0..5).map(|i| fx.key(&format!("dm/{i}"))).collect();
    for k in &keys {
        s.put(k, "x".into()).await.unwrap();
    }
    s.put(&fx.key("dmx/keep"), "x".into()).await.unwrap();
    let some = [keys[0].clone(), fx.key("dm/missing"), keys[1].clone()];
    s.delete_many(&some).await.unwrap();
    let left: Vec<String> = s
        .list(Some(&fx.key("dm")))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(s.delete_prefix(&fx.key("dm")).await.unwrap(), 3);
    assert!(s.list(Some(&fx.key("dm"))).await.unwrap().is_empty());
    assert!(s.exists(&fx.key("dmx/keep")).await.unwrap());
    s.delete_many(&[]).await.unwrap();
}

pub async fn a_cancelled_put_leaves_the_old_object(fx: StoreFixture) {
    let s = fx.store.clone();
    let key = fx.key("cancel/x");
    s.put(&key, "old".into()).await.unwrap();
    // A stream that delivers more than a streaming part and then stalls,
    // signalling once it has been asked for more.
    let (asked_tx, asked_rx) = tokio::sync::oneshot::channel::<()>();
    let mut asked_tx = Some(asked_tx);
    let body = futures::stream::iter(vec![Ok(pattern(ABOVE_STREAM_PART, 1))])
        .chain(futures::stream::poll_fn(move |_| {
            if let Some(tx) = asked_tx.take() {
                let _ = tx.send(());
            }
            std::task::Poll::Pending
        }))
        .boxed();
    let put = {
        let (s, key) = (s.clone(), key.clone());
        tokio::spawn(async move { s.put(&key, PutPayload::Stream(body)).await })
    };
    tokio::time::timeout(super::WAIT, asked_rx)
        .await
        .expect("the put never read past the first chunk")
        .unwrap();
    put.abort();
    assert!(put.await.unwrap_err().is_cancelled());
    assert_eq!(s.get_bytes(&key).await.unwrap(), "old");
    assert_eq!(s.list(Some(&fx.key("cancel"))).await.unwrap().len(), 1);
}

pub async fn multipart_refuses_stale_misordered_and_reused(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("mpneg/x");
    let up = s.create_multipart(&key).await.unwrap();
    let stale = s
        .put_part(&key, &up, 1, pattern(MIN_PART_SIZE, 1))
        .await
        .unwrap();
    let p1 = s
        .put_part(&key, &up, 1, pattern(MIN_PART_SIZE, 2))
        .await
        .unwrap();
    let p2 = s.put_part(&key, &up, 2, pattern(10, 3)).await.unwrap();
    assert_ne!(stale.etag, p1.etag, "different content, different etag");
    assert_eq!(
        kind(
            s.complete_multipart(&key, &up, vec![stale, p2.clone()])
                .await
        ),
        Some(ErrorKind::InvalidInput),
        "a stale etag"
    );
    assert_eq!(
        kind(
            s.complete_multipart(&key, &up, vec![p2.clone(), p1.clone()])
                .await
        ),
        Some(ErrorKind::InvalidInput),
        "parts out of order"
    );
    assert_eq!(
        kind(
            s.complete_multipart(&key, &up, vec![p1.clone(), p1.clone(), p2.clone()])
                .await
        ),
        Some(ErrorKind::InvalidInput),
        "a part twice"
    );
    // The upload id with another key is no upload of that key, and does
    // not disturb the real one.
    let other = fx.key("mpneg/other");
    assert_eq!(
        kind(s.put_part(&other, &up, 3, pattern(10, 4)).await),
        Some(ErrorKind::NotFound),
        "put_part with another key"
    );
    assert_eq!(
        kind(
            s.complete_multipart(&other, &up, vec![p1.clone(), p2.clone()])
                .await
        ),
        Some(ErrorKind::NotFound),
        "complete with another key"
    );
    s.abort_multipart(&other, &up).await.unwrap();
    assert_eq!(kind(s.head(&other).await), Some(ErrorKind::NotFound));
    let meta = s
        .complete_multipart(&key, &up, vec![p1.clone(), p2.clone()])
        .await
        .unwrap();
    assert_eq!(meta.size, MIN_PART_SIZE as u64 + 10);
    assert_eq!(
        s.get_range(&key, GetRange::Suffix(10)).await.unwrap(),
        pattern(10, 3)
    );
    // Completing twice: the upload is gone.
    assert_eq!(
        kind(s.complete_multipart(&key, &up, vec![p1, p2]).await),
        Some(ErrorKind::NotFound),
        "completing twice"
    );
    // Completing after an abort.
    let up2 = s.create_multipart(&key).await.unwrap();
    let q1 = s.put_part(&key, &up2, 1, pattern(10, 5)).await.unwrap();
    s.abort_multipart(&key, &up2).await.unwrap();
    assert_eq!(
        kind(s.complete_multipart(&key, &up2, vec![q1]).await),
        Some(ErrorKind::NotFound),
        "completing after an abort"
    );
    assert_eq!(
        s.get_range(&key, GetRange::Suffix(10)).await.unwrap(),
        pattern(10, 3)
    );
}

pub async fn concurrent_resends_of_a_part_keep_one(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("mpresend/x");
    let up = s.create_multipart(&key).await.unwrap();
    let (a, b) = (pattern(300_000, 1), pattern(300_000, 2));
    let (ra, rb) = tokio::join!(
        s.put_part(&key, &up, 1, a.clone()),
        s.put_part(&key, &up, 1, b.clone())
    );
    let (pa, pb) = (ra.unwrap(), rb.unwrap());
    // Whichever landed last is the part; completing with it works and
    // yields exactly its bytes. Neither send deleted the other's part
    // without a trace.
    let (meta, data) = match s.complete_multipart(&key, &up, vec![pa.clone()]).await {
        Ok(meta) => (meta, a),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let meta = s
                .complete_multipart(&key, &up, vec![pb])
                .await
                .expect("the later send completes");
            (meta, b)
        }
    };
    assert_eq!(meta.size, 300_000);
    assert_eq!(s.get_bytes(&key).await.unwrap(), data);
}

pub async fn presigned_urls_are_bound(fx: StoreFixture) {
    let s = &fx.store;
    let Some(signer) = s.signer() else {
        return;
    };
    let http = reqwest::Client::new();
    let ttl = Duration::from_secs(300);
    let key = fx.key("presigned/upload file.bin");
    let body = pattern(70_000, 5);
    let put = signer
        .sign(
            &SignRequest::put(key.clone(), ttl)
                .content_type("video/mp4")
                .content_length(body.len() as u64),
        )
        .await
        .unwrap();
    assert_eq!(put.method, "PUT");
    let send = |req: &crate::store::sign::SignedRequest, body: Bytes, ct: &str| {
        let mut r = http.put(&req.url).body(body);
        for (name, value) in &req.headers {
            if name.eq_ignore_ascii_case("content-type") {
                continue;
            }
            if !name.eq_ignore_ascii_case("content-length") {
                r = r.header(name, value);
            }
        }
        r.header("content-type", ct).send()
    };
    // Another type, or a larger body, is refused by the server.
    let wrong_type = send(&put, body.clone(), "text/html").await.unwrap();
    assert!(
        wrong_type.status().is_client_error(),
        "another type: {}",
        wrong_type.status()
    );
    // The server may refuse by answering 4xx or by closing the connection
    // before it has read the body; either way nothing is stored (below).
    if let Ok(larger) = send(&put, pattern(70_001, 5), "video/mp4").await {
        assert!(
            larger.status().is_client_error(),
            "a larger body: {}",
            larger.status()
        );
    }
    assert_eq!(kind(s.head(&key).await), Some(ErrorKind::NotFound));
    let ok = send(&put, body.clone(), "video/mp4").await.unwrap();
    assert!(ok.status().is_success(), "presigned PUT: {}", ok.status());
    assert_eq!(s.get_bytes(&key).await.unwrap(), body);
    assert_eq!(
        s.head(&key).await.unwrap().content_type.as_deref(),
        Some("video/mp4")
    );

    let get = signer
        .sign(&SignRequest::get(key.clone(), ttl))
        .await
        .unwrap();
    let got = http.get(&get.url).send().await.unwrap();
    assert!(got.status().is_success(), "presigned GET: {}", got.status());
    assert_eq!(got.bytes().await.unwrap(), body);
    // A tampered URL is refused.
    let tampered = get.url.replace("presigned", "presignee");
    let denied = http.get(&tampered).send().await.unwrap();
    assert!(
        denied.status().is_client_error(),
        "tampered: {}",
        denied.status()
    );
    assert_eq!(
        kind(
            signer
                .sign(&SignRequest::get(
                    key.clone(),
                    Duration::from_secs(8 * 24 * 3600)
                ))
                .await
        ),
        Some(ErrorKind::InvalidInput),
        "expiry beyond seven days"
    );

    // A part of a multipart upload, uploaded by a client holding a URL.
    let mp_key = fx.key("presigned/parts.bin");
    let up = s.create_multipart(&mp_key).await.unwrap();
    let part_body = pattern(1000, 6);
    let part = signer
        .sign(&SignRequest {
            method: SignMethod::UploadPart {
                upload: up.clone(),
                number: 1,
            },
            key: mp_key.clone(),
            expires_in: ttl,
            content_type: None,
            content_length: Some(part_body.len() as u64),
        })
        .await
        .unwrap();
    let sent = http
        .put(&part.url)
        .body(part_body.clone())
        .send()
        .await
        .unwrap();
    assert!(
        sent.status().is_success(),
        "presigned part: {}",
        sent.status()
    );
    let etag = sent
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("the part's etag")
        .to_owned();
    s.complete_multipart(&mp_key, &up, vec![PartId { number: 1, etag }])
        .await
        .unwrap();
    assert_eq!(s.get_bytes(&mp_key).await.unwrap(), part_body);

    // Signed on a clock an hour behind, a five-minute URL has expired.
    if let Some(at) = &fx.signer_at {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        clock.set_now(
            crate::SystemClock::new()
                .now()
                .saturating_sub(Duration::from_secs(3600)),
        );
        let past = at(clock);
        let expired = past
            .sign(&SignRequest::get(key.clone(), ttl))
            .await
            .unwrap();
        let refused = http.get(&expired.url).send().await.unwrap();
        assert!(
            refused.status().is_client_error(),
            "an expired URL: {}",
            refused.status()
        );
        let fresh = at(Arc::new(crate::SystemClock::new()));
        let fresh = fresh.sign(&SignRequest::get(key, ttl)).await.unwrap();
        let ok = http.get(&fresh.url).send().await.unwrap();
        assert!(ok.status().is_success(), "a fresh URL: {}", ok.status());
    }
}
