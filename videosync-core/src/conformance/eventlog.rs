//! The [`crate::EventLog`] conformance suite.
//!
//! A backend's test file expands [`eventlog_suite!`](crate::eventlog_suite)
//! with a factory of [`EventLogFixture`]s.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{unique_name, START, WAIT};
use crate::bus::Topic;
use crate::eventlog::{
    DynEventLog, Epoch, LogEntry, LogOptions, LogStream, Recovery, StreamPosition, TailItem,
    MAX_ENTRY_LEN,
};
use crate::{Clock, ErrorKind, ManualClock};

/// Opens the log under test with a clock and retention.
pub type EventLogMaker = Box<
    dyn Fn(Arc<dyn Clock>, LogOptions) -> Pin<Box<dyn Future<Output = DynEventLog> + Send>>
        + Send
        + Sync,
>;

/// Makes a topic lose its whole history the way the backend can lose it
/// (a forgotten in-process topic, deleted SQL head row, evicted Redis key).
pub type HistoryEraser =
    Box<dyn Fn(Topic) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// An event log namespace under test.
pub struct EventLogFixture {
    /// Every call opens the same namespace (for SQL and Redis another
    /// connection, as another process would); the in-process fixture hands
    /// out the log it made first.
    pub make: EventLogMaker,
    /// Erases a topic's history behind the log's back.
    pub lose_history: HistoryEraser,
    /// Kept alive for the test (a temporary directory, say).
    pub guard: Option<Box<dyn Any + Send>>,
}

/// The event log suite: `eventlog_suite!(|| async { Some(EventLogFixture) })`.
#[macro_export]
macro_rules! eventlog_suite {
    ($make:expr) => {
        $crate::__conformance_cases!(
            eventlog,
            $make,
            [
                seq_is_dense_from_one,
                read_after_a_position,
                topics_are_isolated,
                tail_replays_then_goes_live,
                concurrent_appends_across_handles_have_one_order,
                retention_by_count,
                retention_by_age,
                slow_tailers_are_told_they_lost_entries,
                forged_positions_are_lost,
                epoch_changes_after_history_loss,
                entry_times_never_go_back,
                bad_input_is_rejected,
            ]
        );
    };
}

fn topic() -> Topic {
    Topic::parse(&unique_name("conformance.log.")).unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(START))
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("e{i}"))
}

async fn open(fx: &EventLogFixture, clock: &Arc<ManualClock>, options: LogOptions) -> DynEventLog {
    (fx.make)(clock.clone(), options).await
}

fn seqs(entries: &[LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

async fn next(tail: &mut LogStream) -> TailItem {
    tokio::time::timeout(WAIT, tail.next())
        .await
        .expect("a tail item within the wait")
        .expect("the tail never ends")
        .unwrap_or_else(|e| panic!("tail failed: {e}"))
}

async fn next_entry(tail: &mut LogStream) -> LogEntry {
    match next(tail).await {
        TailItem::Entry(e) => e,
        other => panic!("expected an entry, got {other:?}"),
    }
}

async fn append_n(log: &DynEventLog, t: &Topic, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let a = log.append(t, payload(i)).await.unwrap();
        assert_eq!(a.seq, i, "append {i} to {t} on {log}");
    }
}

fn at(seq: u64, epoch: &Epoch) -> StreamPosition {
    StreamPosition {
        seq,
        epoch: epoch.clone(),
    }
}

pub async fn seq_is_dense_from_one(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    let empty = log.position(&t).await.unwrap();
    assert_eq!(empty.seq, 0, "a new topic has no entries");
    for i in 1..=5 {
        let a = log.append(&t, payload(i)).await.unwrap();
        assert_eq!(a.seq, i);
        assert_eq!(a.epoch, empty.epoch, "the epoch holds while history does");
        assert_eq!(a.at, clock.now(), "append time comes from the clock");
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(log.position(&t).await.unwrap(), at(5, &empty.epoch));
    let read = log.read(&t, None, 100).await.unwrap();
    assert_eq!(read.recovery, Recovery::Recovered);
    assert_eq!(read.position, at(5, &empty.epoch));
    assert_eq!(seqs(&read.entries), [1, 2, 3, 4, 5]);
    for e in &read.entries {
        assert_eq!(e.payload, payload(e.seq));
        assert_eq!(
            e.at,
            START.saturating_add(Duration::from_secs(e.seq - 1)),
            "entry {} keeps its append time",
            e.seq
        );
    }
    // The position of the empty topic resumes onto everything.
    let read = log.read(&t, Some(&empty), 100).await.unwrap();
    assert_eq!(read.recovery, Recovery::Recovered);
    assert_eq!(seqs(&read.entries), [1, 2, 3, 4, 5]);
}

pub async fn read_after_a_position(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    append_n(&log, &t, 1..=10).await;
    let epoch = log.position(&t).await.unwrap().epoch;
    let read = log.read(&t, Some(&at(3, &epoch)), 4).await.unwrap();
    assert_eq!(read.recovery, Recovery::Recovered);
    assert_eq!(seqs(&read.entries), [4, 5, 6, 7], "limit respected");
    assert_eq!(
        read.position,
        at(10, &epoch),
        "the head, not the last entry read"
    );
    let read = log
        .read(&t, Some(&at(7, &epoch)), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        seqs(&read.entries),
        [8, 9, 10],
        "a huge limit is clamped, not refused"
    );
    let read = log.read(&t, Some(&at(10, &epoch)), 10).await.unwrap();
    assert_eq!(
        read.recovery,
        Recovery::Recovered,
        "at the head: nothing missed"
    );
    assert!(read.entries.is_empty());
}

pub async fn topics_are_isolated(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let (a, b) = (topic(), topic());
    append_n(&log, &a, 1..=3).await;
    let first_b = log.append(&b, Bytes::from("b1")).await.unwrap();
    assert_eq!(first_b.seq, 1, "each topic counts from 1");
    assert_eq!(log.position(&a).await.unwrap().seq, 3);
    let read = log.read(&b, None, 10).await.unwrap();
    assert_eq!(seqs(&read.entries), [1]);
    assert_eq!(read.entries[0].payload, "b1");
}

pub async fn tail_replays_then_goes_live(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    append_n(&log, &t, 1..=10).await;
    let epoch = log.position(&t).await.unwrap().epoch;
    // Appends race with the tail's start: the seam between replay and live
    // entries must show no gap and no duplicate.
    let appender = {
        let (log, t) = (log.clone(), t.clone());
        tokio::spawn(async move { append_n(&log, &t, 11..=60).await })
    };
    let mut tail = log.tail(&t, Some(&at(3, &epoch))).await.unwrap();
    for want in 4..=60 {
        let e = next_entry(&mut tail).await;
        assert_eq!(e.seq, want, "tail order");
        assert_eq!(e.payload, payload(want));
    }
    appender.await.unwrap();
    // A tail from nothing on a fresh topic sees its first entry.
    let fresh = topic();
    let mut tail = log.tail(&fresh, None).await.unwrap();
    log.append(&fresh, Bytes::from("first")).await.unwrap();
    let e = next_entry(&mut tail).await;
    assert_eq!((e.seq, &e.payload[..]), (1, &b"first"[..]));
}

pub async fn concurrent_appends_across_handles_have_one_order(fx: EventLogFixture) {
    let clock = clock();
    let a = open(&fx, &clock, LogOptions::default()).await;
    let b = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    let epoch = a.position(&t).await.unwrap().epoch;
    let mut tail = b.tail(&t, Some(&at(0, &epoch))).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let log = if w % 2 == 0 { a.clone() } else { b.clone() };
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..25u64 {
                let p = Bytes::from(format!("w{w}-{i}"));
                let appended = log.append(&t, p.clone()).await.unwrap();
                got.push((appended, p));
            }
            got
        }));
    }
    let mut by_seq = BTreeMap::new();
    for task in tasks {
        let got = task.await.unwrap();
        let own: Vec<u64> = got.iter().map(|(a, _)| a.seq).collect();
        assert!(
            own.windows(2).all(|w| w[0] < w[1]),
            "one appender's entries keep its order: {own:?}"
        );
        for (appended, p) in got {
            assert_eq!(appended.epoch, epoch);
            assert!(
                by_seq.insert(appended.seq, p).is_none(),
                "seq {} handed out twice",
                appended.seq
            );
        }
    }
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>(),
        "dense"
    );
    for log in [&a, &b] {
        let read = log.read(&t, None, 1000).await.unwrap();
        assert_eq!(read.entries.len(), 100, "read on {log}");
        for e in &read.entries {
            assert_eq!(
                Some(&e.payload),
                by_seq.get(&e.seq),
                "seq {} on {log}",
                e.seq
            );
        }
    }
    for want in 1..=100 {
        let e = next_entry(&mut tail).await;
        assert_eq!(e.seq, want, "the other handle's tail sees the same order");
        assert_eq!(Some(&e.payload), by_seq.get(&want));
    }
}

pub async fn retention_by_count(fx: EventLogFixture) {
    let clock = clock();
    let options = LogOptions {
        max_len: Some(5),
        max_age: None,
    };
    let log = open(&fx, &clock, options).await;
    let t = topic();
    append_n(&log, &t, 1..=12).await;
    let epoch = log.position(&t).await.unwrap().epoch;
    let old = log.read(&t, Some(&at(2, &epoch)), 100).await.unwrap();
    assert_eq!(old.recovery, Recovery::Lost, "3..7 were trimmed");
    assert_eq!(
        seqs(&old.entries),
        [8, 9, 10, 11, 12],
        "from the oldest retained"
    );
    assert_eq!(old.position, at(12, &epoch));
    let edge = log.read(&t, Some(&at(6, &epoch)), 100).await.unwrap();
    assert_eq!(edge.recovery, Recovery::Lost, "7 was trimmed");
    let fresh = log.read(&t, Some(&at(7, &epoch)), 100).await.unwrap();
    assert_eq!(fresh.recovery, Recovery::Recovered);
    assert_eq!(seqs(&fresh.entries), [8, 9, 10, 11, 12]);
    let from_start = log.read(&t, None, 100).await.unwrap();
    assert_eq!(
        from_start.recovery,
        Recovery::Lost,
        "the start of the epoch is gone"
    );
    assert_eq!(seqs(&from_start.entries), [8, 9, 10, 11, 12]);
}

pub async fn retention_by_age(fx: EventLogFixture) {
    let clock = clock();
    let options = LogOptions {
        max_len: None,
        max_age: Some(Duration::from_secs(60)),
    };
    let log = open(&fx, &clock, options).await;
    let t = topic();
    append_n(&log, &t, 1..=3).await;
    let epoch = log.position(&t).await.unwrap().epoch;
    clock.advance(Duration::from_secs(30));
    append_n(&log, &t, 4..=5).await;
    clock.advance(Duration::from_secs(40));
    // 1..3 are 70 s old, 4..5 40 s: expiry holds without another append.
    let old = log.read(&t, Some(&at(1, &epoch)), 100).await.unwrap();
    assert_eq!(old.recovery, Recovery::Lost);
    assert_eq!(seqs(&old.entries), [4, 5]);
    let fresh = log.read(&t, Some(&at(3, &epoch)), 100).await.unwrap();
    assert_eq!(fresh.recovery, Recovery::Recovered);
    assert_eq!(seqs(&fresh.entries), [4, 5]);
    append_n(&log, &t, 6..=6).await;
    clock.advance(Duration::from_secs(30));
    // Now 4..5 are 70 s old and 6 is 30 s.
    let old = log.read(&t, Some(&at(3, &epoch)), 100).await.unwrap();
    assert_eq!(old.recovery, Recovery::Lost);
    assert_eq!(seqs(&old.entries), [6]);
    let fresh = log.read(&t, Some(&at(5, &epoch)), 100).await.unwrap();
    assert_eq!(fresh.recovery, Recovery::Recovered);
    assert_eq!(seqs(&fresh.entries), [6]);
    clock.advance(Duration::from_secs(100));
    // Everything expired; the head stays.
    let gone = log.read(&t, Some(&at(5, &epoch)), 100).await.unwrap();
    assert_eq!(gone.recovery, Recovery::Lost);
    assert!(gone.entries.is_empty());
    assert_eq!(gone.position, at(6, &epoch));
    let current = log.read(&t, Some(&at(6, &epoch)), 100).await.unwrap();
    assert_eq!(
        current.recovery,
        Recovery::Recovered,
        "at the head: nothing missed"
    );
    assert_eq!(log.append(&t, payload(7)).await.unwrap().seq, 7);
}

pub async fn slow_tailers_are_told_they_lost_entries(fx: EventLogFixture) {
    let clock = clock();
    let options = LogOptions {
        max_len: Some(5),
        max_age: None,
    };
    let log = open(&fx, &clock, options).await;
    let t = topic();
    let mut tail = log.tail(&t, None).await.unwrap();
    append_n(&log, &t, 1..=1).await;
    assert_eq!(next_entry(&mut tail).await.seq, 1);
    // The tailer stops reading while 19 more are appended (appends never wait for it).
    append_n(&log, &t, 2..=20).await;
    match next(&mut tail).await {
        TailItem::Lost { position } => assert_eq!(position.seq, 20),
        other => panic!("a tailer behind the retention must be told, got {other:?}"),
    }
    for want in 16..=20 {
        assert_eq!(next_entry(&mut tail).await.seq, want);
    }
    append_n(&log, &t, 21..=21).await;
    assert_eq!(next_entry(&mut tail).await.seq, 21, "and it goes on live");
}

pub async fn forged_positions_are_lost(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    append_n(&log, &t, 1..=3).await;
    let epoch = log.position(&t).await.unwrap().epoch;
    let forged_epoch = Epoch::parse("forged").unwrap();
    for (forged, why) in [
        (at(100, &epoch), "ahead of the head"),
        (at(u64::MAX, &epoch), "far ahead"),
        (at(2, &forged_epoch), "an unknown epoch"),
    ] {
        let read = log.read(&t, Some(&forged), 100).await.unwrap();
        assert_eq!(read.recovery, Recovery::Lost, "{why}");
        assert_eq!(seqs(&read.entries), [1, 2, 3], "{why}");
        assert_eq!(read.position, at(3, &epoch), "{why}");
    }
    let mut tail = log.tail(&t, Some(&at(100, &epoch))).await.unwrap();
    assert!(matches!(next(&mut tail).await, TailItem::Lost { .. }));
    for want in 1..=3 {
        assert_eq!(next_entry(&mut tail).await.seq, want);
    }
    append_n(&log, &t, 4..=4).await;
    assert_eq!(next_entry(&mut tail).await.seq, 4);
    let err = Epoch::parse("not an epoch!").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

pub async fn epoch_changes_after_history_loss(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    append_n(&log, &t, 1..=3).await;
    let before = log.position(&t).await.unwrap();
    let mut tail = log.tail(&t, Some(&at(2, &before.epoch))).await.unwrap();
    assert_eq!(next_entry(&mut tail).await.seq, 3);
    // The tailer has caught up and waits for the next entry while history
    // is lost behind the log's back.
    let waiting = tokio::spawn(async move {
        let lost = next(&mut tail).await;
        let entry = next_entry(&mut tail).await;
        (lost, entry)
    });
    (fx.lose_history)(t.clone()).await;
    let read = log.read(&t, Some(&before), 100).await.unwrap();
    assert_eq!(read.recovery, Recovery::Lost);
    assert_ne!(
        read.position.epoch, before.epoch,
        "a new history, a new epoch"
    );
    assert_eq!(read.position.seq, 0);
    assert!(read.entries.is_empty(), "nothing of the old history shows");
    let appended = log.append(&t, Bytes::from("after")).await.unwrap();
    assert_eq!(appended.seq, 1, "the new history starts at 1");
    assert_eq!(appended.epoch, read.position.epoch);
    let (lost, entry) = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the tailer hears of the loss within the wait")
        .unwrap();
    match lost {
        TailItem::Lost { position } => assert_eq!(position.epoch, appended.epoch),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert_eq!((entry.seq, &entry.payload[..]), (1, &b"after"[..]));
    append_n(&log, &t, 2..=5).await;
    let read = log.read(&t, Some(&before), 100).await.unwrap();
    assert_eq!(
        read.recovery,
        Recovery::Lost,
        "seq 3 of the old epoch is not seq 3 of the new"
    );
    assert_eq!(seqs(&read.entries), [1, 2, 3, 4, 5]);
    assert_eq!(read.entries[0].payload, "after");
}

pub async fn entry_times_never_go_back(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    clock.advance(Duration::from_secs(10));
    let first = log.append(&t, payload(1)).await.unwrap();
    clock.rewind(Duration::from_secs(5));
    let second = log.append(&t, payload(2)).await.unwrap();
    assert_eq!(
        second.at, first.at,
        "a clock stepped back does not reorder times"
    );
    clock.advance(Duration::from_secs(10));
    let third = log.append(&t, payload(3)).await.unwrap();
    assert_eq!(third.at, clock.now());
    let read = log.read(&t, None, 10).await.unwrap();
    let times: Vec<_> = read.entries.iter().map(|e| e.at).collect();
    assert_eq!(times, [first.at, first.at, third.at]);
}

pub async fn bad_input_is_rejected(fx: EventLogFixture) {
    let clock = clock();
    let log = open(&fx, &clock, LogOptions::default()).await;
    let t = topic();
    let err = log
        .append(&t, Bytes::from(vec![0u8; MAX_ENTRY_LEN + 1]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains(t.as_str()),
        "names the topic: {err}"
    );
    assert_eq!(
        log.position(&t).await.unwrap().seq,
        0,
        "nothing was appended"
    );
    let err = log.read(&t, None, 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // The largest, an empty and a binary payload round-trip exactly.
    let big = Bytes::from(vec![7u8; MAX_ENTRY_LEN]);
    let binary = Bytes::from_static(b"\x00bin\xffary\r\n");
    for p in [big, Bytes::new(), binary] {
        let a = log.append(&t, p.clone()).await.unwrap();
        let read = log
            .read(&t, Some(&at(a.seq - 1, &a.epoch)), 1)
            .await
            .unwrap();
        assert_eq!(read.entries[0].payload, p);
    }
}
