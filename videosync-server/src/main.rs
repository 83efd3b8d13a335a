//! `videosync`: the reference server's command line. Wiring only: parse
//! arguments, open the backends, serve.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use videosync_server::{router, BackendUrls, Backends};

#[derive(Debug, Parser)]
#[command(
    name = "videosync",
    version,
    about = "Shared video: upload, transcode, deliver, watch together."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Probe a media file and print what it contains as JSON.
    Probe(ProbeArgs),
    /// Transcode a media file into an HLS ladder in a directory.
    Transcode(TranscodeArgs),
    /// Run transcode jobs from the queue until stopped (Ctrl-C, SIGTERM).
    Worker(WorkerArgs),
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    #[command(flatten)]
    backends: BackendArgs,
    /// Lease on a job, renewed by heartbeats every third of it.
    #[arg(long, default_value_t = 60)]
    lease_seconds: u64,
    /// Where sources are downloaded while they are transcoded.
    #[arg(long, env = "VIDEOSYNC_SCRATCH_DIR")]
    scratch_dir: Option<PathBuf>,
    /// Remove an uploaded source once its ladder is ready.
    #[arg(long)]
    remove_source: bool,
}

#[derive(Debug, clap::Args)]
struct TranscodeArgs {
    /// The media file.
    file: PathBuf,
    /// Output directory (created; `master.m3u8` is written last).
    #[arg(long)]
    out: PathBuf,
    /// Rung short sides; rungs above the source are dropped.
    #[arg(long, value_delimiter = ',', default_value = "1080,720,480,360")]
    rungs: Vec<u32>,
    /// Target segment length in seconds.
    #[arg(long, default_value_t = 4)]
    segment_seconds: u32,
    /// Segment container.
    #[arg(long, value_enum, default_value_t = FormatArg::Fmp4)]
    format: FormatArg,
    /// x264 preset.
    #[arg(long, default_value = "veryfast")]
    preset: String,
    /// H.264 encoder: auto (NVENC when a GPU is usable), software, nvenc.
    #[arg(long, value_enum, default_value_t = EncoderArg::Auto)]
    encoder: EncoderArg,
    /// Threads per x264 encoder (0: x264 chooses).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Skip the poster and the storyboard.
    #[arg(long)]
    no_images: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Fmp4,
    Ts,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EncoderArg {
    Auto,
    Software,
    Nvenc,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// The media file.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VIDEOSYNC_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    backends: BackendArgs,
    /// Transcode workers run inside the server (0: none; run `videosync
    /// worker` processes instead).
    #[arg(long, env = "VIDEOSYNC_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Lease on a job, renewed by heartbeats every third of it.
    #[arg(long, default_value_t = 60)]
    lease_seconds: u64,
    /// Where the embedded workers download sources.
    #[arg(long, env = "VIDEOSYNC_SCRATCH_DIR")]
    scratch_dir: Option<PathBuf>,
}

/// Where the backends are; every one defaults to an embedded backend under
/// the data directory.
#[derive(Debug, clap::Args)]
struct BackendArgs {
    /// Data directory of the embedded backends.
    #[arg(long, env = "VIDEOSYNC_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Object store URL (default: files under the data directory).
    #[arg(long, env = "VIDEOSYNC_STORE_URL")]
    store_url: Option<String>,
    /// Job queue URL (default: SQLite under the data directory).
    #[arg(long, env = "VIDEOSYNC_QUEUE_URL")]
    queue_url: Option<String>,
    /// Event bus URL (default: in-process).
    #[arg(long, env = "VIDEOSYNC_BUS_URL")]
    bus_url: Option<String>,
    /// Catalog database URL (default: SQLite under the data directory).
    #[arg(long, env = "VIDEOSYNC_CATALOG_URL")]
    catalog_url: Option<String>,
    /// Event log URL (default: the catalog's database).
    #[arg(long, env = "VIDEOSYNC_LOG_URL")]
    log_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Probe(args) => probe(args).await,
        Command::Transcode(args) => transcode(args).await,
        Command::Worker(args) => worker(args).await,
    }
}

async fn open_backends(args: BackendArgs) -> anyhow::Result<Backends> {
    let embedded = BackendUrls::embedded(&args.data_dir);
    let urls = BackendUrls {
        store: args.store_url.unwrap_or(embedded.store),
        queue: args.queue_url.unwrap_or(embedded.queue),
        bus: args.bus_url.unwrap_or(embedded.bus),
        log: args
            .log_url
            .or_else(|| args.catalog_url.clone())
            .unwrap_or(embedded.log),
        catalog: args.catalog_url.unwrap_or(embedded.catalog),
    };
    let backends = Backends::open(&urls)
        .await
        .context("opening the backends")?;
    tracing::info!(
        store = %backends.store,
        queue = %backends.queue,
        bus = %backends.bus,
        catalog = %backends.catalog,
        log = %backends.log,
        "backends open"
    );
    Ok(backends)
}

/// A transcode worker over the opened backends.
fn transcode_worker(
    backends: &Backends,
    lease_seconds: u64,
    scratch_dir: Option<PathBuf>,
    remove_source: bool,
) -> videosync_transcode::worker::Worker {
    use videosync_transcode::worker::{Worker, WorkerConfig};
    Worker {
        store: backends.store.clone(),
        queue: backends.queue.clone(),
        catalog: backends.catalog.clone(),
        bus: backends.bus.clone(),
        log: Some(backends.log.clone()),
        config: WorkerConfig {
            lease: std::time::Duration::from_secs(lease_seconds.max(3)),
            scratch_dir: scratch_dir.unwrap_or_else(std::env::temp_dir),
            remove_source,
            ..WorkerConfig::default()
        },
    }
}

/// Runs the worker loop until Ctrl-C or SIGTERM; a job in progress when
/// the signal comes is cancelled and goes back to the queue.
async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let backends = open_backends(args.backends).await?;
    let worker = transcode_worker(
        &backends,
        args.lease_seconds,
        args.scratch_dir,
        args.remove_source,
    );
    let stop = videosync_transcode::CancelToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    tracing::info!(queue = %backends.queue, "videosync worker running");
    worker.run(&stop).await?;
    tracing::info!("videosync worker stopped");
    Ok(())
}

/// Writes the ladder into `--out`, with a progress bar on a terminal, and
/// prints the manifest's summary.
#[allow(clippy::print_stdout)] // The summary on stdout is this command's output.
async fn transcode(args: TranscodeArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use std::sync::Arc;
    use videosync_transcode::{
        CancelToken, Destination, EncoderChoice, ProgressFn, Stage, TranscodeOptions,
    };

    // Writes are staged beside the objects (same filesystem) and renamed
    // into place; the staging folder goes when the run is over. It must not
    // lie inside the output, where its temporary files would be objects.
    let Some(out_name) = args.out.file_name() else {
        anyhow::bail!(
            "--out {} names no directory (give it a name, like ./ladder)",
            args.out.display()
        );
    };
    let staging = args
        .out
        .with_file_name(format!(".{}.videosync-staging", out_name.to_string_lossy()));
    let store = videosync_core::store::fs::FsStore::open_dirs(&args.out, &staging)
        .await
        .with_context(|| format!("opening {}", args.out.display()))?;
    let dest = Destination::new(Arc::new(store), None);
    let opts = TranscodeOptions {
        ladder: videosync_hls::ladder::LadderOptions {
            rungs: args.rungs.clone(),
            segment_seconds: args.segment_seconds,
            format: match args.format {
                FormatArg::Fmp4 => videosync_hls::ladder::SegmentFormat::Fmp4,
                FormatArg::Ts => videosync_hls::ladder::SegmentFormat::Ts,
            },
        },
        preset: args.preset.clone(),
        encoder: match args.encoder {
            EncoderArg::Auto => EncoderChoice::Auto,
            EncoderArg::Software => EncoderChoice::Software,
            EncoderArg::Nvenc => EncoderChoice::Nvenc,
        },
        threads: args.threads,
        poster: !args.no_images,
        storyboard: !args.no_images,
        timeout: None,
    };
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg:>10} [{bar:40}] {percent:>3}% {prefix} (eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let progress: Option<ProgressFn> = bar.clone().map(|bar| {
        Arc::new(move |p: &videosync_transcode::Progress| {
            bar.set_message(format!("{:?}", p.stage).to_lowercase());
            if p.stage == Stage::Encoding {
                bar.set_position((p.percent * 10.0) as u64);
                bar.set_prefix(format!("{:.0} fps, {:.2}x", p.fps, p.speed));
            }
        }) as ProgressFn
    });
    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let result = videosync_transcode::transcode(&args.file, &dest, &opts, progress, &cancel).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let _ = tokio::fs::remove_dir_all(&staging).await;
    let manifest = result?;
    println!(
        "{}: {} rungs, {:.1} s, {} segments each, encoder {}",
        args.out.join(&manifest.master).display(),
        manifest.renditions.len(),
        manifest.duration_s,
        manifest.renditions.first().map_or(0, |r| r.segments),
        manifest.encoder.ffmpeg_name()
    );
    for r in &manifest.renditions {
        println!(
            "  {:>6} {}x{} {:.3} fps  peak {} kb/s  avg {} kb/s  {}",
            r.rendition.name,
            r.rendition.width,
            r.rendition.height,
            r.rendition.frame_rate,
            r.rendition.bandwidth / 1000,
            r.rendition.average_bandwidth / 1000,
            r.rendition.codecs
        );
    }
    Ok(())
}

/// Prints the probe as pretty JSON on stdout; on failure the error (which
/// names the file and the cause) goes to stderr and the exit status is 1.
#[allow(clippy::print_stdout)] // The JSON on stdout is this command's output.
async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let probe = videosync_transcode::probe_async(&args.file, Default::default()).await?;
    let json = serde_json::to_string_pretty(&probe).context("serialising the probe")?;
    println!("{json}");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let backends = open_backends(args.backends).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // The embedded worker pool: uploads turn into ladders with no second
    // process. Sources are kept: the server decides when originals go.
    let stop = videosync_transcode::CancelToken::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.workers {
        let worker = transcode_worker(
            &backends,
            args.lease_seconds,
            args.scratch_dir.clone(),
            false,
        );
        let stop = stop.clone();
        workers.spawn(async move { worker.run(&stop).await });
    }
    tracing::info!(workers = args.workers, "embedded transcode workers started");
    // Tests and scripts read the address from this line: keep it last.
    tracing::info!("videosync listening on http://{addr}");
    axum::serve(listener, router(std::sync::Arc::new(backends)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    // Jobs in progress are cancelled and go back to the queue.
    stop.cancel();
    while workers.join_next().await.is_some() {}
    tracing::info!("videosync stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, so in-flight requests finish before exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
