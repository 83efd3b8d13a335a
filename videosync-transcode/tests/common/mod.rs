//! Test media made by the `ffmpeg` CLI during the tests, shared by the
//! test binaries of this crate.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `ffmpeg -y -v error ARGS... OUT` and returns `OUT`.
pub(crate) fn ffmpeg(dir: &Path, out: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(out);
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin"])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg runs (the test needs the ffmpeg CLI)");
    assert!(status.success(), "ffmpeg {args:?} {out} failed");
    path
}

pub(crate) fn has_encoder(name: &str) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

pub(crate) fn video_src(size: &str, rate: &str, secs: &str) -> Vec<String> {
    vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("testsrc2=size={size}:rate={rate}"),
        "-t".into(),
        secs.into(),
    ]
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
