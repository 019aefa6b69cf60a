//! sendfiled-core: everything in the daemon that does not depend on the OS
//! flavour. A client never links it: the wire format is the client crate's
//! (`sendfiled-client`), the system calls are the leaf crate's
//! (`sendfiled-sys`), and both point away from here.
//!
//! - [`backend`]: the [`TransferBackend`](backend::TransferBackend) trait each
//!   OS implements, and the portable read/write copy path;
//! - [`server`]: the event loop, transfer table, timers and shutdown;
//! - [`bsd_sendfile`]: the portable interpretation of BSD `sendfile` results;
//! - [`fault`]: a fault-injecting backend wrapper (a test facility);
//! - [`sys`]: the system-call layer, `sendfiled-sys` (descriptor passing,
//!   writes that never wait, opens beneath a root, the page-cache probe).

/// The system-call layer shared with the clients.
pub use sendfiled_sys as sys;

// The wire format, for the server's own modules (not re-exported: a program
// that wants it depends on `sendfiled-client`).
use sendfiled_client::protocol;

pub mod backend;
pub mod bsd_sendfile;
pub mod fault;
pub mod server;
