//! Crash test with real processes: a child process appends to an upload and
//! is killed with SIGKILL at a random point; a fresh instance resumes from
//! `get().offset`, and the finished object's sha256 equals the source's.
//!
//! The child is this very test binary, re-run with `--exact child_appends`
//! and [`CHILD_ENV`] holding what to do; without that variable the child
//! test does nothing.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr
)] // Test code.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use videosync_core::conformance::uploads::{chunked, source};
use videosync_core::conformance::{service_url, unique_name};
use videosync_core::sql::Database;
use videosync_core::store::{store_from_url, MIN_PART_SIZE};
use videosync_core::uploads::{NewUpload, StoreUploads, UploadId, UploadOptions};
use videosync_core::{Clock, ManualClock, ObjectKey, ObjectStoreExt, SystemClock, UploadSessions};

const CHILD_ENV: &str = "VIDEOSYNC_UPLOAD_CRASH_CHILD";
/// Runs that must kill the child mid-upload; a run whose child finished
/// before the kill landed still checks the object, and another run is added
/// (up to [`MAX_RUNS`]).
const RUNS: usize = 10;
const MAX_RUNS: usize = 20;
const LEASE: Duration = Duration::from_secs(30);

/// What the child does.
#[derive(Debug, Serialize, Deserialize)]
struct Spec {
    db_url: String,
    store_url: String,
    staging: String,
    upload: String,
    len: usize,
    seed: u64,
}

async fn open(spec: &Spec, clock: Arc<dyn Clock>) -> StoreUploads {
    let db = Database::connect(&spec.db_url).await.unwrap();
    let store = store_from_url(&spec.store_url).await.unwrap();
    let opts = UploadOptions {
        part_size: MIN_PART_SIZE,
        staging: ObjectKey::parse(&spec.staging).unwrap(),
        lease: LEASE,
        ..UploadOptions::default()
    };
    StoreUploads::new(db, store, clock, opts).unwrap()
}

/// The child: appends the rest of the source in appends of random length
/// (so a kill lands in a part, a tail write or a commit), until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_appends() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Not a child: nothing to do.
    };
    let spec: Spec = serde_json::from_str(&spec).unwrap();
    let uploads = open(&spec, Arc::new(SystemClock::new())).await;
    let id = UploadId::parse(&spec.upload).unwrap();
    let data = source(spec.len, spec.seed);
    let mut offset = uploads.get(&id).await.unwrap().offset as usize;
    let mut rng = rand::rng();
    while offset < spec.len {
        let n = rng.random_range(1..=3 * 1024 * 1024).min(spec.len - offset);
        let chunk = rng.random_range(1..=256 * 1024);
        let end = uploads
            .append(
                &id,
                offset as u64,
                chunked(data.slice(offset..offset + n), chunk),
            )
            .await
            .unwrap();
        offset = end as usize;
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs until [`RUNS`] children were killed mid-upload: create, start a
/// child, kill it at a random point, resume here, compare hashes.
async fn crash_and_resume(db_url: impl Fn(usize) -> String, store_url: &str, prefix: &str) {
    let mut rng = rand::rng();
    let mut killed_at = Vec::new();
    for run in 0..MAX_RUNS {
        let crashed = killed_at
            .iter()
            .filter(|(o, l, done)| !done && o < l)
            .count();
        if crashed == RUNS {
            break;
        }
        let len = 3 * MIN_PART_SIZE + rng.random_range(0..MIN_PART_SIZE);
        let seed = 7000 + run as u64;
        let spec_base = Spec {
            db_url: db_url(run),
            store_url: store_url.to_owned(),
            staging: format!("{prefix}/.uploads"),
            upload: String::new(),
            len,
            seed,
        };
        let parent = open(&spec_base, Arc::new(SystemClock::new())).await;
        let key = ObjectKey::parse(&format!("{prefix}/run-{run}/video.mp4")).unwrap();
        let info = parent
            .create(NewUpload::new(key.clone()).total(len as u64))
            .await
            .unwrap();
        let spec = Spec {
            upload: info.id.to_string(),
            ..spec_base
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_appends",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, serde_json::to_string(&spec).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a random point: once the child has stored a random share
        // of the upload (polled, with a bound), after a further random delay.
        let target = (len as f64 * rng.random_range(0.0..0.85)) as u64;
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let offset = parent.get(&info.id).await.unwrap().offset;
                if offset >= target {
                    return;
                }
                assert!(child.try_wait().unwrap().is_none(), "the child ended early");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "run {run}: the child made no progress in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        let finished_first = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();

        // A fresh instance whose clock is past the dead child's lease.
        let later = ManualClock::new(
            SystemClock::new()
                .now()
                .saturating_add(LEASE + Duration::from_secs(1)),
        );
        let resumer = open(&spec, Arc::new(later)).await;
        let offset = resumer.get(&info.id).await.unwrap().offset as usize;
        killed_at.push((offset, len, finished_first || status.success()));
        let data = source(len, seed);
        if offset < len {
            resumer
                .append(
                    &info.id,
                    offset as u64,
                    chunked(data.slice(offset..), 1 << 20),
                )
                .await
                .unwrap();
        }
        resumer.finish(&info.id).await.unwrap();
        let got = resumer_store(&spec).await.get_bytes(&key).await.unwrap();
        assert_eq!(
            sha256(&got),
            sha256(&data),
            "run {run}: resumed from {offset} of {len}"
        );
    }
    eprintln!("crash runs (offset at kill, length, child had finished): {killed_at:?}");
    let crashed = killed_at
        .iter()
        .filter(|(o, l, done)| !done && o < l)
        .count();
    assert_eq!(
        crashed, RUNS,
        "runs that killed the child mid-upload: {killed_at:?}"
    );
}

async fn resumer_store(spec: &Spec) -> videosync_core::store::DynObjectStore {
    store_from_url(&spec.store_url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_append_fs_sqlite() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let store_url = format!("file://{}", root.join("objects").display());
    crash_and_resume(
        |run| {
            format!(
                "sqlite://{}",
                root.join(format!("state-{run}.db")).display()
            )
        },
        &store_url,
        "crash",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_append_s3_postgres() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (Some(pg), Some(s3)) = (
        service_url("VIDEOSYNC_TEST_POSTGRES_URL"),
        service_url("VIDEOSYNC_TEST_S3_URL"),
    ) else {
        return;
    };
    let url = videosync_core::conformance::postgres_namespace(&pg).await;
    let prefix = format!("crash/{}", unique_name("t"));
    crash_and_resume(|_| url.clone(), &s3, &prefix).await;
}
