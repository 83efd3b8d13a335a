//! The REST API in-process (`oneshot` on `router(state)`), on the embedded
//! backends and on Postgres + Redis + S3 (Garage).
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::unwrap_used,
    unreachable_pub
)] // Test code.

mod accounts;
mod channels;
mod fuzz_findings;
mod harness;
mod matrix;
mod media;
mod ops;
mod realtime;
#[path = "../common/serve.rs"]
mod serve;
mod videos;
#[path = "../common/ws.rs"]
mod ws;
