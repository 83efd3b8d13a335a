//! `videosync`: the reference server's command line. Wiring only: parse
//! arguments, open the backends, serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use videosync_server::config::{Config, LogFormat};
use videosync_server::state::open_backends;
use videosync_server::{App, Backends};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "videosync",
    version,
    about = "Shared video: upload, transcode, deliver, watch together.",
    after_help = "Settings come from the --config file, then VIDEOSYNC_* environment variables, then flags; \
                  docs/operations.md lists them all."
)]
struct Cli {
    /// TOML configuration file (also VIDEOSYNC_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory of the embedded backends (overrides the configuration).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API, with embedded transcode workers.
    Serve(ServeArgs),
    /// Run transcode jobs from the queue until stopped (Ctrl-C, SIGTERM).
    Worker(WorkerArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Administer the instance: users and dead-lettered jobs.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Probe a media file and print what it contains as JSON.
    Probe(ProbeArgs),
    /// Transcode a media file into an HLS ladder in a directory.
    Transcode(TranscodeArgs),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user; the password is read from standard input.
    CreateUser {
        /// Login name.
        username: String,
        /// Make them an instance administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Make a user an instance administrator (or, with --revoke, no longer).
    MakeAdmin {
        /// Login name or e-mail.
        login: String,
        /// Take the role away instead.
        #[arg(long)]
        revoke: bool,
    },
    /// List dead-lettered transcode jobs, oldest first.
    DeadLetters {
        /// How many at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put a dead-lettered job back on the queue.
    Requeue {
        /// The job id.
        job: String,
    },
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Remove an uploaded source once its ladder is ready.
    #[arg(long)]
    remove_source: bool,
    #[command(flatten)]
    jobs: JobArgs,
}

/// How transcode jobs run (overriding the configuration's `[workers]`).
#[derive(Debug, clap::Args)]
struct JobArgs {
    /// Lease on a job in seconds, renewed by heartbeats every third of it.
    #[arg(long)]
    lease_seconds: Option<u64>,
    /// Where sources are downloaded while they are transcoded.
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
}

impl JobArgs {
    fn apply(&self, config: &mut Config) {
        if let Some(s) = self.lease_seconds {
            config.workers.lease_seconds = s;
        }
        if let Some(d) = &self.scratch_dir {
            config.workers.scratch_dir = Some(d.clone());
        }
    }
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
    /// Address to listen on (overrides the configuration's `listen`).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Transcode workers inside the server (0: none; run `videosync worker`
    /// processes instead).
    #[arg(long)]
    workers: Option<usize>,
    /// Log lines as JSON objects.
    #[arg(long)]
    json_logs: bool,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    jobs: JobArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("starting the async runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints the error as one line (the chain of causes, joined), with the
/// backtrace only when `RUST_BACKTRACE` asks for it.
fn fail(e: &anyhow::Error) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("videosync: {e:#}");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", e.backtrace());
        }
    }
    ExitCode::FAILURE
}

/// The configuration: the file, the environment, then the global flags.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let file = cli
        .config
        .clone()
        .or_else(|| std::env::var_os("VIDEOSYNC_CONFIG").map(PathBuf::from));
    let mut config = Config::load(file.as_deref(), std::env::vars())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = load_config(&cli)?;
    if let Command::Serve(args) = &cli.command {
        if let Some(addr) = args.addr {
            config.listen = addr;
        }
        if let Some(n) = args.workers {
            config.workers.count = n;
        }
        if args.json_logs {
            config.log_format = LogFormat::Json;
        }
        args.jobs.apply(&mut config);
    }
    if let Command::Worker(args) = &cli.command {
        args.jobs.apply(&mut config);
    }
    init_tracing(config.log_format);
    match cli.command {
        Command::Serve(args) => serve(config, args).await,
        Command::Worker(args) => worker(config, args).await,
        Command::Migrate => migrate(config).await,
        Command::Admin(cmd) => admin(config, cmd).await,
        Command::Probe(args) => probe(args).await,
        Command::Transcode(args) => transcode(args).await,
    }
}

/// Migrates the database (opening it runs the migrations).
#[allow(clippy::print_stdout)] // The confirmation is this command's output.
async fn migrate(config: Config) -> anyhow::Result<()> {
    let url = config.database_url();
    let db = videosync_core::sql::Database::connect(&url)
        .await
        .with_context(|| format!("migrating {}", videosync_core::redact_url(&url)))?;
    println!("{db}: schema up to date");
    Ok(())
}

#[allow(clippy::print_stdout)] // What the admin commands print is their output.
async fn admin(config: Config, cmd: AdminCommand) -> anyhow::Result<()> {
    use videosync_core::db::Users;
    let app = App::from_config(&config).await?;
    match cmd {
        AdminCommand::CreateUser { username, admin } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let user = videosync_server::accounts::create_user(&app, &username, password, admin)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!(
                "created user {} ({}){}",
                user.username,
                user.id,
                if user.is_admin {
                    ", instance administrator"
                } else {
                    ""
                }
            );
        }
        AdminCommand::MakeAdmin { login, revoke } => {
            let mut tx = app.backends.db.begin().await?;
            let user = tx
                .user_by_login(&login)
                .await?
                .with_context(|| format!("no user with the login {login}"))?;
            let user = tx.set_admin(user.id, !revoke).await?;
            tx.commit().await?;
            println!(
                "{} is {}an instance administrator",
                user.username,
                if user.is_admin { "" } else { "no longer " }
            );
        }
        AdminCommand::DeadLetters { limit } => {
            let page = app
                .backends
                .queue
                .dead_letters(None, limit.clamp(1, 1000))
                .await?;
            if page.items.is_empty() {
                println!("no dead-lettered jobs");
            }
            for job in page.items {
                println!(
                    "{}  {}  attempts {}  {}",
                    job.id,
                    job.kind,
                    job.attempts,
                    job.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        AdminCommand::Requeue { job } => {
            let id: videosync_core::JobId = job
                .parse()
                .with_context(|| format!("`{job}` is not a job id"))?;
            app.backends.queue.requeue(id).await?;
            println!("job {id} is back on the queue");
        }
    }
    Ok(())
}

/// A transcode worker over the opened backends.
fn transcode_worker(
    backends: &Backends,
    config: &Config,
    remove_source: bool,
) -> videosync_transcode::worker::Worker {
    use videosync_transcode::worker::{Worker, WorkerConfig};
    Worker {
        store: backends.store.clone(),
        sources: backends.uploads.clone(),
        queue: backends.queue.clone(),
        catalog: backends.catalog.clone(),
        bus: backends.bus.clone(),
        log: Some(backends.log.clone()),
        config: WorkerConfig {
            lease: std::time::Duration::from_secs(config.workers.lease_seconds.max(3)),
            scratch_dir: config
                .workers
                .scratch_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            remove_source,
            ..WorkerConfig::default()
        },
    }
}

/// Runs the worker loop until Ctrl-C or SIGTERM; a job in progress when
/// the signal comes is cancelled and goes back to the queue.
async fn worker(config: Config, args: WorkerArgs) -> anyhow::Result<()> {
    let backends = open_backends(&config).await?;
    let worker = transcode_worker(&backends, &config, args.remove_source);
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

#[allow(clippy::print_stdout)] // --print-config's output.
async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", config.to_redacted_toml());
        return Ok(());
    }
    // A socket per connected member: as many as the system lets us have.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "the open-files limit could not be raised"),
    }
    let app = std::sync::Arc::new(App::from_config(&config).await?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // The embedded worker pool: uploads turn into ladders with no second
    // process. Originals go once their ladder is ready, unless kept.
    let stop = videosync_transcode::CancelToken::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.workers.count {
        let worker = transcode_worker(&app.backends, &config, !config.uploads.keep_originals);
        let stop = stop.clone();
        workers.spawn(async move { worker.run(&stop).await });
    }
    tracing::info!(
        workers = config.workers.count,
        "embedded transcode workers started"
    );
    let sweeper = tokio::spawn(expire_uploads(app.clone()));
    // Tests and scripts read the address from this line: keep it last.
    tracing::info!("videosync listening on http://{addr}");
    videosync_server::serve(listener, app, shutdown_signal())
        .await
        .context("serving")?;
    // Jobs in progress are cancelled and go back to the queue.
    sweeper.abort();
    stop.cancel();
    while workers.join_next().await.is_some() {}
    tracing::info!("videosync stopped");
    Ok(())
}

/// Removes abandoned uploads (idle past their expiry) every few minutes,
/// for the life of the server.
async fn expire_uploads(app: videosync_server::AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tick.tick().await;
        match app.uploads.expire(app.backends.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "expired abandoned uploads"),
            Err(e) => tracing::warn!(error = %e, "expiring abandoned uploads failed"),
        }
        match videosync_server::uploads::direct::sweep_expired(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "removed expired direct uploads"),
            Err(e) => tracing::warn!(error = %e.message, "removing expired direct uploads failed"),
        }
    }
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
