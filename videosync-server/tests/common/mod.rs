//! Helpers shared by the tests that run `videosync worker` processes.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // Test code; each test uses a part.

pub(crate) mod serve;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use videosync_core::VideoId;
use videosync_hls::ladder::{LadderOptions, SegmentFormat};
use videosync_transcode::worker::TranscodeJob;
use videosync_transcode::{EncoderChoice, TranscodeOptions};

/// A 640x360 30 fps clip with a tone, `secs` long, at `path`.
pub(crate) fn make_clip(path: &Path, secs: u32) {
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
        ])
        .arg(secs.to_string())
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(path)
        .status()
        .expect("ffmpeg runs (the test needs the ffmpeg CLI)");
    assert!(status.success());
}

/// A quick two-rung ladder job for `video` (360p and 240p, ultrafast).
pub(crate) fn small_ladder_job(
    video: VideoId,
    source_key: &str,
    segment_seconds: u32,
) -> TranscodeJob {
    TranscodeJob::Ladder {
        video,
        source_key: source_key.to_owned(),
        output_prefix: format!("videos/{video}"),
        options: TranscodeOptions {
            ladder: LadderOptions {
                rungs: vec![360, 240],
                segment_seconds,
                format: SegmentFormat::Fmp4,
            },
            preset: "ultrafast".to_owned(),
            encoder: EncoderChoice::Software,
            ..TranscodeOptions::default()
        },
        segments_per_chunk: None,
    }
}

/// `videosync worker` on the embedded backends under `data`, quiet.
pub(crate) fn spawn_worker(data: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_videosync"))
        .arg("worker")
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting videosync worker")
}
