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

pub async fn create_and_read_back(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let owner = UserId::new();
    let new = NewVideo {
        id: None,
        owner: Some(owner),
        title: "Holiday 2026 — ファイル".into(),
        source_key: Some("uploads/abc/original.mp4".into()),
    };
    let v = c.create_video(new).await.unwrap();
    assert_eq!(v.status, VideoStatus::Pending);
    assert_eq!(v.owner, Some(owner));
    assert_eq!(v.title, "Holiday 2026 — ファイル");
    assert_eq!(v.source_key.as_deref(), Some("uploads/abc/original.mp4"));
    assert_eq!((v.created_at, v.updated_at), (START, START));
    assert!(v.renditions.is_empty() && v.source.is_none() && v.failure_reason.is_none());
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
        .update_status(v.id, StatusChange::Processing)
        .await
        .unwrap();
    assert_eq!(p.status, VideoStatus::Processing);
    assert_eq!(p.updated_at, START.saturating_add(Duration::from_secs(5)));
    assert_eq!(p.created_at, START);
    let failed = c
        .update_status(
            v.id,
            StatusChange::Failed {
                reason: "probe of uploads/x failed: no video stream".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, VideoStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("probe of uploads/x failed: no video stream")
    );
    c.update_status(v.id, StatusChange::Pending).await.unwrap();
    c.update_status(v.id, StatusChange::Processing)
        .await
        .unwrap();
    let ladder = vec![rendition(1080), rendition(720)];
    let ready = c
        .update_status(
            v.id,
            StatusChange::Ready {
                renditions: ladder.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ready.status, VideoStatus::Ready);
    assert_eq!(ready.renditions, ladder);
    assert_eq!(ready.failure_reason, None, "ready clears the old failure");
    assert_eq!(c.get_video(v.id).await.unwrap(), ready);
    // A re-transcode keeps the old ladder until the new one is ready.
    let again = c
        .update_status(v.id, StatusChange::Processing)
        .await
        .unwrap();
    assert_eq!(again.renditions, ladder);
}

pub async fn illegal_transitions_change_nothing(fx: CatalogFixture) {
    let (clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("t")).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let err = c
        .update_status(
            v.id,
            StatusChange::Ready {
                renditions: vec![rendition(360)],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("pending"), "{err}");
    assert_eq!(c.get_video(v.id).await.unwrap(), v, "unchanged");
    assert_eq!(
        kind(
            c.update_status(v.id, StatusChange::Failed { reason: "x".into() })
                .await
        ),
        Some(ErrorKind::Conflict)
    );
    c.update_status(v.id, StatusChange::Processing)
        .await
        .unwrap();
    c.update_status(v.id, StatusChange::Ready { renditions: vec![] })
        .await
        .unwrap();
    assert_eq!(
        kind(c.update_status(v.id, StatusChange::Pending).await),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        kind(
            c.update_status(v.id, StatusChange::Ready { renditions: vec![] })
                .await
        ),
        Some(ErrorKind::Conflict)
    );
}

pub async fn concurrent_transitions_have_one_winner(fx: CatalogFixture) {
    let (_clock, c) = open(&fx).await;
    let v = c.create_video(NewVideo::titled("race")).await.unwrap();
    c.update_status(v.id, StatusChange::Processing)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.update_status(
                v.id,
                StatusChange::Ready {
                    renditions: vec![rendition(100 + i)],
                },
            )
            .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
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
    c.update_status(ids[2], StatusChange::Processing)
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
        kind(c.update_status(id, StatusChange::Processing).await),
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
