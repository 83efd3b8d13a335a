//! `videosync transcode FILE --out DIR` as a user runs it: a ladder in the
//! directory and a summary on success; the error, a non-zero status and no
//! master playlist on failure.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::path::Path;
use std::process::Command;

fn make_clip(path: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=426x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "2",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(path)
        .status()
        .expect("ffmpeg runs (the test needs the ffmpeg CLI)");
    assert!(status.success());
}

fn videosync(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_videosync"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running videosync")
}

#[test]
fn transcode_writes_a_ladder_directory() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip);
    let out_dir = dir.path().join("ladder");
    let out = videosync(&[
        "transcode",
        clip.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--rungs",
        "240,144",
        "--segment-seconds",
        "1",
        "--format",
        "ts",
        "--preset",
        "ultrafast",
        "--encoder",
        "software",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("2 rungs"), "{summary}");
    for f in [
        "master.m3u8",
        "manifest.json",
        "poster.jpg",
        "storyboard/storyboard.vtt",
        "240p/index.m3u8",
        "240p/seg_00001.ts",
        "144p/index.m3u8",
        "audio/index.m3u8",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    assert!(
        !out_dir.join(".videosync-staging").exists(),
        "staging removed"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "ts");
    assert_eq!(manifest["renditions"][0]["name"], "240p");
}

#[test]
fn transcode_of_a_bad_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.mp4");
    std::fs::write(&bad, "plain text, not a video\n".repeat(40)).unwrap();
    let out_dir = dir.path().join("ladder");
    let out = videosync(&[
        "transcode",
        bad.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.mp4") && err.contains("not a media file"),
        "{err}"
    );
    assert!(!out_dir.join("master.m3u8").exists());
}
