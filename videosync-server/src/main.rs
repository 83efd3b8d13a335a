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
    }
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
    let embedded = BackendUrls::embedded(&args.data_dir);
    let urls = BackendUrls {
        store: args.store_url.unwrap_or(embedded.store),
        queue: args.queue_url.unwrap_or(embedded.queue),
        bus: args.bus_url.unwrap_or(embedded.bus),
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
        "backends open"
    );
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("videosync listening on http://{addr}");
    axum::serve(listener, router(std::sync::Arc::new(backends)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
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
