//! The worker on the fleet backends: the ladder goes to a real
//! S3-compatible server, the queue and the catalog live in Postgres, the
//! progress events travel over Redis. Skipped when the service URLs are
//! unset, a failure under `VIDEOSYNC_REQUIRE_SERVICES=1` (`make test`).
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::sync::Arc;
use std::time::Duration;

use videosync_core::bus::{bus_from_url, Delivery};
use videosync_core::catalog::catalog_from_url;
use videosync_core::conformance::{postgres_namespace, service_url, unique_name};
use videosync_core::queue::queue_from_url;
use videosync_core::store::store_from_url;
use videosync_core::{NewVideo, ObjectKey, ObjectStoreExt, RetryPolicy, SystemClock, VideoStatus};
use videosync_hls::ladder::{LadderOptions, SegmentFormat};
use videosync_hls::playlist::parse_master;
use videosync_transcode::worker::{
    progress_topic, Outcome, ProgressEvent, TranscodeJob, Worker, WorkerConfig,
};
use videosync_transcode::{EncoderChoice, Stage, TranscodeOptions};

mod common;
use common::{ffmpeg, strs, video_src};

#[tokio::test]
async fn worker_on_s3_postgres_and_redis() {
    let (Some(s3), Some(pg), Some(redis)) = (
        service_url("VIDEOSYNC_TEST_S3_URL"),
        service_url("VIDEOSYNC_TEST_POSTGRES_URL"),
        service_url("VIDEOSYNC_TEST_REDIS_URL"),
    ) else {
        return;
    };
    let clock = Arc::new(SystemClock::new());
    let db = postgres_namespace(&pg).await;
    let store = store_from_url(&s3).await.unwrap();
    let worker = Worker {
        store: store.clone(),
        sources: store.clone(),
        queue: queue_from_url(
            &db,
            &unique_name("tq_"),
            clock.clone(),
            RetryPolicy::default(),
        )
        .await
        .unwrap(),
        catalog: catalog_from_url(&db, clock).await.unwrap(),
        bus: bus_from_url(&redis).await.unwrap(),
        log: None,
        config: WorkerConfig {
            lease: Duration::from_secs(6),
            ..WorkerConfig::default()
        },
    };

    let media = tempfile::tempdir().unwrap();
    let mut args = video_src("640x360", "30", "3");
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
        ]
        .map(String::from),
    );
    let clip = ffmpeg(media.path(), "clip.mp4", &strs(&args));
    let root = unique_name("fleet-");
    let source_key = format!("{root}/uploads/clip.mp4");
    store
        .put(
            &ObjectKey::parse(&source_key).unwrap(),
            std::fs::read(clip).unwrap().into(),
        )
        .await
        .unwrap();
    let mut new = NewVideo::titled("fleet clip");
    new.source_key = Some(source_key.clone());
    let video = worker.catalog.create_video(new).await.unwrap().id;
    let mut events = worker
        .bus
        .subscribe(&progress_topic(video).unwrap())
        .await
        .unwrap();
    let job = TranscodeJob::Ladder {
        video,
        source_key,
        output_prefix: format!("{root}/hls"),
        options: TranscodeOptions {
            ladder: LadderOptions {
                rungs: vec![360, 240],
                segment_seconds: 1,
                format: SegmentFormat::Fmp4,
            },
            preset: "ultrafast".to_owned(),
            encoder: EncoderChoice::Software,
            ..TranscodeOptions::default()
        },
        segments_per_chunk: None,
    };
    worker
        .queue
        .enqueue(job.to_new_job().unwrap())
        .await
        .unwrap();

    let outcome = worker.run_once().await.unwrap();
    assert!(matches!(outcome, Outcome::Ready(_)), "{outcome:?}");
    let row = worker.catalog.get_video(video).await.unwrap();
    assert_eq!(row.status, VideoStatus::Ready);
    let published = row.output_prefix.unwrap();
    assert_eq!(published, format!("{root}/hls/a1"));
    let master = store
        .get_bytes(&ObjectKey::parse(&format!("{published}/master.m3u8")).unwrap())
        .await
        .unwrap();
    let master = parse_master(std::str::from_utf8(&master).unwrap()).unwrap();
    // One stream and one I-frame playlist per rung.
    let streams = master.variants.iter().filter(|v| !v.is_i_frame).count();
    let i_frames = master.variants.iter().filter(|v| v.is_i_frame).count();
    assert_eq!((streams, i_frames), (2, 2));
    let objects = store
        .list(Some(&ObjectKey::parse(&format!("{root}/hls")).unwrap()))
        .await
        .unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o.key.as_str().ends_with("360p/seg_00002.m4s")),
        "{objects:?}"
    );

    let mut done = false;
    while let Ok(Some(Delivery::Event(e))) =
        tokio::time::timeout(Duration::from_secs(2), events.recv()).await
    {
        let ev: ProgressEvent = serde_json::from_slice(&e.payload).unwrap();
        done |= ev.stage == Stage::Done && ev.error.is_none();
        if done {
            break;
        }
    }
    assert!(done, "a done event over Redis");
    store
        .delete_prefix(&ObjectKey::parse(&root).unwrap())
        .await
        .unwrap();
}
