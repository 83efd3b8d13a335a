//! The sans-IO sync engine of videosync: protocol types, clock-offset
//! estimation, the room timeline, the drift controller and the simulator.
//! Time comes in as an argument or through [`videosync_core::Clock`].
//!
//! This crate is the home of the sync work; it holds no public items yet.
