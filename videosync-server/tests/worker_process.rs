//! One box, two processes: a `videosync worker` beside the server's
//! backends on the same SQLite file turns a job into a ready video, and its
//! progress reaches the server's side through the shared event log.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::time::Duration;

use videosync_core::eventlog::TailItem;
use videosync_core::{NewVideo, ObjectKey, ObjectStoreExt, VideoStatus};
use videosync_server::{BackendUrls, Backends};
use videosync_transcode::worker::{progress_topic, ProgressEvent};
use videosync_transcode::Stage;

mod common;
use common::{make_clip, small_ladder_job, spawn_worker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_process_reports_progress_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 8);
    let data = dir.path().join("data");
    let backends = Backends::open(&BackendUrls::embedded(&data)).await.unwrap();
    let source = "uploads/clip.mp4";
    backends
        .store
        .put(
            &ObjectKey::parse(source).unwrap(),
            std::fs::read(&clip).unwrap().into(),
        )
        .await
        .unwrap();
    let video = backends
        .catalog
        .create_video(NewVideo {
            source_key: Some(source.to_owned()),
            ..NewVideo::titled("two processes")
        })
        .await
        .unwrap()
        .id;
    let topic = progress_topic(video).unwrap();
    let mut tail = backends.log.tail(&topic, None).await.unwrap();
    let job = small_ladder_job(video, source, 2);
    backends
        .queue
        .enqueue(job.to_new_job().unwrap())
        .await
        .unwrap();
    let mut worker = spawn_worker(&data, &[]);
    let mut stages = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(item) = tail.next().await {
            if let TailItem::Entry(e) = item.unwrap() {
                let ev: ProgressEvent = serde_json::from_slice(&e.payload).unwrap();
                stages.push(ev.stage);
                if ev.stage == Stage::Done {
                    return ev.error;
                }
            }
        }
        Some("the log ended".to_owned())
    })
    .await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(
        outcome.expect("a done event within 60 s"),
        None,
        "{stages:?}"
    );
    assert!(stages.contains(&Stage::Encoding), "{stages:?}");
    assert_eq!(
        backends.catalog.get_video(video).await.unwrap().status,
        VideoStatus::Ready
    );
}
