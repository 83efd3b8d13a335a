//! One box, two processes: a `videosync worker` beside the server's
//! backends on the same SQLite file turns a job into a ready video, and its
//! progress reaches the server's side through the shared event log.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::process::{Command, Stdio};
use std::time::Duration;

use videosync_core::eventlog::TailItem;
use videosync_core::{NewVideo, ObjectKey, ObjectStoreExt, VideoStatus};
use videosync_hls::ladder::{LadderOptions, SegmentFormat};
use videosync_server::{BackendUrls, Backends};
use videosync_transcode::worker::{progress_topic, ProgressEvent, TranscodeJob};
use videosync_transcode::{EncoderChoice, Stage, TranscodeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_worker_process_reports_progress_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "8",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
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
    let job = TranscodeJob::Ladder {
        video,
        source_key: source.to_owned(),
        output_prefix: format!("videos/{video}"),
        options: TranscodeOptions {
            ladder: LadderOptions {
                rungs: vec![360, 240],
                segment_seconds: 2,
                format: SegmentFormat::Fmp4,
            },
            preset: "ultrafast".to_owned(),
            encoder: EncoderChoice::Software,
            ..TranscodeOptions::default()
        },
        segments_per_chunk: None,
    };
    backends
        .queue
        .enqueue(job.to_new_job().unwrap())
        .await
        .unwrap();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_videosync"))
        .args(["worker", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
