//! Makes an HLS ladder from a local file into a directory through the SDK,
//! printing progress as it goes.
//!
//! ```text
//! cargo run --release --features transcode --example ladder -- INPUT OUT_DIR [RUNGS]
//! ```
//!
//! `RUNGS` is a comma-separated list of short sides (default
//! `1080,720,480,360`; rungs above the source are left out). Open
//! `OUT_DIR/master.m3u8` in any HLS player.
#![allow(clippy::print_stdout)] // An example prints.

use std::sync::Arc;

use anyhow::{bail, Context};
use videosync::core::store::fs::FsStore;
use videosync::transcode::{
    transcode, CancelToken, Destination, Progress, ProgressFn, Stage, TranscodeOptions,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(out)) = (args.first(), args.get(1)) else {
        bail!("usage: ladder INPUT OUT_DIR [RUNGS]");
    };
    let mut opts = TranscodeOptions::default();
    if let Some(rungs) = args.get(2) {
        opts.ladder.rungs = rungs
            .split(',')
            .map(|r| r.trim().parse().context("rungs are numbers, like 720,360"))
            .collect::<anyhow::Result<_>>()?;
    }

    // Objects straight into OUT_DIR; writes are staged beside it.
    let out = std::path::Path::new(out);
    let staging = out.with_extension("staging");
    let store = FsStore::open_dirs(out, &staging).await?;
    let dest = Destination::new(Arc::new(store), None);

    let progress: ProgressFn = Arc::new(|p: &Progress| match p.stage {
        Stage::Encoding => println!(
            "encoding {:5.1} %  {:6.1} fps  {:4.2}x real time",
            p.percent, p.fps, p.speed
        ),
        stage => println!("{stage:?}"),
    });
    let result = transcode(input, &dest, &opts, Some(progress), &CancelToken::new()).await;
    let _ = std::fs::remove_dir_all(&staging);
    let manifest = result?;

    println!(
        "{}: {:.1} s, {} with {}",
        out.join(&manifest.master).display(),
        manifest.duration_s,
        manifest.format.extension(),
        manifest.encoder.ffmpeg_name()
    );
    for r in &manifest.renditions {
        let r = &r.rendition;
        println!(
            "  {:>6} {:>4}x{:<4} {:>6} kb/s peak  {}",
            r.name,
            r.width,
            r.height,
            r.bandwidth / 1000,
            r.codecs
        );
    }
    Ok(())
}
