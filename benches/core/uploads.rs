//! Upload sessions: append throughput beside a plain streamed `put` of the
//! same bytes to the same store, in alternating rounds.
//!
//! Three ways of sending the same bytes, each timed from `create` to the end
//! of `finish` (the object is complete and visible):
//! - one append whose body arrives in 1 MiB chunks (a streamed tus PATCH);
//! - one append whose body arrives in 64 KiB chunks;
//! - one append per 1 MiB (a tus client with a 1 MiB chunk size: every call
//!   goes through the tail segments).
//!
//! The baseline is `put` of a stream with the same chunks. State is on
//! SQLite; parts are 8 MiB (the default).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use videosync::core::conformance::unique_name;
use videosync::core::sql::Database;
use videosync::core::store::{ByteStream, DynObjectStore, PutPayload};
use videosync::core::uploads::{NewUpload, StoreUploads, UploadOptions};
use videosync::core::{Clock, ObjectKey, ObjectStoreExt, SystemClock, UploadSessions};

use super::{mib_s, Watch};

/// Alternating rounds of each measurement.
const ROUNDS: usize = 5;

#[derive(Debug, Serialize)]
pub(crate) struct UploadResult {
    backend: String,
    pattern: String,
    bytes: usize,
    rounds: usize,
    append_mib_s_median: f64,
    append_mib_s_min: f64,
    append_mib_s_max: f64,
    put_mib_s_median: f64,
    put_mib_s_min: f64,
    put_mib_s_max: f64,
    ratio: f64,
}

/// `total` bytes as `chunk`-byte pieces of one random 1 MiB block.
fn body(block: &Bytes, total: usize, chunk: usize) -> ByteStream {
    let block = block.clone();
    let n = total.div_ceil(chunk);
    futures::stream::iter((0..n).map(move |i| {
        let start = (i * chunk) % block.len();
        let len = chunk.min(total - i * chunk).min(block.len() - start);
        Ok(block.slice(start..start + len))
    }))
    .boxed()
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Runs every pattern on `store`, `total` bytes each.
pub(crate) async fn run(
    clock: &SystemClock,
    backend: &str,
    store: DynObjectStore,
    prefix: &str,
    db_url: &str,
    total: usize,
) -> Vec<UploadResult> {
    let db = Database::connect(db_url).await.unwrap();
    let shared: Arc<dyn Clock> = Arc::new(*clock);
    let opts = UploadOptions {
        staging: ObjectKey::parse(&format!("{prefix}/.uploads")).unwrap(),
        ..UploadOptions::default()
    };
    let uploads = StoreUploads::new(db, store.clone(), shared, opts).unwrap();
    let block: Bytes = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    const MIB: usize = 1024 * 1024;
    // (label, chunk size of the body, bytes per append call)
    let patterns = [
        ("1 append, 1 MiB chunks", MIB, total),
        ("1 append, 64 KiB chunks", 64 * 1024, total),
        ("appends of 1 MiB", MIB, MIB),
    ];
    let mut results = Vec::new();
    for (label, chunk, per_call) in patterns {
        let (mut appends, mut puts) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let key = ObjectKey::parse(&format!("{prefix}/{}", unique_name("u"))).unwrap();
            // Alternate which goes first, so neither always runs on a
            // warmer cache.
            for first in [round % 2 == 0, round % 2 != 0] {
                if first {
                    let w = Watch::start(clock);
                    let info = uploads
                        .create(NewUpload::new(key.clone()).total(total as u64))
                        .await
                        .unwrap();
                    let mut at = 0;
                    while at < total {
                        let n = per_call.min(total - at);
                        // The body's bytes are the same whatever the offset;
                        // only their amount matters here.
                        at = uploads
                            .append(&info.id, at as u64, body(&block, n, chunk))
                            .await
                            .unwrap() as usize;
                    }
                    let meta = uploads.finish(&info.id).await.unwrap();
                    assert_eq!(meta.size, total as u64);
                    appends.push(mib_s(total, w.secs()));
                } else {
                    let w = Watch::start(clock);
                    let meta = store
                        .put(&key, PutPayload::Stream(body(&block, total, chunk)))
                        .await
                        .unwrap();
                    assert_eq!(meta.size, total as u64);
                    puts.push(mib_s(total, w.secs()));
                }
                store.delete(&key).await.unwrap();
            }
        }
        let (am, amin, amax) = stats(appends);
        let (pm, pmin, pmax) = stats(puts);
        println!(
            "uploads {backend} {label}: append {am:.1} MiB/s ({amin:.1}..{amax:.1}) vs put {pm:.1} MiB/s ({pmin:.1}..{pmax:.1})"
        );
        results.push(UploadResult {
            backend: backend.into(),
            pattern: label.into(),
            bytes: total,
            rounds: ROUNDS,
            append_mib_s_median: am,
            append_mib_s_min: amin,
            append_mib_s_max: amax,
            put_mib_s_median: pm,
            put_mib_s_min: pmin,
            put_mib_s_max: pmax,
            ratio: am / pm,
        });
    }
    results
}

/// The report's section.
pub(crate) fn markdown(results: &[UploadResult]) -> String {
    let mut md = format!(
        "\n## Upload sessions (create → append → finish, {ROUNDS} alternating rounds, MiB/s median (min..max))\n\n"
    );
    md.push_str("| backend | size | pattern | append | streamed put | ratio |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    for r in results {
        md.push_str(&format!(
            "| {} | {} MiB | {} | {:.1} ({:.1}..{:.1}) | {:.1} ({:.1}..{:.1}) | {:.2} |\n",
            r.backend,
            r.bytes / (1024 * 1024),
            r.pattern,
            r.append_mib_s_median,
            r.append_mib_s_min,
            r.append_mib_s_max,
            r.put_mib_s_median,
            r.put_mib_s_min,
            r.put_mib_s_max,
            r.ratio
        ));
    }
    md.push_str(
        "\nAppend goes through 8 MiB multipart parts plus a durable tail (state on SQLite) and \
         ends with `complete_multipart`; the baseline is one streamed `put` of the same chunks.\n",
    );
    md
}
