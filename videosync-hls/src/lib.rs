//! HLS ladder planning, master and media playlists, validation and delivery
//! rewriting for videosync. Pure: no IO, no clock reads.
//!
//! This crate is the home of the ladder work (planning rungs from probed
//! source metadata, m3u8-rs playlists, the ladder validator); it holds no
//! public items yet.
