//! The sans-IO sync engine of videosync: everyone in a room watches the same
//! frame at the same moment.
//!
//! - [`state`]: the shared vocabulary: [`state::Playback`] (what plays, from
//!   where, at which server time), [`state::Command`], [`state::ErrorCode`].
//! - [`protocol`]: every message between client and server, versioned JSON.
//! - [`clock`]: estimation of the server clock from one-way samples, with
//!   an error bound that holds.
//! - [`room`]: the server's timeline of a room: permissions, scheduling,
//!   buffering policy.
//! - [`drift`]: the client's drift controller.
//! - [`client`]: the client session, sans-IO: server messages and player
//!   observations in, player actions and messages out (the JavaScript twin
//!   implements it again).
//! - [`sim`]: the deterministic simulator that measures all of it against
//!   the policies of Jellyfin SyncPlay, Syncplay and CyTube.
//!
//! Sans-IO: no sockets, no timers, no clock reads. Every function that needs
//! the time takes it as an argument (milliseconds, `f64`), so the engine runs
//! the same inside a server, a browser (see the JavaScript twin) and the
//! deterministic simulator.

pub mod client;
pub mod clock;
pub mod drift;
pub mod protocol;
pub mod room;
pub mod sim;
pub mod state;
