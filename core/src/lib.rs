//! sendfiled-core: everything in sendfiled that does not depend on the OS
//! flavour.
//!
//! - [`protocol`]: the request/response wire format, limits, encode/decode
//!   (re-exported from the `sendfiled-client` crate);
//! - [`backend`]: the [`TransferBackend`](backend::TransferBackend) trait each
//!   OS implements, and the portable read/write copy path;
//! - [`server`]: the event loop, transfer table, timers and shutdown;
//! - [`bsd_sendfile`]: the portable interpretation of BSD `sendfile` results;
//! - [`client`]: the Rust client API (re-exported from `sendfiled-client`,
//!   which a Rust client depends on alone);
//! - [`confine`]: opening a path confined beneath the serving root;
//! - [`fault`]: a fault-injecting backend wrapper (a test facility);
//! - [`sys`]: small portable syscall wrappers (descriptor passing, pipes).

pub use sendfiled_client::{client, protocol};

pub mod backend;
pub mod bsd_sendfile;
pub mod confine;
pub mod fault;
pub mod server;
pub mod sys;
