//! videosync: upload, transcode into an adaptive HLS ladder, deliver, and
//! watch together in sync.
//!
//! This facade re-exports the SDK crates so one dependency is enough:
//!
//! - [`core`]: ids, errors and the contracts (object storage, job queue,
//!   event bus, clock, catalog) with their backends.
//! - [`hls`]: ladder planning and playlists.
//! - [`sync`]: the group playback sync engine.
//! - `transcode` (feature `transcode`): probe, the ladder pipeline, the
//!   worker loop, through FFmpeg.
//!
//! # Features
//! - `embedded` (default): the SQLite queue and catalog.
//! - `s3`, `redis`, `postgres`: the backends for a fleet.
//! - `all-backends`: all of them.
//! - `transcode`: the FFmpeg transcoder (links the FFmpeg libraries).
//!
//! # Examples
//! ```
//! use videosync::core::{ObjectKey, ObjectStoreExt};
//! use videosync::core::store::memory::MemoryStore;
//! # tokio_test_block_on(async {
//! let store = MemoryStore::new();
//! let key = ObjectKey::parse("hello.txt")?;
//! store.put(&key, "hi".into()).await?;
//! assert_eq!(store.get_bytes(&key).await?, "hi");
//! # Ok::<(), videosync::core::Error>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     futures_lite_block_on(f)
//! # }
//! # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

pub use videosync_core as core;
pub use videosync_hls as hls;
pub use videosync_sync as sync;
#[cfg(feature = "transcode")]
pub use videosync_transcode as transcode;
