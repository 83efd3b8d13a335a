//! The command line: migrate, the admin commands, and errors as one line.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn videosync(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_videosync"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("VIDEOSYNC_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running videosync");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("its output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn migrate_and_administer_users_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = videosync(&data, &["migrate"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("schema up to date"));

    let out = videosync(
        &data,
        &["admin", "create-user", "ada"],
        Some("correct horse battery\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("created user ada"),
        "{}",
        text(&out.stdout)
    );
    let out = videosync(
        &data,
        &["admin", "create-user", "ada"],
        Some("correct horse battery\n"),
    );
    assert!(!out.status.success());
    let out = videosync(&data, &["admin", "create-user", "bob"], Some("short\n"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("at least 8 characters"),
        "{}",
        text(&out.stderr)
    );

    let out = videosync(&data, &["admin", "make-admin", "ADA"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ada is an instance administrator");
    let out = videosync(&data, &["admin", "make-admin", "ada", "--revoke"], None);
    assert_eq!(
        text(&out.stdout).trim(),
        "ada is no longer an instance administrator"
    );
    let out = videosync(&data, &["admin", "make-admin", "nobody"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no user with the login nobody"));

    let out = videosync(&data, &["admin", "dead-letters"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "no dead-lettered jobs");
    let out = videosync(&data, &["admin", "requeue", "not-a-job"], None);
    assert!(!out.status.success());
    let out = videosync(&data, &["admin", "requeue", &uuid_like()], None);
    assert!(!out.status.success());
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// (`--print-config` and bad configurations are in `serve.rs`.)
#[test]
fn help_never_shows_secrets_and_backend_mistakes_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let help = Command::new(env!("CARGO_BIN_EXE_videosync"))
        .args(["serve", "--help"])
        .env(
            "VIDEOSYNC_JWT_SECRET",
            "a-very-secret-value-that-is-long-enough",
        )
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(!text(&help.stdout).contains("a-very-secret"));
    for (env, expected) in [
        (
            ("VIDEOSYNC_DATABASE_URL", "mysql://db/x"),
            "not sqlite:// or postgres://",
        ),
        (
            ("VIDEOSYNC_DATABASE_URL", "postgres://db.invalid/x"),
            "VIDEOSYNC_JWT_SECRET",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_videosync"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env(env.0, env.1)
            .env("RUST_LOG", "off")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("videosync: ") && err.contains(expected),
            "{err}"
        );
    }
}
