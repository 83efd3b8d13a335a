//! The [`crate::uploads::UploadSessions`] conformance suite.
//!
//! Sizes are relative to the fixture's part size, so the cases cross part
//! boundaries whatever it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{UploadsFixture, UploadsInstance, START, WAIT};
use crate::store::ByteStream;
use crate::uploads::{NewUpload, UploadId, UploadState};
use crate::{Clock, Error, ErrorKind, ManualClock, ObjectStoreExt};

fn kind<T>(r: crate::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

/// `len` pseudo-random bytes from `seed` (xorshift), so that a misplaced
/// chunk never matches by accident.
pub fn source(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// `data` as a stream of `chunk`-byte pieces (no copies).
pub fn chunked(data: Bytes, chunk: usize) -> ByteStream {
    let chunk = chunk.max(1);
    let n = data.len().div_ceil(chunk);
    futures::stream::iter((0..n).map(move |i| {
        let end = ((i + 1) * chunk).min(data.len());
        Ok(data.slice(i * chunk..end))
    }))
    .boxed()
}

async fn open(fx: &UploadsFixture) -> (Arc<ManualClock>, UploadsInstance) {
    let clock = Arc::new(ManualClock::new(START));
    let inst = (fx.make)(clock.clone()).await;
    (clock, inst)
}

async fn staging_objects(fx: &UploadsFixture, id: &UploadId) -> usize {
    let prefix = fx.staging.join(id.as_str()).unwrap();
    fx.store.list(Some(&prefix)).await.unwrap().len()
}

fn same(got: &Bytes, want: &Bytes, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let first_diff = got.iter().zip(want.iter()).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "{what}: first differing byte");
}

pub async fn round_trip_at_every_chunk_size(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let part = fx.part_size;
    let len = 3 * part + 12_345;
    let data = source(len, 1);
    let key = fx.key("rt/video.mp4");
    let info = u
        .create(
            NewUpload::new(key.clone())
                .total(len as u64)
                .meta("filename", "video.mp4"),
        )
        .await
        .unwrap();
    assert_eq!(
        (info.offset, info.total, info.state),
        (0, Some(len as u64), UploadState::Open)
    );
    assert_eq!(
        info.metadata.get("filename").map(String::as_str),
        Some("video.mp4")
    );
    assert_eq!(info.key, key);
    // (bytes in this append, chunk size inside its body)
    let mut plan: Vec<(usize, usize)> = vec![(1, 1); 40]; // more appends than tail segments
    plan.extend([
        (4096, 1),
        (70_000, 7),
        (part - 1000, 65_536),  // crosses the first part boundary
        (part + 17, part + 17), // one chunk larger than a part
        (1, 1),
    ]);
    let mut at = 0usize;
    for (n, chunk) in plan {
        let body = chunked(data.slice(at..at + n), chunk);
        let offset = u.append(&info.id, at as u64, body).await.unwrap();
        at += n;
        assert_eq!(offset, at as u64);
        assert_eq!(u.get(&info.id).await.unwrap().offset, at as u64);
    }
    let rest = chunked(data.slice(at..), 1024 * 1024);
    assert_eq!(
        u.append(&info.id, at as u64, rest).await.unwrap(),
        len as u64
    );
    // Nothing is visible before finishing.
    assert_eq!(kind(fx.store.head(&key).await), Some(ErrorKind::NotFound));
    let meta = u.finish(&info.id).await.unwrap();
    assert_eq!((meta.key.clone(), meta.size), (key.clone(), len as u64));
    same(
        &fx.store.get_bytes(&key).await.unwrap(),
        &data,
        "finished object",
    );
    let done = u.get(&info.id).await.unwrap();
    assert_eq!(
        (done.state, done.offset),
        (UploadState::Finished, len as u64)
    );
    assert_eq!(staging_objects(&fx, &info.id).await, 0);

    // Uploads shorter than a part, and empty ones, work too.
    for n in [0usize, 1, 1000] {
        let key = fx.key(&format!("rt/small-{n}"));
        let small = source(n, 2);
        let info = u
            .create(NewUpload::new(key.clone()).total(n as u64))
            .await
            .unwrap();
        if n > 0 {
            u.append(&info.id, 0, chunked(small.clone(), 100))
                .await
                .unwrap();
        }
        assert_eq!(u.finish(&info.id).await.unwrap().size, n as u64);
        same(
            &fx.store.get_bytes(&key).await.unwrap(),
            &small,
            "small object",
        );
    }
}

pub async fn wrong_offsets_are_conflicts(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let info = u
        .create(NewUpload::new(fx.key("off/a")).total(100))
        .await
        .unwrap();
    u.append(&info.id, 0, chunked(source(10, 3), 4))
        .await
        .unwrap();
    for at in [0u64, 5, 11, 100] {
        let err = u
            .append(&info.id, at, chunked(source(5, 4), 5))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("10") && msg.contains(&at.to_string()),
            "names both offsets: {msg}"
        );
    }
    assert_eq!(u.get(&info.id).await.unwrap().offset, 10);
}

pub async fn bytes_past_the_total_are_invalid(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let key = fx.key("over/a");
    let info = u
        .create(NewUpload::new(key.clone()).total(10))
        .await
        .unwrap();
    let err = u
        .append(&info.id, 0, chunked(source(11, 5), 3))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(u.get(&info.id).await.unwrap().offset, 0, "nothing stored");
    let data = source(10, 6);
    u.append(&info.id, 0, chunked(data.slice(..6), 6))
        .await
        .unwrap();
    let err = u
        .append(&info.id, 6, chunked(source(5, 7), 5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(u.get(&info.id).await.unwrap().offset, 6);
    u.append(&info.id, 6, chunked(data.slice(6..), 1))
        .await
        .unwrap();
    u.finish(&info.id).await.unwrap();
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

pub async fn deferred_length(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let key = fx.key("defer/a");
    let data = source(fx.part_size + 300, 8);
    let info = u.create(NewUpload::new(key.clone())).await.unwrap();
    assert_eq!(info.total, None);
    u.append(
        &info.id,
        0,
        chunked(data.slice(..fx.part_size + 100), 65_536),
    )
    .await
    .unwrap();
    let err = u.finish(&info.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = u.declare_length(&info.id, 50).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let total = data.len() as u64;
    assert_eq!(
        u.declare_length(&info.id, total).await.unwrap().total,
        Some(total)
    );
    assert_eq!(
        u.declare_length(&info.id, total).await.unwrap().total,
        Some(total)
    );
    let err = u.declare_length(&info.id, total + 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // The declared length now bounds appends.
    let at = fx.part_size as u64 + 100;
    let err = u
        .append(&info.id, at, chunked(source(201, 9), 201))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    u.append(&info.id, at, chunked(data.slice(fx.part_size + 100..), 7))
        .await
        .unwrap();
    assert_eq!(u.finish(&info.id).await.unwrap().size, total);
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

pub async fn finish_needs_every_byte_and_is_idempotent(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let key = fx.key("fin/a");
    let data = source(fx.part_size + 10, 10);
    let info = u
        .create(NewUpload::new(key.clone()).total(data.len() as u64))
        .await
        .unwrap();
    u.append(&info.id, 0, chunked(data.slice(..100), 100))
        .await
        .unwrap();
    let err = u.finish(&info.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(kind(fx.store.head(&key).await), Some(ErrorKind::NotFound));
    assert_eq!(u.get(&info.id).await.unwrap().state, UploadState::Open);
    u.append(&info.id, 100, chunked(data.slice(100..), 1 << 20))
        .await
        .unwrap();
    let first = u.finish(&info.id).await.unwrap();
    let again = u.finish(&info.id).await.unwrap();
    assert_eq!(first, again);
    // Another instance answers the same.
    let other = (fx.make)(Arc::new(ManualClock::new(START))).await;
    assert_eq!(other.uploads.finish(&info.id).await.unwrap(), first);
    let err = u
        .append(&info.id, data.len() as u64, chunked(source(1, 1), 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(kind(u.abort(&info.id).await), Some(ErrorKind::Conflict));
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

pub async fn aborted_uploads_are_gone(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let key = fx.key("abort/a");
    let info = u
        .create(NewUpload::new(key.clone()).total(10 * 1024 * 1024 * 1024))
        .await
        .unwrap();
    // A full part and a tail.
    let n = fx.part_size + 1000;
    u.append(&info.id, 0, chunked(source(n, 11), 1 << 20))
        .await
        .unwrap();
    assert!(
        staging_objects(&fx, &info.id).await > 0,
        "the tail is stored"
    );
    u.abort(&info.id).await.unwrap();
    assert_eq!(
        staging_objects(&fx, &info.id).await,
        0,
        "the tail is removed"
    );
    let err = u
        .append(&info.id, n as u64, chunked(source(1, 1), 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(kind(u.finish(&info.id).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(u.declare_length(&info.id, 5).await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(u.get(&info.id).await.unwrap().state, UploadState::Aborted);
    u.abort(&info.id).await.unwrap();
    assert_eq!(kind(fx.store.head(&key).await), Some(ErrorKind::NotFound));
}

pub async fn expiry_removes_state_and_bytes(fx: UploadsFixture) {
    let (clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let hour = Duration::from_secs(3600);
    let key = fx.key("exp/a");
    let info = u
        .create(NewUpload::new(key.clone()).ttl(hour))
        .await
        .unwrap();
    assert_eq!(info.expires_at, START.saturating_add(hour));
    let n = fx.part_size + 10;
    u.append(&info.id, 0, chunked(source(n, 12), 1 << 20))
        .await
        .unwrap();
    // A finished upload past its expiry is forgotten; its object stays.
    let kept = fx.key("exp/kept");
    let done = u
        .create(NewUpload::new(kept.clone()).total(3).ttl(hour))
        .await
        .unwrap();
    u.append(&done.id, 0, chunked(Bytes::from_static(b"abc"), 1))
        .await
        .unwrap();
    u.finish(&done.id).await.unwrap();

    clock.advance(Duration::from_secs(1800));
    assert_eq!(u.expire(clock.now()).await.unwrap(), 0);
    // Appending moves the expiry.
    u.append(&info.id, n as u64, chunked(source(10, 13), 5))
        .await
        .unwrap();
    let moved = u.get(&info.id).await.unwrap().expires_at;
    assert_eq!(moved, clock.now().saturating_add(hour));
    clock.advance(Duration::from_secs(3599));
    assert_eq!(u.expire(clock.now()).await.unwrap(), 0);
    assert_eq!(u.get(&info.id).await.unwrap().state, UploadState::Open);
    clock.advance(Duration::from_secs(1));
    // Expired but not swept yet: no more appends.
    let err = u
        .append(&info.id, n as u64 + 10, chunked(source(1, 1), 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(u.expire(clock.now()).await.unwrap(), 1);
    assert_eq!(kind(u.get(&info.id).await), Some(ErrorKind::NotFound));
    assert_eq!(kind(u.get(&done.id).await), Some(ErrorKind::NotFound));
    assert_eq!(staging_objects(&fx, &info.id).await, 0);
    assert_eq!(kind(fx.store.head(&key).await), Some(ErrorKind::NotFound));
    assert_eq!(fx.store.get_bytes(&kept).await.unwrap(), "abc");
    assert_eq!(u.expire(clock.now()).await.unwrap(), 0);
}

pub async fn instances_continue_each_other(fx: UploadsFixture) {
    let (_clock, a) = open(&fx).await;
    let (_clock, b) = open(&fx).await;
    let key = fx.key("two/a");
    let data = source(2 * fx.part_size + 77, 14);
    let info = a
        .uploads
        .create(NewUpload::new(key.clone()).total(data.len() as u64))
        .await
        .unwrap();
    let first = fx.part_size + 100;
    a.uploads
        .append(&info.id, 0, chunked(data.slice(..first), 65_536))
        .await
        .unwrap();
    let seen = b.uploads.get(&info.id).await.unwrap();
    assert_eq!(seen.offset, first as u64);
    let second = first + 5000;
    b.uploads
        .append(
            &info.id,
            seen.offset,
            chunked(data.slice(first..second), 999),
        )
        .await
        .unwrap();
    a.uploads
        .append(
            &info.id,
            second as u64,
            chunked(data.slice(second..), 1 << 20),
        )
        .await
        .unwrap();
    b.uploads.finish(&info.id).await.unwrap();
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

/// A body whose chunks the test hands over one by one; it says when it was
/// first asked for a chunk (so the append holds the upload).
fn gated() -> (
    tokio::sync::mpsc::Sender<crate::Result<Bytes>>,
    tokio::sync::oneshot::Receiver<()>,
    ByteStream,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<crate::Result<Bytes>>(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let started = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let body = futures::stream::unfold(rx, move |mut rx| {
        if let Some(tx) = started.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async move { rx.recv().await.map(|item| (item, rx)) }
    })
    .boxed();
    (tx, started_rx, body)
}

pub async fn concurrent_appends_have_one_winner(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let (_clock2, other) = open(&fx).await;
    let key = fx.key("race/a");
    let len = fx.part_size + 500;
    let info = inst
        .uploads
        .create(NewUpload::new(key.clone()).total(len as u64))
        .await
        .unwrap();
    // While one append holds the upload, another is refused.
    let (tx, started, body) = gated();
    let data = source(len, 15);
    let holder = {
        let u = inst.uploads.clone();
        let id = info.id.clone();
        tokio::spawn(async move { u.append(&id, 0, body).await })
    };
    tokio::time::timeout(WAIT, started).await.unwrap().unwrap();
    tx.send(Ok(data.slice(..1000))).await.unwrap();
    let err = other
        .uploads
        .append(&info.id, 0, chunked(source(len, 16), 4096))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Conflict | ErrorKind::Precondition),
        "{err}"
    );
    tx.send(Ok(data.slice(1000..))).await.unwrap();
    drop(tx);
    let end = tokio::time::timeout(WAIT, holder)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(end, len as u64);

    // Many racers at one offset: one wins, the object is exactly its bytes.
    let key2 = fx.key("race/b");
    let info2 = inst
        .uploads
        .create(NewUpload::new(key2.clone()).total(len as u64))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let u = if i % 2 == 0 {
            inst.uploads.clone()
        } else {
            other.uploads.clone()
        };
        let id = info2.id.clone();
        let body = source(len, 100 + i);
        tasks.push(tokio::spawn(async move {
            (i, u.append(&id, 0, chunked(body, 256 * 1024)).await)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(_)) => winners.push(i),
            (_, Err(e)) => assert!(
                matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Precondition),
                "{e}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    inst.uploads.finish(&info.id).await.unwrap();
    inst.uploads.finish(&info2.id).await.unwrap();
    same(
        &fx.store.get_bytes(&key).await.unwrap(),
        &data,
        "held upload",
    );
    same(
        &fx.store.get_bytes(&key2).await.unwrap(),
        &source(len, 100 + winners[0]),
        "raced upload",
    );
}

pub async fn stale_writers_are_fenced(fx: UploadsFixture) {
    let (clock, a) = open(&fx).await;
    let key = fx.key("stale/a");
    let data = source(3000, 17);
    let info = a
        .uploads
        .create(NewUpload::new(key.clone()).total(data.len() as u64))
        .await
        .unwrap();
    let (tx, started, body) = gated();
    let stalled = {
        let u = a.uploads.clone();
        let id = info.id.clone();
        tokio::spawn(async move { u.append(&id, 0, body).await })
    };
    tokio::time::timeout(WAIT, started).await.unwrap().unwrap();
    // The writer stalls past any lease; another takes the upload over.
    clock.advance(Duration::from_secs(3600));
    let b = (fx.make)(clock.clone()).await;
    b.uploads
        .append(&info.id, 0, chunked(data.slice(..2000), 100))
        .await
        .unwrap();
    tx.send(Ok(source(1000, 18))).await.unwrap();
    drop(tx);
    let err = tokio::time::timeout(WAIT, stalled)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    assert_eq!(b.uploads.get(&info.id).await.unwrap().offset, 2000);
    b.uploads
        .append(&info.id, 2000, chunked(data.slice(2000..), 1000))
        .await
        .unwrap();
    b.uploads.finish(&info.id).await.unwrap();
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

pub async fn failed_bodies_keep_what_arrived(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let key = fx.key("fail/a");
    let data = source(2 * fx.part_size + 5, 19);
    let info = u
        .create(NewUpload::new(key.clone()).total(data.len() as u64))
        .await
        .unwrap();
    // Fails at once: nothing changes.
    let failing = futures::stream::iter(vec![Err(Error::unavailable(
        "client went away",
        "connection reset",
    ))])
    .boxed();
    let err = u.append(&info.id, 0, failing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(u.get(&info.id).await.unwrap().offset, 0);
    // Fails after a part and a bit: both are kept.
    let delivered = fx.part_size + 4321;
    let failing = chunked(data.slice(..delivered), 65_536)
        .chain(futures::stream::iter(vec![Err(Error::unavailable(
            "client went away",
            "connection reset",
        ))]))
        .boxed();
    let err = u.append(&info.id, 0, failing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let offset = u.get(&info.id).await.unwrap().offset;
    assert_eq!(offset, delivered as u64);
    // The client resumes from the offset at once (the upload is free again).
    u.append(&info.id, offset, chunked(data.slice(delivered..), 1 << 20))
        .await
        .unwrap();
    u.finish(&info.id).await.unwrap();
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

pub async fn cancelled_appends_free_the_upload(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let key = fx.key("cancel/a");
    let data = source(5000, 20);
    let info = u
        .create(NewUpload::new(key.clone()).total(data.len() as u64))
        .await
        .unwrap();
    let (tx, started, body) = gated();
    let task = {
        let u = u.clone();
        let id = info.id.clone();
        tokio::spawn(async move { u.append(&id, 0, body).await })
    };
    tokio::time::timeout(WAIT, started).await.unwrap().unwrap();
    tx.send(Ok(data.slice(..100))).await.unwrap();
    task.abort();
    let _ = task.await;
    // The dropped append keeps the offset it had stored (0) and gives the
    // upload back in the background: wait for that, with a bound.
    let resumed = tokio::time::timeout(WAIT, async {
        loop {
            let at = u.get(&info.id).await.unwrap().offset;
            assert_eq!(at, 0);
            match u.append(&info.id, at, chunked(data.clone(), 1000)).await {
                Ok(end) => return end,
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("resuming after a cancelled append: {e}"),
            }
        }
    })
    .await
    .expect("the cancelled append still holds the upload");
    assert_eq!(resumed, data.len() as u64);
    u.finish(&info.id).await.unwrap();
    same(&fx.store.get_bytes(&key).await.unwrap(), &data, "object");
}

pub async fn memory_stays_bounded(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let part = fx.part_size;
    let key = fx.key("mem/a");
    let len = 4 * part + 12_345;
    let info = u
        .create(NewUpload::new(key.clone()).total(len as u64))
        .await
        .unwrap();
    // Generated lazily in 64 KiB chunks, never whole in memory here.
    let produced = Arc::new(AtomicBool::new(false));
    let first = 2 * part + 100;
    let chunk = 65_536usize;
    let head = {
        let produced = produced.clone();
        futures::stream::iter((0..first.div_ceil(chunk)).map(move |i| {
            produced.store(true, Ordering::SeqCst);
            Ok(source(chunk.min(first - i * chunk), 1000 + i as u64))
        }))
        .boxed()
    };
    inst.reset_peak();
    u.append(&info.id, 0, head).await.unwrap();
    assert!(produced.load(Ordering::SeqCst));
    assert_eq!(u.get(&info.id).await.unwrap().offset, first as u64);
    let peak = inst.peak();
    assert!(peak > 0, "the gauge counts");
    assert!(peak <= part as u64, "peak {peak} > part size {part}");
    // One huge chunk (bigger than two parts) is split, not buffered.
    inst.reset_peak();
    let rest = source(len - first, 2000);
    u.append(&info.id, first as u64, chunked(rest.clone(), rest.len()))
        .await
        .unwrap();
    let peak = inst.peak();
    assert!(peak <= part as u64, "peak {peak} > part size {part}");
    let meta = u.finish(&info.id).await.unwrap();
    assert_eq!(meta.size, len as u64);
    let got = fx.store.get_bytes(&key).await.unwrap();
    same(&got.slice(first..), &rest, "second append's bytes");
}

pub async fn bad_input_is_rejected(fx: UploadsFixture) {
    let (_clock, inst) = open(&fx).await;
    let u = &inst.uploads;
    let bad = NewUpload::new(fx.key("bad/a")).meta("has space", "x");
    assert_eq!(kind(u.create(bad).await), Some(ErrorKind::InvalidInput));
    let zero = NewUpload::new(fx.key("bad/a")).ttl(Duration::ZERO);
    assert_eq!(kind(u.create(zero).await), Some(ErrorKind::InvalidInput));
    let unknown = UploadId::new();
    assert_eq!(kind(u.get(&unknown).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(u.append(&unknown, 0, chunked(source(1, 1), 1)).await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(kind(u.finish(&unknown).await), Some(ErrorKind::NotFound));
    assert_eq!(kind(u.abort(&unknown).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(u.declare_length(&unknown, 1).await),
        Some(ErrorKind::NotFound)
    );
    let msg = u.get(&unknown).await.unwrap_err().to_string();
    assert!(msg.contains(unknown.as_str()), "{msg}");
}
