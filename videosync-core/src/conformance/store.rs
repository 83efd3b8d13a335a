//! The [`crate::ObjectStore`] conformance suite.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::StoreFixture;
use crate::store::{GetRange, PresignMethod, PutPayload, MIN_PART_SIZE};
use crate::{Error, ErrorKind, ObjectStoreExt};

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
            .get_opts(
                &key,
                crate::store::GetOptions {
                    range: Some(range.clone()),
                },
            )
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
    // Larger than a multipart part, so backends that stream through
    // multipart uploads exercise that path.
    let total = MIN_PART_SIZE + 3 * 1024 * 1024 + 17;
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
    let mut pieces = 0;
    while let Some(chunk) = body.next().await {
        read.extend_from_slice(&chunk.unwrap());
        pieces += 1;
    }
    assert_eq!(read.len(), total);
    assert!(read == data, "streamed content differs");
    assert!(pieces >= 1);
}

pub async fn failed_stream_keeps_the_old_object(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("keep/me");
    s.put(&key, "old".into()).await.unwrap();
    let failing = futures::stream::iter(vec![
        Ok(pattern(1024, 1)),
        Ok(pattern(MIN_PART_SIZE, 2)),
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
    let meta = s
        .complete_multipart(&key, &up, vec![id1, id2, id3])
        .await
        .unwrap();
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

pub async fn presign_round_trip_over_http(fx: StoreFixture) {
    let s = &fx.store;
    let key = fx.key("presigned/upload file.bin");
    let ttl = Duration::from_secs(300);
    let put_url = match s.presign(PresignMethod::Put, &key, ttl).await {
        Ok(url) => url,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::NotSupported, "{e}");
            assert_eq!(
                kind(s.presign(PresignMethod::Get, &key, ttl).await),
                Some(ErrorKind::NotSupported)
            );
            return;
        }
    };
    let http = reqwest::Client::new();
    let body = pattern(70_000, 5);
    let put = http.put(&put_url).body(body.clone()).send().await.unwrap();
    assert!(put.status().is_success(), "presigned PUT: {}", put.status());
    assert_eq!(s.get_bytes(&key).await.unwrap(), body);
    let get_url = s.presign(PresignMethod::Get, &key, ttl).await.unwrap();
    let got = http.get(&get_url).send().await.unwrap();
    assert!(got.status().is_success(), "presigned GET: {}", got.status());
    assert_eq!(got.bytes().await.unwrap(), body);
    // A tampered URL is refused.
    let tampered = get_url.replace("presigned", "presignee");
    let denied = http.get(&tampered).send().await.unwrap();
    assert!(
        denied.status().is_client_error(),
        "tampered: {}",
        denied.status()
    );
    assert_eq!(
        kind(
            s.presign(PresignMethod::Get, &key, Duration::from_secs(8 * 24 * 3600))
                .await
        ),
        Some(ErrorKind::InvalidInput),
        "expiry beyond seven days"
    );
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
