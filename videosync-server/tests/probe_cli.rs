//! `videosync probe FILE` as a user runs it: JSON on success, the error and
//! a non-zero status on failure.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::process::Command;

#[test]
fn probe_prints_json() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clip = dir.path().join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=320x240:rate=25",
            "-t",
            "1",
            "-c:v",
            "libx264",
        ])
        .args(["-preset", "ultrafast"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs (the test needs the ffmpeg CLI)");
    assert!(status.success());

    let out = Command::new(env!("CARGO_BIN_EXE_videosync"))
        .arg("probe")
        .arg(&clip)
        .env("NO_COLOR", "1")
        .output()
        .expect("running videosync probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["video"]["codec"], "h264");
    assert_eq!(json["video"]["width"], 320);
    assert_eq!(json["video"]["height"], 240);
    assert_eq!(json["video"]["rotation"], 0);
    assert!(json["duration_ms"]
        .as_u64()
        .is_some_and(|d| (900..=1100).contains(&d)));
}

#[test]
fn probe_of_a_missing_file_fails_with_the_cause() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.mp4");
    let out = Command::new(env!("CARGO_BIN_EXE_videosync"))
        .arg("probe")
        .arg(&missing)
        .env("NO_COLOR", "1")
        .output()
        .expect("running videosync probe");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("probe of {} failed: file not found", missing.display());
    assert!(stderr.contains(&want), "{stderr}");
}
