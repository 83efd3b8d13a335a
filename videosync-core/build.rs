//! `sqlx::migrate!` embeds `migrations/` when the crate compiles, and cargo
//! does not watch that folder by itself: without this, a new migration is
//! left out of an incremental build, silently.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
