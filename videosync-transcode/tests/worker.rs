//! The worker loop on the embedded backends (SQLite queue and catalog,
//! in-process bus, in-memory store) with real FFmpeg work.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;
use std::time::Duration;

use videosync_core::bus::memory::MemoryBus;
use videosync_core::bus::Delivery;
use videosync_core::catalog::{catalog_from_url, StatusChange};
use videosync_core::queue::{
    queue_from_url, ClockCheck, QueueCounts, QueueOptions, ReserveOptions,
};
use videosync_core::store::memory::MemoryStore;
use videosync_core::{
    ManualClock, NewJob, NewVideo, ObjectKey, ObjectStoreExt, RetryPolicy, Timestamp, VideoStatus,
};
use videosync_hls::ladder::{LadderOptions, SegmentFormat};
use videosync_transcode::worker::{
    progress_topic, Outcome, ProgressEvent, TranscodeJob, Worker, WorkerConfig, JOB_KIND,
};
use videosync_transcode::{EncoderChoice, Stage, TranscodeOptions};

mod common;
use common::{ffmpeg, strs, video_src};

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    worker: Worker,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    };
    let store = Arc::new(MemoryStore::new());
    let worker = Worker {
        store: store.clone(),
        sources: store.clone(),
        // The queue runs on the test's manual clock, far from the database's.
        queue: queue_from_url(
            &url,
            "transcode",
            clock.clone(),
            QueueOptions {
                retry,
                clock_check: ClockCheck::Off,
                ..QueueOptions::default()
            },
        )
        .await
        .unwrap(),
        catalog: catalog_from_url(&url, clock.clone()).await.unwrap(),
        bus: Arc::new(MemoryBus::new()),
        log: None,
        config: WorkerConfig {
            lease: Duration::from_secs(3),
            idle_poll: Duration::from_millis(20),
            scratch_dir: dir.path().to_path_buf(),
            remove_source: true,
            ..WorkerConfig::default()
        },
    };
    Rig {
        _dir: dir,
        store,
        clock,
        worker,
    }
}

fn options() -> TranscodeOptions {
    TranscodeOptions {
        ladder: LadderOptions {
            rungs: vec![360, 240],
            segment_seconds: 1,
            format: SegmentFormat::Fmp4,
        },
        preset: "ultrafast".to_owned(),
        encoder: EncoderChoice::Software,
        ..TranscodeOptions::default()
    }
}

async fn upload_clip(rig: &Rig, secs: &str) -> (videosync_core::VideoId, String) {
    let media = tempfile::tempdir().unwrap();
    let mut args = video_src("640x360", "30", secs);
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            secs,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ]
        .map(String::from),
    );
    let file = ffmpeg(media.path(), "clip.mp4", &strs(&args));
    let key = "uploads/clip.mp4".to_owned();
    rig.store
        .put(
            &ObjectKey::parse(&key).unwrap(),
            std::fs::read(file).unwrap().into(),
        )
        .await
        .unwrap();
    let mut new = NewVideo::titled("clip");
    new.source_key = Some(key.clone());
    let video = rig.worker.catalog.create_video(new).await.unwrap();
    (video.id, key)
}

async fn enqueue(rig: &Rig, job: &TranscodeJob) {
    rig.worker
        .queue
        .enqueue(job.to_new_job().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_job_becomes_a_ready_video_with_progress_on_the_bus() {
    let rig = rig().await;
    let (video, source_key) = upload_clip(&rig, "3").await;
    let mut events = rig
        .worker
        .bus
        .subscribe(&progress_topic(video).unwrap())
        .await
        .unwrap();
    enqueue(
        &rig,
        &TranscodeJob::Ladder {
            video,
            source_key: source_key.clone(),
            output_prefix: format!("videos/{}/hls", video.as_uuid()),
            options: options(),
            segments_per_chunk: None,
        },
    )
    .await;
    let outcome = rig.worker.run_once().await.unwrap();
    let Outcome::Ready(manifest) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(manifest.renditions.len(), 2);
    let row = rig.worker.catalog.get_video(video).await.unwrap();
    assert_eq!(row.status, VideoStatus::Ready);
    assert_eq!(row.renditions, manifest.catalog_renditions());
    assert_eq!(row.source.unwrap().width, Some(640));
    let published = format!("videos/{}/hls/a1", video.as_uuid());
    assert_eq!(
        row.output_prefix.as_deref(),
        Some(published.as_str()),
        "the attempt's prefix is published"
    );
    let master = ObjectKey::parse(&format!("{published}/master.m3u8")).unwrap();
    assert!(rig.store.exists(&master).await.unwrap());
    assert!(
        !rig.store
            .exists(&ObjectKey::parse(&source_key).unwrap())
            .await
            .unwrap(),
        "source removed"
    );
    assert_eq!(
        rig.worker.queue.counts().await.unwrap(),
        QueueCounts {
            done: 1,
            ..QueueCounts::default()
        },
        "every job acked, none left"
    );

    let mut stages = Vec::new();
    while let Ok(Some(Delivery::Event(e))) =
        tokio::time::timeout(Duration::from_millis(200), events.recv()).await
    {
        let ev: ProgressEvent = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(ev.video, video);
        stages.push(ev.stage);
    }
    assert!(stages.contains(&Stage::Encoding), "{stages:?}");
    assert_eq!(stages.last(), Some(&Stage::Done), "{stages:?}");
    // Done is said once, by the worker, after the video is ready: the
    // ladder's own "done" came earlier, when a reader could still find the
    // video processing.
    assert_eq!(
        stages.iter().filter(|s| **s == Stage::Done).count(),
        1,
        "{stages:?}"
    );
    assert_eq!(rig.worker.run_once().await.unwrap(), Outcome::Idle);
}

#[tokio::test]
async fn a_bad_source_fails_the_video_at_once_with_the_reason() {
    let rig = rig().await;
    let key = ObjectKey::parse("uploads/bad.mp4").unwrap();
    rig.store
        .put(&key, "this is not a video".repeat(50).into_bytes().into())
        .await
        .unwrap();
    let mut new = NewVideo::titled("bad");
    new.source_key = Some(key.as_str().to_owned());
    let video = rig.worker.catalog.create_video(new).await.unwrap().id;
    enqueue(
        &rig,
        &TranscodeJob::Ladder {
            video,
            source_key: key.as_str().to_owned(),
            output_prefix: "videos/bad".to_owned(),
            options: options(),
            segments_per_chunk: None,
        },
    )
    .await;
    let outcome = rig.worker.run_once().await.unwrap();
    let Outcome::Failed { reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("not a media file"), "{reason}");
    let row = rig.worker.catalog.get_video(video).await.unwrap();
    assert_eq!(row.status, VideoStatus::Failed);
    assert_eq!(row.failure_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(
        rig.store
            .list(Some(&ObjectKey::parse("videos").unwrap()))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        rig.worker.queue.counts().await.unwrap(),
        QueueCounts {
            done: 1,
            ..QueueCounts::default()
        },
        "every job acked, none left"
    );
}

#[tokio::test]
async fn a_missing_source_is_retried_then_dead_lettered() {
    let rig = rig().await;
    let mut new = NewVideo::titled("lost");
    new.source_key = Some("uploads/lost.mp4".to_owned());
    let video = rig.worker.catalog.create_video(new).await.unwrap().id;
    enqueue(
        &rig,
        &TranscodeJob::Ladder {
            video,
            source_key: "uploads/lost.mp4".to_owned(),
            output_prefix: "videos/lost".to_owned(),
            options: options(),
            segments_per_chunk: None,
        },
    )
    .await;
    let first = rig.worker.run_once().await.unwrap();
    assert!(matches!(first, Outcome::Retrying { .. }), "{first:?}");
    let row = rig.worker.catalog.get_video(video).await.unwrap();
    assert_eq!(
        row.status,
        VideoStatus::Processing,
        "the next attempt takes it over"
    );
    assert_eq!(row.attempt, 1);
    assert_eq!(
        rig.worker.run_once().await.unwrap(),
        Outcome::Idle,
        "backing off"
    );
    rig.clock.advance(Duration::from_millis(50));
    let second = rig.worker.run_once().await.unwrap();
    assert!(matches!(second, Outcome::Failed { .. }), "{second:?}");
    let row = rig.worker.catalog.get_video(video).await.unwrap();
    assert_eq!((row.status, row.attempt), (VideoStatus::Failed, 2));
    assert!(row.failure_reason.unwrap().contains("uploads/lost.mp4"));
    assert_eq!(rig.worker.queue.counts().await.unwrap().dead, 1);
}

#[tokio::test]
async fn a_long_source_is_chunked_across_jobs() {
    let rig = rig().await;
    let (video, source_key) = upload_clip(&rig, "7").await;
    let base = format!("videos/{}/hls", video.as_uuid());
    let prefix = format!("{base}/a1");
    enqueue(
        &rig,
        &TranscodeJob::Ladder {
            video,
            source_key,
            output_prefix: base.clone(),
            options: options(),
            segments_per_chunk: Some(3),
        },
    )
    .await;
    assert_eq!(
        rig.worker.run_once().await.unwrap(),
        Outcome::Planned { parts: 4 }
    );
    // Two workers share the parts and the finish.
    let other = rig.worker.clone();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let (a, b) = tokio::join!(rig.worker.run_once(), other.run_once());
        outcomes.push(a.unwrap());
        outcomes.push(b.unwrap());
    }
    let ready = outcomes.iter().find_map(|o| match o {
        Outcome::Ready(m) => Some(m.clone()),
        _ => None,
    });
    let manifest = ready.unwrap_or_else(|| panic!("{outcomes:?}"));
    assert_eq!(manifest.chunks, 4);
    assert!((manifest.duration_s - 7.0).abs() < 0.05);
    assert_eq!(
        rig.worker.catalog.get_video(video).await.unwrap().status,
        VideoStatus::Ready
    );
    let left = rig
        .store
        .list(Some(
            &ObjectKey::parse(&format!("{prefix}/_parts")).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(left, vec![], "part records cleaned up");
    assert!(rig
        .store
        .exists(&ObjectKey::parse(&format!("{prefix}/master.m3u8")).unwrap())
        .await
        .unwrap());
    assert_eq!(
        rig.worker.queue.counts().await.unwrap(),
        QueueCounts {
            done: 6,
            ..QueueCounts::default()
        },
        "every job acked, none left"
    );
}

/// A job delivered again after its video was made ready (a crash between
/// "ready" and the ack, or a retried "upload complete") does nothing: the
/// video stays on air with the same ladder.
#[tokio::test]
async fn a_redelivered_job_never_takes_a_ready_video_off_air() {
    let rig = rig().await;
    let (video, source_key) = upload_clip(&rig, "2").await;
    let job = TranscodeJob::Ladder {
        video,
        source_key,
        output_prefix: format!("videos/{}/hls", video.as_uuid()),
        options: options(),
        segments_per_chunk: None,
    };
    enqueue(&rig, &job).await;
    assert!(matches!(
        rig.worker.run_once().await.unwrap(),
        Outcome::Ready(_)
    ));
    let ready = rig.worker.catalog.get_video(video).await.unwrap();
    let before = rig
        .store
        .list(Some(&ObjectKey::parse("videos").unwrap()))
        .await
        .unwrap();
    // The same job again, past any dedupe.
    rig.worker
        .queue
        .enqueue(NewJob::new(JOB_KIND, serde_json::to_value(&job).unwrap()))
        .await
        .unwrap();
    let again = rig.worker.run_once().await.unwrap();
    assert!(matches!(again, Outcome::Dropped { .. }), "{again:?}");
    assert_eq!(rig.worker.catalog.get_video(video).await.unwrap(), ready);
    assert_eq!(
        rig.store
            .list(Some(&ObjectKey::parse("videos").unwrap()))
            .await
            .unwrap(),
        before
    );
    assert_eq!(rig.worker.queue.counts().await.unwrap().ready, 0);
}

/// A job whose worker died on its last attempt reaches the dead letters by
/// lease exhaustion with nobody to fail its video; the sweep fails it with
/// the queue's reason.
#[tokio::test]
async fn a_job_dead_lettered_without_its_worker_fails_the_video() {
    let rig = rig().await;
    let mut new = NewVideo::titled("orphan");
    new.source_key = Some("uploads/orphan.mp4".to_owned());
    let video = rig.worker.catalog.create_video(new).await.unwrap().id;
    let job = TranscodeJob::Ladder {
        video,
        source_key: "uploads/orphan.mp4".to_owned(),
        output_prefix: "videos/orphan".to_owned(),
        options: options(),
        segments_per_chunk: None,
    };
    enqueue(&rig, &job).await;
    let lease = std::time::Duration::from_secs(3);
    // Two workers in turn reserve the job, take the video and vanish.
    for attempt in 1..=2 {
        let held = rig
            .worker
            .queue
            .reserve(ReserveOptions::lease(lease))
            .await
            .unwrap()
            .expect("the job is due");
        assert_eq!(held.job().attempts, attempt);
        rig.worker
            .catalog
            .update_status(
                video,
                None,
                StatusChange::Processing {
                    fence: format!("crashed-{attempt}"),
                },
            )
            .await
            .unwrap();
        rig.clock.advance(lease + Duration::from_secs(1));
    }
    // The next reserve finds the lease run out on the last attempt.
    assert!(rig
        .worker
        .queue
        .reserve(ReserveOptions::lease(lease))
        .await
        .unwrap()
        .is_none());
    assert_eq!(rig.worker.queue.counts().await.unwrap().dead, 1);
    assert_eq!(rig.worker.sweep_dead_letters().await.unwrap(), 1);
    let row = rig.worker.catalog.get_video(video).await.unwrap();
    assert_eq!(row.status, VideoStatus::Failed);
    assert!(row.failure_reason.is_some());
    assert_eq!(
        rig.worker.sweep_dead_letters().await.unwrap(),
        0,
        "idempotent"
    );
}
