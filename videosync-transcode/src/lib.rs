//! Transcoding for videosync through FFmpeg (ffmpeg-next): probe, decode
//! once, scale and encode every rung in parallel, segment, thumbnails, and
//! the worker loop.
//!
//! This crate is the home of the transcode work; it holds no public items yet.
