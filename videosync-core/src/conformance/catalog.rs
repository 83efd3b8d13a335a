//! The [`crate::Catalog`] conformance suite.

use std::sync::Arc;
use std::time::Duration;

use super::{CatalogFixture, START};
use crate::catalog::{DynCatalog, StatusChange, VideoFilter};
use crate::{
    ErrorKind, ManualClock, NewVideo, Rendition, SourceMeta, UserId, VideoId, VideoStatus,
};

async fn open(fx: &CatalogFixture) -> (Arc<ManualClock>, DynCatalog) {
    let clock = Arc::new(ManualClock::new(START));
    let c = (fx.make)(clock.clone()).await;
    (clock, c)
}

fn kind<T>(r: crate::Result<T>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn rendition(height: u32) -> Rendition {
    Rendition {
        name: format!("{height}p"),
        width: height * 16 / 9,
        height,
        bandwidth: u64::from(height) * 5000,
        average_bandwidth: u64::from(height) * 4000,
        codecs: "avc1.64001f,mp4a.40.2".into(),
        frame_rate: 29.97,
        playlist: format!("videos/x/{height}p/index.m3u8"),
    }
}

fn processing(fence: &str) -> StatusChange {
    StatusChange::Processing {
        fence: fence.into(),
    }
}

fn ready(fence: &str, renditions: Vec<Rendition>) -> StatusChange {
    StatusChange::Ready {
        fence: fence.into(),
        renditions,
        output_prefix: format!("videos/x/{fence}"),
    }
}

fn failed(fence: Option<&str>, reason: &str) -> StatusChange {
    StatusChange::Failed {
        fence: fence.map(Into::into),
        reason: reason.into(),
    }
}

pub async fn create_and_read_back(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let owner = UserId::new();
    let new = NewVideo {
        owner: Some(owner),
        source_key: Some("uploads/abc/original.mp4".into()),
        description: "A day at the sea.\nWith waves.".into(),
        tags: vec!["sea".into(), "holiday".into()],
        ..NewVideo::titled("Holiday 2026 — ファイル")
    };
    let v = c.create_video(new).await.unwrap();
    assert_eq!(v.status, VideoStatus::Pending);
    assert_eq!(v.owner, Some(owner));
    assert_eq!(v.title, "Holiday 2026 — ファイル");
    assert_eq!(v.source_key.as_deref(), Some("uploads/abc/original.mp4"));
    assert_eq!((v.created_at, v.updated_at), (START, START));
    assert!(v.renditions.is_empty() && v.source.is_none() && v.failure_reason.is_none());
    assert_eq!(v.tags, ["sea", "holiday"]);
    assert_eq!(v.description, "A day at the sea.\nWith waves.");
    assert_eq!(
        (
            v.version,
            v.attempt,
            v.fence.as_deref(),
            v.output_prefix.as_deref()
        ),
        (1, 0, None, None)
    );
    assert_eq!(c.get_video(v.id).await.unwrap(), v);
    let chosen = VideoId::new();
    let mut named = NewVideo::titled("with id");
    named.id = Some(chosen);
    assert_eq!(c.create_video(named).await.unwrap().id, chosen);
}

pub async fn status_transitions(fx: CatalogFixture) {
    let (clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("t")).await.unwrap();
    clock.advance(Duration::from_secs(5));
    let p = c
        .update_status(v.id, Some(v.version), processing("f1"))
        .await
        .unwrap();
    assert_eq!(p.status, VideoStatus::Processing);
    assert_eq!((p.attempt, p.fence.as_deref()), (1, Some("f1")));
    assert!(p.version > v.version, "every change moves the version");
    assert_eq!(p.updated_at, START.saturating_add(Duration::from_secs(5)));
    assert_eq!(p.created_at, START);
    let f = c
        .update_status(
            v.id,
            None,
            failed(Some("f1"), "probe of uploads/x failed: no video stream"),
        )
        .await
        .unwrap();
    assert_eq!(f.status, VideoStatus::Failed);
    assert_eq!(
        f.failure_reason.as_deref(),
        Some("probe of uploads/x failed: no video stream")
    );
    c.update_status(v.id, None, StatusChange::Pending)
        .await
        .unwrap();
    let p2 = c.update_status(v.id, None, processing("f2")).await.unwrap();
    assert_eq!(p2.attempt, 2);
    let ladder = vec![rendition(1080), rendition(720)];
    let r = c
        .update_status(v.id, None, ready("f2", ladder.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, VideoStatus::Ready);
    assert_eq!(r.renditions, ladder);
    assert_eq!(r.output_prefix.as_deref(), Some("videos/x/f2"));
    assert_eq!(r.failure_reason, None, "ready clears the old failure");
    assert_eq!(c.get_video(v.id).await.unwrap(), r);
    // A requested re-transcode keeps the published ladder until the next
    // attempt replaces it.
    let again = c
        .update_status(v.id, None, StatusChange::Pending)
        .await
        .unwrap();
    assert_eq!(
        (again.renditions, again.output_prefix),
        (ladder, Some("videos/x/f2".into()))
    );
    c.update_status(v.id, None, processing("f3")).await.unwrap();
    let r3 = c
        .update_status(v.id, None, ready("f3", vec![rendition(480)]))
        .await
        .unwrap();
    assert_eq!(r3.output_prefix.as_deref(), Some("videos/x/f3"));
}

pub async fn stale_fences_and_versions_change_nothing(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("fenced")).await.unwrap();
    let p = c
        .update_status(v.id, None, processing("old"))
        .await
        .unwrap();
    // The lease ran out and another worker took the work over.
    let taken = c
        .update_status(v.id, None, processing("new"))
        .await
        .unwrap();
    assert_eq!(taken.attempt, p.attempt + 1);
    for change in [
        ready("old", vec![rendition(360)]),
        failed(Some("old"), "stale"),
    ] {
        let err = c.update_status(v.id, None, change).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    }
    assert_eq!(
        c.get_video(v.id).await.unwrap(),
        taken,
        "the stale worker changed nothing"
    );
    // A stale version is refused too.
    let err = c
        .update_status(v.id, Some(p.version), ready("new", vec![]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Precondition, "{err}");
    let r = c
        .update_status(v.id, Some(taken.version), ready("new", vec![]))
        .await
        .unwrap();
    // A retried or redelivered job cannot take a ready video off air.
    for change in [
        processing("retry"),
        failed(None, "dead letter"),
        failed(Some("new"), "late"),
    ] {
        assert_eq!(
            kind(c.update_status(v.id, None, change).await),
            Some(ErrorKind::Conflict)
        );
    }
    assert_eq!(c.get_video(v.id).await.unwrap(), r);
    // A dead-lettered job fails the video whoever held it.
    let w = c.create_video(NewVideo::titled("dead")).await.unwrap();
    c.update_status(w.id, None, processing("crashed"))
        .await
        .unwrap();
    let dead = c
        .update_status(w.id, None, failed(None, "lease exhausted"))
        .await
        .unwrap();
    assert_eq!(dead.status, VideoStatus::Failed);
    assert_eq!(dead.failure_reason.as_deref(), Some("lease exhausted"));
}

pub async fn illegal_transitions_change_nothing(fx: CatalogFixture) {
    let (clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("t")).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let err = c
        .update_status(v.id, None, ready("f", vec![rendition(360)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("pending"), "{err}");
    assert_eq!(c.get_video(v.id).await.unwrap(), v, "unchanged");
    c.update_status(v.id, None, processing("f")).await.unwrap();
    c.update_status(v.id, None, ready("f", vec![]))
        .await
        .unwrap();
    assert_eq!(
        kind(c.update_status(v.id, None, ready("f", vec![])).await),
        Some(ErrorKind::Conflict)
    );
    let hostile = StatusChange::Ready {
        fence: "g".into(),
        renditions: vec![],
        output_prefix: "../../etc".into(),
    };
    let w = c.create_video(NewVideo::titled("w")).await.unwrap();
    c.update_status(w.id, None, processing("g")).await.unwrap();
    assert_eq!(
        kind(c.update_status(w.id, None, hostile).await),
        Some(ErrorKind::InvalidInput)
    );
}

pub async fn concurrent_transitions_have_one_winner(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("race")).await.unwrap();
    c.update_status(v.id, None, processing("f")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.update_status(v.id, None, ready("f", vec![rendition(100 + i)]))
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Precondition),
                "{e}"
            ),
        }
    }
    assert_eq!(wins, 1);
}

pub async fn list_filters_newest_first(fx: CatalogFixture) {
    let (clock, c) = open(&fx).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let mut ids = Vec::new();
    for (owner, title) in [(alice, "a1"), (bob, "b1"), (alice, "a2")] {
        let mut new = NewVideo::titled(title);
        new.owner = Some(owner);
        ids.push(c.create_video(new).await.unwrap().id);
        clock.advance(Duration::from_millis(10));
    }
    c.update_status(ids[2], None, processing("f"))
        .await
        .unwrap();
    let titles = |vs: Vec<crate::Video>| vs.into_iter().map(|v| v.title).collect::<Vec<_>>();
    let mine = c
        .list_videos(VideoFilter {
            owner: Some(alice),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(titles(mine), ["a2", "a1"]);
    let processing = c
        .list_videos(VideoFilter {
            status: Some(VideoStatus::Processing),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(titles(processing), ["a2"]);
    let both = c
        .list_videos(VideoFilter {
            owner: Some(bob),
            status: Some(VideoStatus::Pending),
            limit: Some(5),
        })
        .await
        .unwrap();
    assert_eq!(titles(both), ["b1"]);
    let one = c
        .list_videos(VideoFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(titles(one), ["a2"]);
}

pub async fn source_metadata_round_trip(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("meta")).await.unwrap();
    let meta = SourceMeta {
        container: Some("mov,mp4,m4a,3gp,3g2,mj2".into()),
        duration_ms: Some(20_000),
        width: Some(1920),
        height: Some(1080),
        rotation: Some(90),
        frame_rate: Some(29.97),
        bit_rate: Some(8_000_000),
        video_codec: Some("h264".into()),
        audio_codec: Some("aac".into()),
        audio_channels: Some(6),
        sample_rate: Some(48_000),
        size_bytes: Some(20_000_000),
    };
    let updated = c.set_source_meta(v.id, meta.clone()).await.unwrap();
    assert_eq!(updated.source.as_ref(), Some(&meta));
    assert_eq!(c.get_video(v.id).await.unwrap().source, Some(meta));
}

pub async fn unknown_videos_are_not_found(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let id = VideoId::new();
    assert_eq!(kind(c.get_video(id).await), Some(ErrorKind::NotFound));
    assert_eq!(kind(c.delete_video(id).await), Some(ErrorKind::NotFound));
    assert_eq!(
        kind(c.update_status(id, None, processing("f")).await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(c.set_source_meta(id, SourceMeta::default()).await),
        Some(ErrorKind::NotFound)
    );
    let v = c.create_video(NewVideo::titled("gone")).await.unwrap();
    c.delete_video(v.id).await.unwrap();
    assert_eq!(kind(c.get_video(v.id).await), Some(ErrorKind::NotFound));
}

pub async fn duplicate_ids_and_bad_titles_are_rejected(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("first")).await.unwrap();
    let mut dup = NewVideo::titled("second");
    dup.id = Some(v.id);
    assert_eq!(
        kind(c.create_video(dup).await),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        c.get_video(v.id).await.unwrap().title,
        "first",
        "not overwritten"
    );
    for title in ["", "bell\u{7}", &"x".repeat(301)] {
        assert_eq!(
            kind(c.create_video(NewVideo::titled(title)).await),
            Some(ErrorKind::InvalidInput),
            "{title:?}"
        );
    }
    let mut hostile = NewVideo::titled("path");
    hostile.source_key = Some("../../etc/shadow".into());
    assert_eq!(
        kind(c.create_video(hostile).await),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        c.list_videos(VideoFilter::default()).await.unwrap().len(),
        1
    );
}

pub async fn survives_a_restart(fx: CatalogFixture) {
    let clock = Arc::new(ManualClock::new(START));
    let id = {
        let c = (fx.make)(clock.clone()).await;
        c.create_video(NewVideo::titled("durable"))
            .await
            .unwrap()
            .id
    };
    let c = (fx.make)(clock).await;
    assert_eq!(c.get_video(id).await.unwrap().title, "durable");
}
