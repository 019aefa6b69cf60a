//! sendfiled-core: everything in sendfiled that does not depend on the OS
//! flavour.
//!
//! - [`protocol`]: the request/response wire format, limits, encode/decode;
//! - [`backend`]: the [`TransferBackend`](backend::TransferBackend) trait each
//!   OS implements, and the portable read/write copy path;
//! - [`server`]: the event loop, transfer table, timers and shutdown;
//! - [`bsd_sendfile`]: the portable interpretation of BSD `sendfile` results;
//! - [`client`]: the Rust client API;
//! - [`confine`]: opening a path confined beneath the serving root;
//! - [`sys`]: small portable syscall wrappers (descriptor passing, pipes).

pub mod backend;
pub mod bsd_sendfile;
pub mod client;
pub mod confine;
pub mod protocol;
pub mod server;
pub mod sys;
