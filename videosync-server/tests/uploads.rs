//! Uploads against the real `videosync serve` process: tuspy (the tus
//! project's Python client) unchanged, with a connection cut mid-PATCH and
//! a resume, through processing to a ladder served over HTTP; and a server
//! SIGKILLed ten times in the middle of an upload, which every fresh
//! process resumes, ending in an object byte for byte the source.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sha2::Digest;

use common::make_clip;
use common::serve::{
    call, channel, fetch_public_ladder, quick_ladder, sign_up, tus_create, tus_headers, tus_upload,
    wait_processed, Server,
};

/// The venv `make test` installs the Python test tools into.
fn test_python() -> Option<PathBuf> {
    let cache = std::env::var_os("VIDEOSYNC_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/videosync")))?;
    let python = cache.join("venv/bin/python");
    let has_tuspy = Command::new(&python)
        .args(["-c", "import tusclient"])
        .status()
        .is_ok_and(|s| s.success());
    if has_tuspy {
        return Some(python);
    }
    assert!(
        std::env::var("VIDEOSYNC_REQUIRE_SERVICES").is_err(),
        "tuspy is missing from {}: run scripts/deps.sh test",
        python.display()
    );
    eprintln!("skipping: tuspy is not installed (run under `make test`)");
    None
}

#[test]
fn tuspy_uploads_unchanged_resumes_after_a_cut_and_the_video_plays() {
    let Some(python) = test_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 6);
    let size = std::fs::metadata(&clip).unwrap().len();
    assert!(
        size > 3 * 256 * 1024,
        "the clip ({size} bytes) spans several chunks"
    );
    let server = Server::start_in(&dir.path().join("data"), 1, &quick_ladder());
    let token = sign_up(&server, "ada");
    let channel = channel(&server, &token, "public");
    let base = format!("http://{}", server.addr);
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus/tuspy_upload.py"))
        .args([&base, &token, &channel])
        .arg(&clip)
        .output()
        .expect("running the tuspy script");
    assert!(
        out.status.success(),
        "tuspy failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout.lines().last().unwrap().trim().to_owned();
    let path = url.strip_prefix(&base).unwrap_or(&url).to_owned();
    let (status, headers, _) = call(&server.addr, "HEAD", &path, &tus_headers(&token), b"");
    assert_eq!(status, 200);
    assert_eq!(headers["upload-offset"], size.to_string());
    let video = headers["videosync-video-id"].clone();
    // The embedded worker makes the ladder.
    let v = wait_processed(&server, &token, &video);
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["title"], "Uploaded by tuspy");
    let fetched = fetch_public_ladder(&server, &video);
    assert!(fetched >= 4, "{fetched} files");
    server.stop();
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn originals_wait_in_an_interim_store_of_their_own_and_ladders_go_to_the_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 3);
    let source = std::fs::read(&clip).unwrap();
    let interim = dir.path().join("interim");
    let data = dir.path().join("data");
    let mut env = quick_ladder();
    env.push((
        "VIDEOSYNC_UPLOAD_STORE_URL",
        format!("file://{}", interim.display()),
    ));
    env.push(("VIDEOSYNC_KEEP_ORIGINALS", "true".to_owned()));
    let server = Server::start_in(&data, 1, &env);
    let token = sign_up(&server, "ada");
    let channel = channel(&server, &token, "public");
    let video = tus_upload(&server, &token, &channel, "Two stores", &source);
    let v = wait_processed(&server, &token, &video);
    assert_eq!(v["status"], "ready", "{v}");
    assert!(fetch_public_ladder(&server, &video) >= 2);
    // The original (kept, as configured) is in the interim store only, byte
    // for byte; the ladder is in the final store only.
    let simple = video.replace('-', "");
    let kept = interim.join(format!("objects/uploads/{simple}/source"));
    assert_eq!(std::fs::read(&kept).unwrap(), source);
    let finals = files_under(&data.join("store/objects"));
    assert!(
        finals.iter().all(|f| !f.starts_with("uploads/")),
        "{finals:?}"
    );
    assert!(
        finals
            .iter()
            .any(|f| f.starts_with(&format!("videos/{simple}/")) && f.ends_with("master.m3u8")),
        "{finals:?}"
    );
    assert!(
        files_under(&interim.join("objects"))
            .iter()
            .all(|f| f.starts_with("uploads/")),
        "nothing but originals in the interim store"
    );
    // Deleting the video takes the original from the interim store too.
    server.expect(
        204,
        "DELETE",
        &format!("/api/v1/videos/{video}"),
        Some(&token),
        None,
    );
    assert!(!kept.exists());
    server.stop();
}

/// A file that starts like an MP4 and goes on with random bytes (nothing
/// transcodes it: the server runs no workers here).
fn mp4_like(len: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut data = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    data.resize(len, 0);
    rng.fill(&mut data[24..]);
    data
}

/// Sends a PATCH of `data[offset..]` slowly (64 KiB every 4 ms) over its
/// own connection, until the server dies or the bytes run out.
fn slow_patch(addr: String, path: String, token: String, data: Vec<u8>, offset: usize) {
    let Ok(mut stream) = TcpStream::connect(&addr) else {
        return;
    };
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {}\r\n\r\n",
        data.len() - offset
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for chunk in data[offset..].chunks(64 * 1024) {
        if stream.write_all(chunk).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(4));
    }
}

#[test]
fn a_server_sigkilled_ten_times_mid_upload_loses_nothing() {
    let seed = std::env::var("VIDEOSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash seed {seed} (VIDEOSYNC_CRASH_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = mp4_like(40 << 20, &mut rng);
    let env = vec![("VIDEOSYNC_UPLOAD_LEASE_SECONDS", "1".to_owned())];
    let server = Server::start_in(&data_dir, 0, &env);
    let token = sign_up(&server, "ada");
    let channel = channel(&server, &token, "public");
    let (path, video) = tus_create(&server, &token, &channel, "Survivor", data.len());
    let mut server = Some(server);
    let mut offsets = Vec::new();
    for round in 0..10 {
        let s = server
            .take()
            .unwrap_or_else(|| Server::start_in(&data_dir, 0, &env));
        let (status, headers, _) = call(&s.addr, "HEAD", &path, &tus_headers(&token), b"");
        assert_eq!(status, 200, "round {round}");
        let offset: usize = headers["upload-offset"].parse().unwrap();
        offsets.push(offset);
        // The killed process's hold on the upload lapses after the lease
        // (1 s here); a PATCH before that is refused with 409, as it should.
        std::thread::sleep(Duration::from_millis(1100));
        let writer = {
            let (addr, path, token, data) =
                (s.addr.clone(), path.clone(), token.clone(), data.clone());
            std::thread::spawn(move || slow_patch(addr, path, token, data, offset))
        };
        // Every other round lasts long enough to store a part (8 MiB at the
        // writer's 16 MiB/s), so resuming from a stored offset is exercised;
        // the others kill at any moment, also before the server listens.
        let ms = if round % 2 == 1 {
            rng.random_range(1500..3000)
        } else {
            rng.random_range(150..1500)
        };
        std::thread::sleep(Duration::from_millis(ms));
        let mut s = s;
        s.child.kill().expect("SIGKILL");
        s.child.wait().unwrap();
        writer.join().unwrap();
    }
    // A fresh process finishes the upload (after the dead one's lease).
    let s = Server::start_in(&data_dir, 0, &env);
    let mut tries = 0;
    let final_offset = loop {
        let (status, headers, _) = call(&s.addr, "HEAD", &path, &tus_headers(&token), b"");
        assert_eq!(status, 200);
        let offset: usize = headers["upload-offset"].parse().unwrap();
        let mut patch = tus_headers(&token);
        patch.push(("Content-Type", "application/offset+octet-stream".to_owned()));
        patch.push(("Upload-Offset", offset.to_string()));
        let (status, headers, body) = call(&s.addr, "PATCH", &path, &patch, &data[offset..]);
        if status == 204 {
            assert_eq!(headers["videosync-video-id"], video);
            break offset;
        }
        assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
        tries += 1;
        assert!(tries < 300, "the upload stayed taken for a minute");
        std::thread::sleep(Duration::from_millis(200));
    };
    offsets.push(final_offset);
    println!("offsets at each restart: {offsets:?}");
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "stored bytes never go back: {offsets:?}"
    );
    assert!(
        final_offset > 0,
        "something survived the crashes: {offsets:?}"
    );
    let v = s.expect(
        200,
        "GET",
        &format!("/api/v1/videos/{video}"),
        Some(&token),
        None,
    );
    assert_eq!(v["status"], "pending", "{v}");
    s.stop();
    // The stored original is the source, byte for byte.
    let key =
        videosync_core::ObjectKey::parse(&format!("uploads/{}/source", video.replace('-', "")))
            .unwrap();
    let stored = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = videosync_core::store::fs::FsStore::open(data_dir.join("store"))
            .await
            .unwrap();
        videosync_core::ObjectStoreExt::get_bytes(&store, &key)
            .await
            .unwrap()
    });
    assert_eq!(stored.len(), data.len());
    assert_eq!(
        sha2::Sha256::digest(&stored),
        sha2::Sha256::digest(&data),
        "the object's sha256 equals the source's"
    );
}
