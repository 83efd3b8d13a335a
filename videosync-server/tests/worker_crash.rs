//! Crash safety of the transcode path with real processes: a `videosync
//! worker` is SIGKILLed at a random point of a transcode, a fresh worker
//! process takes over, and the video must end ready exactly once (one
//! published ladder, every file of it present) with no file of a dead
//! attempt reachable through it. Ten runs, random kill points from a seed
//! printed on failure.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use videosync_core::{NewVideo, ObjectKey, ObjectStoreExt, VideoStatus};
use videosync_server::{BackendUrls, Backends};

mod common;
use common::{make_clip, small_ladder_job, spawn_worker};

const RUNS: usize = 10;

/// Every object the published ladder references, from its master playlist.
async fn published_files(backends: &Backends, prefix: &str) -> Vec<String> {
    let get = |k: String| async move {
        let key = ObjectKey::parse(&k).unwrap();
        String::from_utf8(backends.store.get_bytes(&key).await.unwrap().to_vec()).unwrap()
    };
    let master = get(format!("{prefix}/master.m3u8")).await;
    let m3u8_rs::Playlist::MasterPlaylist(master) =
        m3u8_rs::parse_playlist_res(master.as_bytes()).unwrap()
    else {
        panic!("master.m3u8 is not a master playlist");
    };
    let mut files = vec![format!("{prefix}/master.m3u8")];
    let mut media = Vec::new();
    media.extend(master.variants.iter().map(|v| v.uri.clone()));
    media.extend(master.alternatives.iter().filter_map(|a| a.uri.clone()));
    for uri in media {
        assert!(
            !uri.contains("..") && !uri.starts_with('/'),
            "relative URIs only: {uri}"
        );
        let path = format!("{prefix}/{uri}");
        let dir = path.rsplit_once('/').map(|(d, _)| d.to_owned()).unwrap();
        let text = get(path.clone()).await;
        let m3u8_rs::Playlist::MediaPlaylist(pl) =
            m3u8_rs::parse_playlist_res(text.as_bytes()).unwrap()
        else {
            panic!("{path} is not a media playlist");
        };
        files.push(path);
        for seg in &pl.segments {
            files.push(format!("{dir}/{}", seg.uri));
            if let Some(map) = &seg.map {
                files.push(format!("{dir}/{}", map.uri));
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_never_loses_or_corrupts_a_video() {
    let seed: u64 = std::env::var("VIDEOSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (VIDEOSYNC_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let media = tempfile::tempdir().unwrap();
    let clip = media.path().join("clip.mp4");
    make_clip(&clip, 20);
    let clip_bytes = std::fs::read(&clip).unwrap();
    let mut took_over = 0;
    for run in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let backends = Backends::open(&BackendUrls::embedded(&data)).await.unwrap();
        let source = "uploads/clip.mp4".to_owned();
        backends
            .store
            .put(
                &ObjectKey::parse(&source).unwrap(),
                clip_bytes.clone().into(),
            )
            .await
            .unwrap();
        let video = backends
            .catalog
            .create_video(NewVideo {
                source_key: Some(source.clone()),
                ..NewVideo::titled(format!("run {run}"))
            })
            .await
            .unwrap()
            .id;
        let base = format!("videos/{video}");
        let job = small_ladder_job(video, &source, 1);
        backends
            .queue
            .enqueue(job.to_new_job().unwrap())
            .await
            .unwrap();

        // The first worker dies at a random point: before it reserves, while
        // it decodes, encodes or writes segments, or around publishing.
        let mut first = spawn_worker(&data, &["--lease-seconds", "3"]);
        let kill_after = Duration::from_millis(rng.random_range(50..1500));
        tokio::time::sleep(kill_after).await;
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();
        let at_kill = backends.catalog.get_video(video).await.unwrap();
        eprintln!(
            "run {run}: killed after {kill_after:?}, video {}",
            at_kill.status
        );

        // A fresh worker finishes the job (after the dead lease runs out).
        let mut second = spawn_worker(&data, &["--lease-seconds", "3"]);
        let mut waited = 0;
        let done = loop {
            // Counts first: the ack is the worker's last step, so once the
            // job is settled the video read after it is final.
            let c = backends.queue.counts().await.unwrap();
            let v = backends.catalog.get_video(video).await.unwrap();
            // Settled: a final status and the job acked (a job whose worker
            // died between "ready" and the ack is redelivered once the lease
            // runs out, and the redelivery must do nothing).
            if matches!(v.status, VideoStatus::Ready | VideoStatus::Failed)
                && c.ready + c.scheduled + c.running == 0
            {
                break v;
            }
            waited += 1;
            assert!(
                waited < 900,
                "run {run} (seed {seed}, kill after {kill_after:?}): still {} after 90 s",
                v.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        second.kill().unwrap();
        second.wait().unwrap();

        let ctx = format!(
            "run {run} (seed {seed}, kill after {kill_after:?}, {} at the kill)",
            at_kill.status
        );
        assert_eq!(
            done.status,
            VideoStatus::Ready,
            "{ctx}: {:?}",
            done.failure_reason
        );
        if at_kill.status == VideoStatus::Processing {
            took_over += 1;
            assert!(
                done.attempt >= 2,
                "{ctx}: the second worker took over with a new attempt"
            );
        }
        let published = done.output_prefix.clone().expect("a published prefix");
        assert_eq!(published, format!("{base}/a{}", done.attempt), "{ctx}");
        // Every file the ladder references exists and belongs to the
        // published attempt.
        let referenced = published_files(&backends, &published).await;
        assert!(referenced.len() > 5, "{ctx}: {referenced:?}");
        for f in &referenced {
            assert!(
                f.starts_with(&format!("{published}/")),
                "{ctx}: {f} outside the published attempt"
            );
            assert!(
                backends
                    .store
                    .exists(&ObjectKey::parse(f).unwrap())
                    .await
                    .unwrap(),
                "{ctx}: {f} is referenced but missing"
            );
        }
        // Ready exactly once: nothing dead-lettered, and the video did not
        // move after it was ready.
        assert_eq!(backends.queue.counts().await.unwrap().dead, 0, "{ctx}");
        assert_eq!(
            backends.catalog.get_video(video).await.unwrap(),
            done,
            "{ctx}"
        );
        // Files of dead attempts are gone (the takeover removes them).
        let all = backends
            .store
            .list(Some(&ObjectKey::parse(&base).unwrap()))
            .await
            .unwrap();
        let stray: Vec<_> = all
            .iter()
            .filter(|m| !m.key.as_str().starts_with(&format!("{published}/")))
            .map(|m| m.key.as_str().to_owned())
            .collect();
        assert!(
            stray.is_empty(),
            "{ctx}: files of dead attempts remain: {stray:?}"
        );
    }
    eprintln!("{took_over} of {RUNS} kills landed mid-transcode");
    // The clip takes about 1.3 s to transcode here; a test whose kills
    // all missed the transcode would prove nothing.
    assert!(
        took_over >= 3,
        "only {took_over} of {RUNS} kills landed mid-transcode (seed {seed})"
    );
}
