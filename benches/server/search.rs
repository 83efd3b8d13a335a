//! Search latency through the core's `Videos::search_videos` (a read
//! transaction, the search, the commit: what the search handler does besides
//! JSON), over the same generated catalog on every database, for an
//! anonymous visitor and a member, one query at a time.

use serde::Serialize;
use videosync::core::db::{Videos, Viewer};
use videosync::core::page::PageRequest;
use videosync::core::sql::Database;
use videosync::core::SystemClock;

use super::{percentile, spread, Spread, Watch};

/// The fixed queries: (kind, text).
const QUERIES: &[(&str, &str)] = &[
    ("one word", "guitar"),
    ("two words", "guitar lesson"),
    ("prefix", "cook"),
    ("rare", super::gen::RARE_WORD),
    ("common", "music"),
];

/// The queries of this run: the fixed ones, or under
/// `VIDEOSYNC_BENCH_SEARCH_QUERIES` (comma-separated; for probing, in
/// search-only runs) those.
pub(crate) fn queries() -> Vec<(&'static str, &'static str)> {
    match std::env::var("VIDEOSYNC_BENCH_SEARCH_QUERIES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|q| ("probe", &*String::leak(q.trim().to_owned())))
            .collect(),
        _ => QUERIES.to_vec(),
    }
}

/// One database to measure.
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) db: Database,
    pub(crate) member: Viewer,
}

/// The latency of one (database, query, viewer) cell.
#[derive(Debug, Serialize)]
pub(crate) struct SearchCell {
    pub(crate) database: String,
    pub(crate) kind: &'static str,
    pub(crate) query: &'static str,
    pub(crate) viewer: &'static str,
    /// Videos the query matches, whoever may see them.
    pub(crate) matching: usize,
    /// Results on the first page for this viewer.
    pub(crate) returned: usize,
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// The p50 of each round: median (min..max).
    pub(crate) round_p50_ms: Spread,
}

/// Every sample of one database, pooled.
#[derive(Debug, Serialize)]
pub(crate) struct SearchTotal {
    pub(crate) database: String,
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// The p99 of each round: median (min..max).
    pub(crate) round_p99_ms: Spread,
    pub(crate) target_p99_ms: f64,
    pub(crate) meets_target: bool,
}

/// The search section of the report.
#[derive(Debug, Serialize)]
pub(crate) struct SearchReport {
    pub(crate) videos: usize,
    pub(crate) rounds: usize,
    pub(crate) samples_per_round: usize,
    pub(crate) page_size: usize,
    pub(crate) cells: Vec<SearchCell>,
    pub(crate) totals: Vec<SearchTotal>,
}

/// The search target of the issue, milliseconds at p99.
pub(crate) const TARGET_P99_MS: f64 = 20.0;

async fn once(clock: &SystemClock, db: &Database, q: &str, viewer: Viewer) -> (f64, usize) {
    let w = Watch::start(clock);
    let mut tx = db.read().await.unwrap();
    let page = tx
        .search_videos(q, viewer, PageRequest::first(PAGE))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (w.secs() * 1000.0, page.items.len())
}

/// The page size of every search (the API's default).
const PAGE: usize = 50;

/// Measures every (target, query, viewer) cell `samples` times in each of
/// `rounds` rounds. Within a round the cells take turns sample by sample,
/// so a slow moment of the machine lands on all of them.
pub(crate) async fn run(
    clock: &SystemClock,
    targets: &[Target],
    (videos, matching): (usize, &[usize]),
    rounds: usize,
    samples: usize,
) -> SearchReport {
    let viewers = |t: &Target| [("anonymous", Viewer::default()), ("member", t.member)];
    let queries = queries();
    // One pass to warm caches and record the result counts.
    let mut returned = Vec::new();
    for t in targets {
        for &(_, q) in &queries {
            for (_, v) in viewers(t) {
                returned.push(once(clock, &t.db, q, v).await.1);
            }
        }
    }
    let cells = targets.len() * queries.len() * 2;
    // [round][cell] -> samples
    let mut lat = vec![vec![Vec::with_capacity(samples); cells]; rounds];
    for (round, round_lat) in lat.iter_mut().enumerate() {
        for _ in 0..samples {
            // Alternate which database goes first.
            for ti in 0..targets.len() {
                let ti = (ti + round) % targets.len();
                let t = &targets[ti];
                for (qi, (_, q)) in queries.iter().enumerate() {
                    for (vi, (_, v)) in viewers(t).into_iter().enumerate() {
                        let (ms, _) = once(clock, &t.db, q, v).await;
                        round_lat[(ti * queries.len() + qi) * 2 + vi].push(ms);
                    }
                }
            }
        }
        println!("search: round {}/{rounds} done", round + 1);
    }
    let mut out = Vec::new();
    let mut totals = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        let mut pooled = Vec::new();
        let mut round_pooled = vec![Vec::new(); rounds];
        for (qi, (kind, q)) in queries.iter().enumerate() {
            for (vi, (viewer, _)) in viewers(t).into_iter().enumerate() {
                let idx = (ti * queries.len() + qi) * 2 + vi;
                let per_round: Vec<&Vec<f64>> = lat.iter().map(|r| &r[idx]).collect();
                let mut all: Vec<f64> = per_round.iter().copied().flatten().copied().collect();
                all.sort_by(f64::total_cmp);
                let round_p50: Vec<f64> = per_round
                    .iter()
                    .map(|r| {
                        let mut r = (*r).clone();
                        r.sort_by(f64::total_cmp);
                        percentile(&r, 0.50)
                    })
                    .collect();
                for (ri, r) in per_round.iter().enumerate() {
                    round_pooled[ri].extend(r.iter().copied());
                }
                pooled.extend(all.iter().copied());
                out.push(SearchCell {
                    database: t.name.clone(),
                    kind,
                    query: q,
                    viewer,
                    matching: matching[qi],
                    returned: returned[idx],
                    samples: all.len(),
                    p50_ms: percentile(&all, 0.50),
                    p99_ms: percentile(&all, 0.99),
                    max_ms: all.last().copied().unwrap_or(f64::NAN),
                    round_p50_ms: spread(round_p50),
                });
            }
        }
        pooled.sort_by(f64::total_cmp);
        let round_p99: Vec<f64> = round_pooled
            .into_iter()
            .map(|mut r| {
                r.sort_by(f64::total_cmp);
                percentile(&r, 0.99)
            })
            .collect();
        let p99 = percentile(&pooled, 0.99);
        totals.push(SearchTotal {
            database: t.name.clone(),
            samples: pooled.len(),
            p50_ms: percentile(&pooled, 0.50),
            p99_ms: p99,
            round_p99_ms: spread(round_p99),
            target_p99_ms: TARGET_P99_MS,
            meets_target: p99 <= TARGET_P99_MS,
        });
    }
    SearchReport {
        videos,
        rounds,
        samples_per_round: samples,
        page_size: PAGE,
        cells: out,
        totals,
    }
}
